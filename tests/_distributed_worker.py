"""One process of a multi-process training test (`tests/test_sharding.py`):

    python _distributed_worker.py PORT NUM_PROCESSES PROCESS_ID SEEDSxDATA OUT.npz [--die] [--pretrain-only]

Joins the run on localhost:PORT, trains 2 seeds for a pre-training and a fine-tuning block of 4 updates
(only the first with `--pretrain-only`) on the given mesh over all processes' devices, and (process 0)
writes every parameter to OUT.npz.
With `--die`, process 1 exits right after joining, before the first collective.
"""

import os
import sys

from infom.training._sharding import initialize_distributed


def main() -> None:
    port, num, pid, shape, out = sys.argv[1:6]
    initialize_distributed(f"localhost:{port}", int(num), int(pid), heartbeat_timeout_seconds=5)
    if "--die" in sys.argv and int(pid) == 1:
        os._exit(3)

    import equinox as eqx
    import jax
    import numpy as np

    from infom.training._sharding import make_mesh, place_replicated, place_states, to_host

    states, dataset, keys, config, optim = setup()
    mesh = make_mesh(*(int(n) for n in shape.split("x")))
    states, dataset = place_states(states, mesh), place_replicated(dataset, mesh)
    states = train_blocks(states, dataset, keys, config, optim, "--pretrain-only" in sys.argv, mesh)
    leaves = jax.tree.leaves(eqx.filter(to_host(states), eqx.is_array))
    if int(pid) == 0:
        np.savez(out, *leaves)


def train_blocks(states, dataset, keys, config, optim, pretrain_only: bool, mesh=None):
    """A pre-training block of 4 updates, then (unless `pretrain_only`) a fine-tuning block of 4."""
    import jax.numpy as jnp

    from infom.agents.infom import AGENT
    from infom.training._train import seeds_block

    blocks = ((0, AGENT.pretrain_loss), (4, AGENT.finetune_loss))
    for first, loss in blocks[:1] if pretrain_only else blocks:
        states, _ = seeds_block(
            AGENT,
            loss,
            states,
            dataset,
            keys=keys,
            num_updates=4,
            config=config,
            optim=optim,
            first_step=jnp.int32(first),
            mesh=mesh,
        )
    return states


def setup():
    """The states, dataset, keys, config and optimiser every process (and the test) starts from."""
    import equinox as eqx
    import jax.random as jr
    import numpy as np

    import infom

    obs, act, seeds = 4, 2, 2
    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=2),
        batch_size=8,
        num_futures=4,
        num_flow_steps=3,
    )
    optim = infom.make_optimizer(config)
    rng = np.random.default_rng(0)
    n = 200
    terminals = np.zeros(n, bool)
    terminals[99::100] = True
    raw = infom.Dataset.from_arrays(
        rng.normal(size=(n, obs)).astype(np.float32),
        rng.uniform(-1, 1, (n, act)).astype(np.float32),
        terminals=terminals,
        rewards=rng.normal(size=n).astype(np.float32),
    )
    normalizer = infom.fit_normalizer(raw.observations)
    dataset = infom.normalize_dataset(raw, normalizer)
    init = eqx.filter_vmap(lambda k: infom.init_train_state(obs, act, normalizer, config, optim, key=k))
    return init(jr.split(jr.key(0), seeds)), dataset, jr.split(jr.key(1), seeds), config, optim


if __name__ == "__main__":
    main()
