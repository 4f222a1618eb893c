"""Which `sample_future` solver is cheapest at the accuracy of 10 Euler steps?

Models: two occupancy models trained inside this script with `sarsa_flow_loss` (default
`target_form="infom"`, gamma 0.9, `--steps` updates; the setup of `occupancy_accuracy.py`): one
on the 1-D linear-Gaussian probe and one on the 2-D two-goal probe. Each is sampled at the three
`(s, a)` of `occupancy_accuracy.py`, 4,000 futures each, with `z` encoded from `(s', a')` of the
true process (the marginal occupancy), as one batch of 12,000 samples.

For each diffrax solver and step count, `infom.solve_flow` is run from the same noise as a
reference solve (Tsit5, 1,000 fixed steps) and we report:

- `evals`: vector-field evaluations per sample, counted at run time with a host callback in
  an untimed solve (Euler 1 per step, Heun/Midpoint/Ralston 2, Tsit5 1 + 6 per step attempt as it
  is FSAL; for the adaptive `PIDController` runs, `(evals - 1) / 6` = accepted + rejected steps).
  Adaptive steps are shared by the whole batch: diffrax solves the batch as one ODE, with the
  error norm taken over all samples;
- `|x - ref|`: mean absolute difference to the reference solve (over samples and dimensions);
- `W`: Wasserstein-1 (1-D) or sliced Wasserstein-1 (2-D, 128 directions) between the samples and
  exact occupancy samples, mean over the three `(s, a)` (the reference solve's own `W` and the
  Monte-Carlo floor are printed above the table);
- `ms`: median wall time of the jitted solve over `--repeat` calls, after a compiling call.

The cheapest setting (fewest evaluations) whose `|x - ref|` is no larger than 10 Euler steps'
is reported per model. A last table times a subset of settings at the critic's batch shape
(16 futures x 256 states, obs 28, action 5, latent 512, the paper's 4x512 field, random
initialisation; errors against the reference on the first 4 futures x 16 states). A randomly
initialised field is nearly straight along the flow, so its errors say little; its table is
about time per call.

For each trained model, a second table measures variance reduction of the Monte-Carlo Q: the
variance of `1/N sum_i r(s_f^i)` over 2,000 independent estimates with i.i.d. noise and with
antithetic noise pairs `(x_0, -x_0)` (`sample_future(..., noise=infom.AntitheticNoise(0))`,
`InFOMConfig.antithetic_futures`), for N = 4, 8, 16 and a linear, a quadratic and a step reward.

Run: `python benchmarks/sample_future_solvers.py` (about 5 minutes on 2 CPU cores).
"""

import argparse
import time
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import header, median_seconds, print_table
from jaxtyping import Array, Float, ScalarLike
from occupancy_accuracy import PROBLEMS, distance, exact_samples, init, make_trainer, next_pairs

import infom


NUM_SAMPLES, REFERENCE_STEPS = 4000, 1000


def _setting(solver: diffrax.AbstractSolver, num_steps: int, tol: float | None = None):
    name = type(solver).__name__
    if tol is None:
        return f"{name} {num_steps}", dict(solver=solver, num_steps=num_steps)
    controller = diffrax.PIDController(rtol=tol, atol=tol)
    return f"{name} tol {tol:g}", dict(solver=solver, num_steps=10, stepsize_controller=controller)


SETTINGS = [
    *(_setting(diffrax.Euler(), n) for n in (5, 10, 20, 50, 100)),
    *(
        _setting(solver, n)
        for solver in (diffrax.Heun(), diffrax.Midpoint(), diffrax.Ralston())
        for n in (1, 2, 3, 5, 10)
    ),
    *(_setting(diffrax.Tsit5(), n) for n in (1, 2, 3, 5)),
    *(_setting(diffrax.Tsit5(), 10, tol) for tol in (1e-2, 1e-3, 1e-4)),
]
CRITIC_SETTINGS = ("Euler 5", "Euler 10", "Heun 1", "Midpoint 1", "Heun 2", "Midpoint 2", "Ralston 2")
CRITIC_SETTINGS += ("Heun 5", "Tsit5 1", "Tsit5 2", "Tsit5 tol 0.01")
REFERENCE = dict(solver=diffrax.Tsit5(), num_steps=REFERENCE_STEPS)


class _Counted(infom.AbstractVectorField):
    """The wrapped field, plus a host callback that counts its (batched) evaluations."""

    field: infom.AbstractVectorField

    def condition(self, observation, action, intention):
        return self.field.condition(observation, action, intention)

    def velocity(
        self, t: ScalarLike, x: Float[Array, " obs_dim"], conditioning: Float[Array, " cond_dim"]
    ) -> Float[Array, " obs_dim"]:
        jax.debug.callback(_tick)  # no operands: runs once per batched call, not per sample
        return self.field.velocity(t, x, conditioning)


_COUNT = [0]


