"""Where does a vmapped seed's extra fine-tuning cost go? Pieces of a fine-tuning update, per seed.

For one seed and for `--seeds` seeds vmapped (3 by default), timed in one process (interleaved,
median of `--repeat` calls after compilation).

Pieces (CPU preset sizes: 3 x 256, latent 128, 8 futures x 10 Euler; obs 28, action 5, batch 256):

- `futures`: the critic's Monte-Carlo Q targets (`mc_q_targets`: 8 futures per state by a diffrax solve);
- `flow_grad`: the gradient of the SARSA flow loss (its bootstrapped sample is a 10-step solve too);
- `critic_grad`: the futures plus the gradient of the expectile distillation;
- `step_no_actor`: a whole fine-tuning update without the actor;
- `euler_scan`: the critic's futures' ODE as a plain `lax.scan` of 10 Euler steps over the same
  2,048 rows (no diffrax), from the same conditioning: is the cost in diffrax's loop or in the math?
- `field_2048` / `field_256`: one evaluation of the field's velocity on 2,048 / 256 rows: the
  matmuls alone;
- `futures_chunked`: the futures drawn as 4 sequential chunks of 2 futures (`lax.map`), the same
  math with a working set a quarter the size.

    python benchmarks/vmap_seeds_profile.py [--repeat 7] [--seeds 3]
"""

import argparse
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import header, interleaved_medians, print_table

import infom
from infom.agents.infom import _flow_terms, mc_q_targets


OBS, ACT, BATCH = 28, 5, 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=3, help="seeds vmapped")
    args = parser.parse_args()
    SEEDS = args.seeds  # noqa: N806
    header(f"per-seed ms of the pieces of a fine-tuning update: 1 seed vs {SEEDS} vmapped; CPU preset sizes")
    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=(256,) * 3, latent_dim=128), num_futures=8, batch_size=BATCH
    )
    optim = infom.make_optimizer(config)
    rng = np.random.default_rng(0)
    n = 20_000
    raw = infom.Dataset.from_arrays(
        rng.normal(size=(n, OBS)).astype(np.float32),
        rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        terminals=np.arange(n) % 1000 == 999,
        rewards=-rng.uniform(0, 1, n).astype(np.float32),
    )
    normalizer = infom.fit_normalizer(raw.observations)
    data = infom.normalize_dataset(raw, normalizer)
    one = infom.init_train_state(OBS, ACT, normalizer, config, optim, key=jr.key(0))
    many = eqx.filter_vmap(lambda k: infom.init_train_state(OBS, ACT, normalizer, config, optim, key=k))(
        jr.split(jr.key(1), SEEDS)
    )
    batch = infom.sample_batch(data, jr.key(2), BATCH)
    batches = jax.vmap(lambda k: infom.sample_batch(data, k, BATCH))(jr.split(jr.key(3), SEEDS))
    keys = jr.split(jr.key(4), SEEDS)

    def futures(state, batch, key):
        return mc_q_targets(state.models, batch, key=key, config=config)

    def flow_grad(state, batch, key):
        return eqx.filter_grad(lambda m: _flow_terms(m, state.target, batch, key, config, None)[0])(
            state.models
        )

    def critic_grad(state, batch, key):
        q = mc_q_targets(state.models, batch, key=key, config=config)
        return eqx.filter_grad(
            lambda c: infom.expectile_distill(c, batch.observations, batch.actions, q, expectile=0.9)[0]
        )(state.models.critic)

    def step_no_actor(state, batch, key):
        return infom.finetune_step(state, batch, key=key, config=config, optim=optim, update_actor=False)

    def _velocity(field, x, cond):
        return jax.vmap(field.velocity, in_axes=(None, 0, 0))(0.5, x, cond)

    def _rows(state, batch, key, futures):
        models = state.models
        z = jr.normal(key, (BATCH, config.network.latent_dim))
        cond = infom.field_conditioning(models.field, batch.observations, batch.actions, z)
        cond = jnp.broadcast_to(cond, (futures, *cond.shape)).reshape(futures * BATCH, -1)
        return models.field, jr.normal(key, (futures * BATCH, OBS)), cond

    def euler_scan(state, batch, key):
        field, x, cond = _rows(state, batch, key, config.num_futures)

        def step(x, t):
            return x + jax.vmap(field.velocity, in_axes=(None, 0, 0))(t, x, cond) / 10, None

        return jax.lax.scan(step, x, jnp.arange(10, dtype=x.dtype) / 10)[0]

    def field_2048(state, batch, key):
        return _velocity(*_rows(state, batch, key, config.num_futures))

    def field_256(state, batch, key):
        return _velocity(*_rows(state, batch, key, 1))

    def futures_chunked(state, batch, key):
        chunk = dataclasses.replace(config, num_futures=2)
        return jnp.mean(
            jax.lax.map(lambda k: mc_q_targets(state.models, batch, key=k, config=chunk), jr.split(key, 4)),
            axis=0,
        )

    pieces = {
        "futures": futures,
        "euler_scan": euler_scan,
        "field_2048": field_2048,
        "field_256": field_256,
        "futures_chunked": futures_chunked,
        "flow_grad": flow_grad,
        "critic_grad": critic_grad,
        "step_no_actor": step_no_actor,
    }
    calls = {}
    for name, piece in pieces.items():
        single, vmapped = eqx.filter_jit(piece), eqx.filter_jit(eqx.filter_vmap(piece))
        calls[f"{name} 1"] = lambda single=single: single(one, batch, jr.key(5))
        calls[f"{name} {SEEDS}"] = lambda vmapped=vmapped: vmapped(many, batches, keys)
    medians = interleaved_medians(calls, repeat=args.repeat, warmup=1)
    rows = []
    for name in pieces:
        lone, per_seed = medians[f"{name} 1"] * 1e3, medians[f"{name} {SEEDS}"] / SEEDS * 1e3
        rows.append([name, f"{lone:.2f}", f"{per_seed:.2f}", f"{per_seed / lone:.2f}"])
    print_table(["piece", "one seed ms", f"per seed, {SEEDS} vmapped, ms", "ratio"], rows)


if __name__ == "__main__":
    main()
