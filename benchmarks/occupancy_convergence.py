"""Does a bootstrapped occupancy model converge at gamma = 0.99, and how does that depend on tau?

Hypothesis under test: the SARSA flow loss regresses the online field onto samples of the
*target* field, so the model forgets its random initialisation by about a factor `gamma` per
full refresh of the target, and an EMA with rate `tau` refreshes it about `tau` times per
update. After `U` updates the initial model's weight in the occupancy is then about
`gamma^(U tau)`: with the paper's `tau = 0.005`, 40,000 updates leave `0.99^200 = 13%`; with
`tau = 0.02`, `0.99^800 = 0.03%`. If so, the error after `U` updates depends on `U tau` (not on
`U` and `tau` separately) until the model's own approximation error dominates.

Probe: `infom.LinearSystemProbe` (a 2-D double integrator under a PD policy, closed-loop
eigenvalues of modulus 0.93), whose discounted occupancy given `(s, a)` is an exact Gaussian
mixture. A vector field (3 x 64 GELU, no intention: `latent_dim = 0`) is trained with
`sarsa_flow_loss` (the InFOM form, 10 Euler steps for the bootstrapped sample), Adam 1e-3, batch
256 of fresh stationary transitions per update, an EMA target with each `--taus`, and evaluated
after each of `--budgets` updates (one run per tau, evaluated along the way), at three `(s, a)`:

- `cov ratio`: trace of the model samples' covariance over the exact one (1 is right; a model
  that remembers its `N(0, I)`-like initialisation reads far above 1);
- `SW1`: sliced Wasserstein-1 between 4,000 model samples (100 Euler steps) and 4,000 exact
  samples, and `floor`, the same between two exact sample sets;
- `gamma^(U tau)`: the hypothesis's remaining weight of the initialisation.

Run: `python benchmarks/occupancy_convergence.py [--gamma 0.99] [--taus 0.005 0.02 0.05]
[--budgets 5000 10000 20000 40000] [--seed 0]`.
"""

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _common import header, print_table

import infom
from infom.data._probes import LinearSystemProbe, sliced_wasserstein


PROBE = LinearSystemProbe()
HIDDEN, BATCH_SIZE, LEARNING_RATE, NUM_SAMPLES, FINE_STEPS = (64, 64, 64), 256, 1e-3, 4000, 100
POINTS = tuple(
    (np.array(s), np.array(a))
    for s, a in (((0.0, 0.0), (0.0,)), ((0.6, 0.0), (-0.5,)), ((-0.3, 0.4), (0.5,)))
)


def make_segment(gamma: float, tau: float, num_updates: int):
    """A compiled `(field, target, opt_state, key) -> (field, target, opt_state)` of `num_updates`."""
    optim = optax.adam(LEARNING_RATE)
    encoder = init_models(0).encoder  # latent_dim = 0: no intention, the encoder is unused

    def loss_fn(field, target, key):
        batch_key, loss_key = jr.split(key)
        batch = PROBE.sample_batch(batch_key, BATCH_SIZE)
        loss, _ = infom.sarsa_flow_loss(
            field, encoder, target, batch, key=loss_key, gamma=gamma, kl_weight=0.0
        )
        return loss

    @eqx.filter_jit
    def segment(field, target, opt_state, key):
        def step(carry, key):
            field, target, opt_state = carry
            loss, grads = eqx.filter_value_and_grad(loss_fn)(field, target, key)
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = optim.update(grads, opt_state)
            field = eqx.apply_updates(field, updates)
            return (field, infom.ema_update(target, field, tau), opt_state), loss

        (field, target, opt_state), losses = jax.lax.scan(
            step, (field, target, opt_state), jr.split(key, num_updates)
        )
        return field, target, opt_state, losses

    return optim, segment


def init_models(seed: int) -> infom.Models:
    config = infom.NetworkConfig(hidden_dims=HIDDEN, latent_dim=0)
    return infom.init_models(PROBE.obs_dim, PROBE.action_dim, config, key=jr.key(seed))


@eqx.filter_jit
def _samples(field, s, a, key):
    z = jnp.zeros((NUM_SAMPLES, 0))
    s_vec, a_vec = (
        jnp.broadcast_to(s, (NUM_SAMPLES, s.shape[0])),
        jnp.broadcast_to(a, (NUM_SAMPLES, a.shape[0])),
    )
    return infom.sample_future(field, s_vec, a_vec, z, key=key, num_steps=FINE_STEPS)


def evaluate(field, gamma: float, seed: int) -> tuple[float, float, float]:
    """Mean over the points of (covariance-trace ratio, SW1 to exact, SW1 floor)."""
    ratios, distances, floors = [], [], []
    for i, (s, a) in enumerate(POINTS):
        samples = np.asarray(
            _samples(field, jnp.asarray(s, jnp.float32), jnp.asarray(a, jnp.float32), jr.key(10_000 + i)),
            np.float64,
        )
        _, cov = PROBE.occupancy_moments(s, a, gamma)
        ratios.append(np.trace(np.cov(samples.T)) / np.trace(cov))
        exact = PROBE.sample_occupancy(2 * i, s, a, gamma, NUM_SAMPLES)
        distances.append(sliced_wasserstein(samples, exact))
        floors.append(sliced_wasserstein(PROBE.sample_occupancy(2 * i + 1, s, a, gamma, NUM_SAMPLES), exact))
    return float(np.mean(ratios)), float(np.mean(distances)), float(np.mean(floors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--taus", type=float, nargs="+", default=[0.005, 0.02, 0.05])
    parser.add_argument("--budgets", type=int, nargs="+", default=[5000, 10000, 20000, 40000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    header(
        f"LinearSystemProbe (2-D, closed loop |eig| 0.93), gamma {args.gamma}; field {HIDDEN}, no intention, "
        f"Adam {LEARNING_RATE}, batch {BATCH_SIZE}; seed {args.seed}"
    )
    rows = []
    for tau in args.taus:
        field = init_models(args.seed).field
        target = field
        optim, _ = make_segment(args.gamma, tau, 1)
        opt_state = optim.init(eqx.filter(field, eqx.is_array))
        done, seconds = 0, 0.0
        for budget in budgets:
            _, segment = make_segment(args.gamma, tau, budget - done)
            start = time.perf_counter()
            field, target, opt_state, losses = jax.block_until_ready(
                segment(field, target, opt_state, jr.fold_in(jr.key(args.seed + 1), budget))
            )
            seconds += time.perf_counter() - start
            if not bool(jnp.all(jnp.isfinite(losses))):
                raise FloatingPointError(f"tau={tau}: non-finite loss before update {budget}")
            done = budget
            ratio, distance, floor = evaluate(field, args.gamma, args.seed)
            rows.append(
                [
                    f"{tau}",
                    f"{budget:,}",
                    f"{budget * tau:.0f}",
                    f"{args.gamma ** (budget * tau):.3f}",
                    f"{ratio:.2f}",
                    f"{distance:.3f}",
                    f"{floor:.3f}",
                    f"{seconds:.0f}",
                ]
            )
            print("  " + " | ".join(rows[-1]), flush=True)
    print()
    print_table(
        ["tau", "updates U", "U tau", "gamma^(U tau)", "cov ratio", "SW1", "floor", "train s (cum.)"], rows
    )


if __name__ == "__main__":
    main()