def _tick() -> None:
    _COUNT[0] += 1


def count_evaluations(solve: Callable, field, *args) -> int:
    _COUNT[0] = 0
    jax.block_until_ready(solve(_Counted(field), *args))
    jax.effects_barrier()
    return _COUNT[0]


def _solver(**kwargs) -> Callable:
    @jax.jit
    def solve(field, noise, s, a, z):
        return infom.solve_flow(field, noise, s, a, z, **kwargs)

    return solve


def trained_inputs(problem, field, encoder, seed: int):
    """`(noise, s, a, z)` for 4,000 futures at each of the problem's three `(s, a)`, and the
    exact occupancy samples there."""
    s_all, a_all, z_all, exact = [], [], [], []
    for i, (s, a) in enumerate(problem.points):
        next_key, z_key = jr.split(jr.fold_in(jr.key(seed), i))
        s_vec = jnp.tile(jnp.asarray(s, jnp.float32), (NUM_SAMPLES, 1))
        a_vec = jnp.tile(jnp.asarray(a, jnp.float32), (NUM_SAMPLES, 1))
        s_next, a_next = next_pairs(problem, next_key, s_vec, a_vec, None)
        z_all.append(infom.encode(encoder, s_next, a_next, key=z_key).sample)
        s_all.append(s_vec)
        a_all.append(a_vec)
        exact.append(exact_samples(problem, i, s, a, 0.9, None))
    s, a, z = (jnp.concatenate(x) for x in (s_all, a_all, z_all))
    noise = jr.normal(jr.key(seed + 1), s.shape)
    return (noise, s, a, z), exact


def split_distance(samples: np.ndarray, exact: list[np.ndarray]) -> float:
    return float(
        np.mean([distance(part, e) for part, e in zip(np.split(samples, len(exact)), exact, strict=True)])
    )


def solver_table(field, inputs, exact, *, repeat: int) -> list[tuple]:
    """Rows `(setting, evals, |x - ref|, W or None, ms)` for every setting."""
    reference = np.asarray(_solver(**REFERENCE)(field, *inputs))
    if exact is not None:
        print(f"  reference ({REFERENCE_STEPS} Tsit5 steps): W = {split_distance(reference, exact):.4f}")
    rows = []
    for name, kwargs in SETTINGS:
        solve = _solver(**kwargs)
        evals = count_evaluations(solve, field, *inputs)
        samples = np.asarray(solve(field, *inputs))
        error = float(np.mean(np.abs(samples - reference[: samples.shape[0]])))
        w = split_distance(samples, exact) if exact is not None else None
        seconds = median_seconds(lambda solve=solve: solve(field, *inputs), repeat=repeat)
        rows.append((name, evals, error, w, 1e3 * seconds))
    return rows


def print_rows(rows: list[tuple]) -> None:
    baseline = next(row for row in rows if row[0] == "Euler 10")
    has_w = rows[0][3] is not None
    table = []
    for name, evals, error, w, ms in rows:
        cells = [name, evals, f"{error:.2e}"]
        cells += [f"{w:.4f}"] if has_w else []
        cells += [f"{ms:.1f}", f"{ms / baseline[4]:.2f}"]
        table.append(cells)
    headers = (
        ["setting", "evals", "|x - ref|"] + (["W vs exact"] if has_w else []) + ["ms", "time / Euler 10"]
    )
    print_table(headers, table)
    eligible = [row for row in rows if row[2] <= baseline[2]]
    best = min(eligible, key=lambda row: (row[1], row[2]))
    print(
        f"cheapest with |x - ref| <= Euler 10's ({baseline[2]:.2e}, {baseline[1]} evals): {best[0]} "
        f"({best[1]} evals, |x - ref| {best[2]:.2e}"
        + (f", W {best[3]:.4f} vs Euler 10's {baseline[3]:.4f}" if has_w else "")
        + f", {best[4]:.1f} ms vs {baseline[4]:.1f} ms)\n",
        flush=True,
    )


ANTITHETIC_REPEATS = 2000
REWARDS = {
    "linear r = sum(x)": lambda x: jnp.sum(x, axis=-1),
    "quadratic r = -|x|^2": lambda x: -jnp.sum(jnp.square(x), axis=-1),
    "step r = 1[x_0 > 0]": lambda x: (x[..., 0] > 0).astype(x.dtype),
}


