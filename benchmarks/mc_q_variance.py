"""How much do antithetic and Latin-hypercube noise lower the variance of the critic's
Monte-Carlo Q on a trained OGBench model, and how many futures do they save?

The critic's target is `Q_hat(s, a, z) = 1/(1 - gamma) * 1/N sum_i r_phi(s_f^i)` with
`s_f^i ~ q(. | s, a, z)` (the dominant cost of a fine-tuning update). This script loads a
fine-tuned run directory (default: `cube-single` task 1 as written by
`benchmarks/ogbench_tasks.py`), takes `--states` `(s, a)` pairs from the task's fine-tuning
dataset, draws one prior intention `z ~ N(0, I)` per state (as the critic does, shared by the
state's futures) and estimates `Q_hat` `--repeats` times with fresh noise, using the run's own
sampler (solver, steps and clipping to the data range, as in `mc_q_targets`). For each noise
scheme and `N` it reports the estimator's variance over the noise, averaged over the states
and over the run's seeds, relative to i.i.d. noise with `N = 16` (the paper's setting), and
`equivalent i.i.d. N` = `16 / ratio`. A scheme with `N < 16` whose ratio is at most 1 gives
targets no noisier than the paper's at `N / 16` of the futures' cost.

Schemes: i.i.d. `N(0, I)`; antithetic pairs `(x_0, -x_0)` (`noise=infom.AntitheticNoise(0)`,
`InFOMConfig.antithetic_futures`); a Latin hypercube over the `N` futures
(`noise=infom.LatinHypercubeNoise(0)`, `InFOMConfig.latin_hypercube_futures`). All three give unbiased
estimates.

Run: `python benchmarks/mc_q_variance.py [--run-dir DIR] [--states 128] [--repeats 200]`.
"""

import argparse
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
from _common import header, print_table

import infom
from infom.agents.infom import _critic_sampling
from infom.run._run import load_task_data


DEFAULT_RUN = "runs/ogbench_tasks/cube-single-play-singletask-task1-v0-cube-single-cpu"
SCHEMES = (
    ("i.i.d.", (4, 8, 12, 16)),
    ("antithetic", (8, 10, 12, 16)),
    ("latin hypercube", (4, 8, 10, 12, 14, 16)),
)


def _seed(states, index: int):
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, states)


@eqx.filter_jit
def _estimates(state, config, s, a, z, key, num_futures: int, scheme: str, repeats: int):
    """`[repeats, states]` independent Monte-Carlo Q estimates of the same `(s, a, z)`."""
    options = dict(_critic_sampling(config, futures_axis=0))
    options["noise"] = {
        "antithetic": infom.AntitheticNoise(0),
        "latin hypercube": infom.LatinHypercubeNoise(0),
    }.get(scheme, infom.GaussianNoise())
    clip = (state.normalizer.lower, state.normalizer.upper) if config.clip_futures else None
    field, reward = state.models.field, state.models.reward

    def one(key):
        futures = infom.sample_future(
            field, s, a, z, key=key, shape=(num_futures, s.shape[0]), clip=clip, **options
        )
        return infom.mc_q(reward, futures, gamma=config.gamma)

    return jax.lax.map(one, jr.split(key, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=DEFAULT_RUN, help="a fine-tuned run directory")
    parser.add_argument("--states", type=int, default=128, help="(s, a) pairs from the fine-tuning data")
    parser.add_argument("--repeats", type=int, default=200, help="independent estimates per (s, a)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "disable")
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").exists():
        raise SystemExit(
            f"{run_dir} is not a run directory; make one with `python benchmarks/ogbench_tasks.py --tasks 1` "
            "(or pass --run-dir)"
        )
    env_name, config, run, states = infom.load_run(run_dir)
    steps = config.num_flow_steps if config.critic_flow_steps is None else config.critic_flow_steps
    header(
        f"run {run_dir.name} ({env_name}), step {int(np.max(states.step))}, {run.num_seeds} seeds; "
        f"{args.states} (s, a) from the fine-tuning data, one prior z each; {args.repeats} estimates per "
        f"(s, a) and setting; sampler: {config.critic_solver} x {steps}"
    )
    data = load_task_data(
        env_name, run, generate_missing=False, progress=False, normalizer=_seed(states, 0).normalizer
    )
    key = jr.key(args.seed)
    batch = infom.sample_batch(data.finetune, jr.fold_in(key, 0), args.states)
    s, a = batch.observations, batch.actions
    z = jr.normal(jr.fold_in(key, 1), (args.states, config.network.latent_dim), dtype=s.dtype)

    variances: dict[tuple[str, int], list[float]] = {}
    q_means: list[float] = []
    started = time.perf_counter()
    for seed in range(run.num_seeds):
        state = _seed(states, seed)
        for scheme, sizes in SCHEMES:
            for n in sizes:
                q = np.asarray(
                    _estimates(state, config, s, a, z, jr.fold_in(key, 10 + seed), n, scheme, args.repeats),
                    np.float64,
                )
                variances.setdefault((scheme, n), []).append(float(np.mean(np.var(q, axis=0, ddof=1))))
                if scheme == "i.i.d." and n == 16:
                    q_means.append(float(q.mean()))
        print(f"  seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)

    reference = np.mean(variances[("i.i.d.", 16)])
    rows = []
    for scheme, sizes in SCHEMES:
        for n in sizes:
            var = np.mean(variances[(scheme, n)])
            per_seed = " ".join(
                f"{v / r:.2f}" for v, r in zip(variances[(scheme, n)], variances[("i.i.d.", 16)], strict=True)
            )
            rows.append(
                [scheme, n, f"{var:.3e}", f"{var / reference:.2f}", per_seed, f"{16 * reference / var:.1f}"]
            )
    print(f"\nmean Q_hat (i.i.d., N = 16): {np.mean(q_means):.2f}")
    print_table(
        ["noise", "N", "variance of Q_hat", "ratio to i.i.d. N = 16", "per seed", "equivalent i.i.d. N"], rows
    )


if __name__ == "__main__":
    main()
