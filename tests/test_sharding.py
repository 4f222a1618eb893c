"""Training on a mesh of devices: the same numbers as on one device.

The multi-device checks run in a subprocess with `--xla_force_host_platform_device_count=4`, so that the
rest of the suite keeps its single CPU device.
"""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from infom.training._sharding import make_mesh


def _run_with_devices(code: str, devices: int = 4, timeout: float = 600) -> str:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


_BLOCKS = """
    import dataclasses
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    import infom
    from infom.agents.infom import AGENT
    from infom.training._sharding import make_mesh, place_replicated, place_states
    from infom.training._train import seeds_block

    assert len(jax.devices()) == 4, jax.devices()
    OBS, ACT, SEEDS = 4, 2, 4
    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=2), batch_size=8, num_futures=4,
        num_flow_steps=3,
    )
    optim = infom.make_optimizer(config)
    rng = np.random.default_rng(0)
    n = 200
    terminals = np.zeros(n, bool)
    terminals[99::100] = True
    raw = infom.Dataset.from_arrays(
        rng.normal(size=(n, OBS)).astype(np.float32), rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        terminals=terminals, rewards=rng.normal(size=n).astype(np.float32),
    )
    normalizer = infom.fit_normalizer(raw.observations)
    dataset = infom.normalize_dataset(raw, normalizer)
    init = eqx.filter_vmap(lambda k: infom.init_train_state(OBS, ACT, normalizer, config, optim, key=k))
    states = init(jr.split(jr.key(0), SEEDS))
    keys = jr.split(jr.key(1), SEEDS)

    def run(mesh):
        s, d = states, dataset
        if mesh is not None:
            s, d = place_states(s, mesh), place_replicated(d, mesh)
        out = s
        for phase, loss in (("pre", AGENT.pretrain_loss), ("fine", AGENT.finetune_loss))[:PHASES]:
            out, metrics = seeds_block(
                AGENT, loss, out, d, keys=keys, num_updates=4, config=config, optim=optim,
                first_step=jnp.int32(0 if phase == "pre" else 4), mesh=mesh,
            )
        return out, metrics
"""


_COMPARE = """
    reference, reference_metrics = run(None)
    for shape in SHAPES:
        mesh = make_mesh(*shape)
        got, metrics = run(mesh)
        leaves = jax.tree.leaves(eqx.filter(got, eqx.is_array))
        want = jax.tree.leaves(eqx.filter(reference, eqx.is_array))
        worst = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(leaves, want))
        assert worst < 2e-5, (shape, worst)
        np.testing.assert_allclose(np.asarray(metrics.loss), np.asarray(reference_metrics.loss), rtol=1e-4)
        field = got.models.field.weight_x
        assert len(field.sharding.device_set) == shape[0] * shape[1], (shape, field.sharding)
        if shape[0] > 1:
            assert field.addressable_shards[0].data.shape[0] == 4 // shape[0]
        print(shape, worst)
    print("ok")
"""


def test_a_block_on_a_2_x_2_mesh_equals_one_device():
    """A pre-training block of 4 updates, 4 seeds, on one device and on a 2 x 2 mesh
    (seeds over 2 devices, each seed's batch over 2): parameters and metrics agree to float32
    reduction-order error, and the states stay sharded over all 4 devices."""
    out = _run_with_devices(_BLOCKS + "\n    SHAPES, PHASES = ((2, 2),), 1\n" + _COMPARE)
    assert out.strip().endswith("ok")


@pytest.mark.slow
def test_a_block_on_a_1_2_and_4_device_mesh_and_seeds_over_devices_equal_one_device():
    """As above with a fine-tuning block after the pre-training one, on meshes 1 x 1, 1 x 2 and 1 x 4
    (the batch split over 1, 2, 4 devices), 4 x 1 (the seeds over 4 devices) and 2 x 2."""
    out = _run_with_devices(
        _BLOCKS + "\n    SHAPES, PHASES = ((1, 1), (1, 2), (1, 4), (4, 1), (2, 2)), 2\n" + _COMPARE
    )
    assert out.strip().endswith("ok")


def test_a_mesh_the_run_cannot_split_over_is_refused_naming_what_does_not_divide():
    with pytest.raises(ValueError, match="a 2 x 1 mesh needs 2 devices"):
        make_mesh(2, 1, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="`data` must be a positive integer"):
        make_mesh(1, 0)
    out = _run_with_devices(
        """
    import pytest
    from infom.training._sharding import check_mesh, make_mesh
    mesh = make_mesh(2, 2)
    check_mesh(mesh, num_seeds=4, batch_size=256)
    with pytest.raises(ValueError, match="num_seeds=3 is not a multiple of the mesh's 2 seed devices"):
        check_mesh(mesh, num_seeds=3, batch_size=256)
    with pytest.raises(ValueError, match="batch_size=7 is not a multiple of the mesh's 2 data devices"):
        check_mesh(mesh, num_seeds=2, batch_size=7)
    print("ok")
    """
    )
    assert out.strip().endswith("ok")