def antithetic_table(problem, field, encoder, seed: int) -> None:
    """Variance of the Monte-Carlo mean `1/N sum_i r(s_f^i)` over `ANTITHETIC_REPEATS` independent
    estimates (each with its own intention from the encoder, shared by its `N` futures, 10 Euler
    steps), with i.i.d. noise and with antithetic pairs `(x_0, -x_0)`, averaged over the probe's
    `(s, a)` points; reported relative to i.i.d. noise with the same `N`."""
    solve = _solver(num_steps=10)
    rows = []
    for num_futures in (4, 8, 16):
        variances = {name: {"iid": [], "antithetic": []} for name in REWARDS}
        for i, (s, a) in enumerate(problem.points):
            next_key, z_key, noise_key = jr.split(jr.fold_in(jr.key(seed), 100 + i), 3)
            s_vec = jnp.tile(jnp.asarray(s, jnp.float32), (ANTITHETIC_REPEATS, 1))
            a_vec = jnp.tile(jnp.asarray(a, jnp.float32), (ANTITHETIC_REPEATS, 1))
            s_next, a_next = next_pairs(problem, next_key, s_vec, a_vec, None)
            z = infom.encode(encoder, s_next, a_next, key=z_key).sample
            iid = jr.normal(noise_key, (num_futures, ANTITHETIC_REPEATS, s_vec.shape[-1]))
            half = iid[: num_futures // 2]
            for kind, noise in (("iid", iid), ("antithetic", jnp.concatenate([half, -half]))):
                futures = solve(field, noise, s_vec, a_vec, z)
                for name, reward in REWARDS.items():
                    estimates = jnp.mean(reward(futures), axis=0)
                    variances[name][kind].append(float(jnp.var(estimates)))
        for name in REWARDS:
            iid_var = float(np.mean(variances[name]["iid"]))
            anti_var = float(np.mean(variances[name]["antithetic"]))
            rows.append(
                [str(num_futures), name, f"{iid_var:.3e}", f"{anti_var:.3e}", f"{anti_var / iid_var:.2f}"]
            )
    print_table(["N", "reward", "var i.i.d.", "var antithetic", "ratio"], rows)
    print(flush=True)


def critic_inputs(seed: int):
    obs_dim, action_dim, latent_dim, batch, futures = 28, 5, 512, 256, 16
    config = infom.NetworkConfig(latent_dim=latent_dim)
    field = infom.VectorField(obs_dim, action_dim, latent_dim, config.hidden_dims, key=jr.key(seed))
    s_key, a_key, z_key, noise_key = jr.split(jr.key(seed + 1), 4)
    s = jr.normal(s_key, (batch, obs_dim))
    a = jr.uniform(a_key, (batch, action_dim), minval=-1.0, maxval=1.0)
    z = jr.normal(z_key, (batch, latent_dim))  # one prior intention per state, shared by its futures
    noise = jr.normal(noise_key, (futures, batch, obs_dim))
    return field, (noise, s, a, z)


def critic_table(seed: int, repeat: int) -> None:
    field, (noise, s, a, z) = critic_inputs(seed)
    subset = (noise[:4, :16], s[:16], a[:16], z[:16])
    reference = np.asarray(_solver(**REFERENCE)(field, *subset))
    rows = []
    for name, kwargs in SETTINGS:
        if name not in CRITIC_SETTINGS:
            continue
        solve = _solver(**kwargs)
        evals = count_evaluations(solve, field, noise, s, a, z)
        error = float(np.mean(np.abs(np.asarray(solve(field, *subset)) - reference)))
        seconds = median_seconds(lambda solve=solve: solve(field, noise, s, a, z), repeat=repeat)
        rows.append((name, evals, error, None, 1e3 * seconds))
    print_rows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="training updates per model")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per setting (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-critic", action="store_true", help="skip the critic-shape table")
    args = parser.parse_args()
    header(
        f"models trained here: sarsa_flow_loss (infom form), gamma 0.9, {args.steps:,} updates; "
        f"reference: Tsit5 with {REFERENCE_STEPS} steps from the same noise; median of {args.repeat} calls"
    )
    for problem in PROBLEMS:
        start = time.perf_counter()
        run = make_trainer(problem, "infom", steps=args.steps, tau=0.02)
        (field, encoder), _ = jax.block_until_ready(
            jax.jit(run)(init(problem, args.seed), jr.key(args.seed + 1), jnp.asarray(0.9, jnp.float32))
        )
        print(
            f"\n{problem.name} probe ({time.perf_counter() - start:.0f} s to train), 12,000 samples per call:"
        )
        inputs, exact = trained_inputs(problem, field, encoder, args.seed + 2)
        floor = np.mean(
            [
                distance(exact_samples(problem, 50 + i, s, a, 0.9, None), e)
                for i, ((s, a), e) in enumerate(zip(problem.points, exact, strict=True))
            ]
        )
        print(f"  Monte-Carlo floor of W: {floor:.4f}")
        print_rows(solver_table(field, inputs, exact, repeat=args.repeat))
        print(f"  Monte-Carlo Q estimator variance, {ANTITHETIC_REPEATS} estimates per (s, a):")
        antithetic_table(problem, field, encoder, args.seed + 3)
    if not args.skip_critic:
        print("critic shape: 16 futures x 256 states, obs 28, 4x512 field, latent 512 (random init):")
        critic_table(args.seed, repeat=max(3, args.repeat // 2))


if __name__ == "__main__":
    main()
