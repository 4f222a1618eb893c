"""How fast is one InFOM update, in seconds and in this machine's matmul-equivalents?

Times `pretrain_step` and `finetune_step` (the actor update included) after compilation, at the
paper's setting (4 x 512 MLPs, latent 512, batch 256, 16 futures x 10 Euler steps, obs 28 /
action 5 as cube-single) and at CPU-budget settings, plus the critic's future sampling alone and
the per-update time inside a compiled block of updates. Each setting runs in its own process
so that its peak memory (max RSS) and compile time are its own. FLOPs are counted analytically
(XLA's `cost_analysis()` counts a loop body once), and every time is also reported as a cost in
matmul-GFLOP-equivalents: seconds x the float32 matmul rate (a jitted 2048 x 2048 product) measured
in the same process, timed in the same round robin as the updates.

    python benchmarks/update_speed.py                     # all settings, 7 timed repeats
    python benchmarks/update_speed.py --settings paper --repeat 5
    python benchmarks/update_speed.py --settings cpu-preset-standard-gpi --seeds-only --block 8 --repeat 3

`--seeds-only` times just the 3-seed vmapped fine-tuning block with the actor's schedule as a
branch (the shared, unbatched counter) and as a select (each seed's batched counter), beside one
seed's block, so that settings with an expensive actor loss finish in minutes.
"""

import argparse
import functools
import json
import resource
import subprocess
import sys
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import header, interleaved_medians, print_table

import infom
from infom.agents.infom import mc_q_targets


OBS, ACT, BATCH = 28, 5, 256

SETTINGS = {
    # name: (hidden dims, latent, futures, flow steps, extra InFOMConfig fields)
    "paper": ((512,) * 4, 512, 16, 10, {}),
    "paper-4-futures": ((512,) * 4, 512, 4, 10, {}),
    # The paper's setting with the critic's futures drawn by 2 midpoint steps (4 field evaluations
    # instead of 10; see sample_future_solvers.py for its accuracy).
    "paper-midpoint-2": (
        (512,) * 4,
        512,
        16,
        10,
        {"critic_solver": diffrax.Midpoint(), "critic_flow_steps": 2},
    ),
    "small-16-futures": ((256,) * 3, 128, 16, 10, {}),
    "cpu-preset": ((256,) * 3, 128, 8, 10, {}),
    # The CPU preset with standard GPI: the actor differentiates through the ODE over 8
    # intentions, so running the actor loss on every update (a select) is expensive.
    "cpu-preset-standard-gpi": ((256,) * 3, 128, 8, 10, {"policy_extraction": "standard_gpi"}),
    # The critic's futures from a distilled one-step student (`student_steps`; its teacher is the
    # field with 10 Euler steps on 1 future per state), and from 2 midpoint steps, for comparison.
    "cpu-preset-student-1": ((256,) * 3, 128, 8, 10, {"student_steps": 1}),
    "cpu-preset-midpoint-2": (
        (256,) * 3,
        128,
        8,
        10,
        {"critic_solver": diffrax.Midpoint(), "critic_flow_steps": 2},
    ),
    "paper-student-1": ((512,) * 4, 512, 16, 10, {"student_steps": 1}),
}
# The paper's public code on a 2-core machine of this kind (FACTS.md), as matmul-GFLOP-equivalents
# (median seconds x that machine's 145 GFLOP/s matmul rate); for orientation only.
REFERENCE_COST = {
    "paper": (18.6, 162.0),
    "paper-midpoint-2": (18.6, 162.0),
    "paper-4-futures": (18.9, 52.3),
    "small-16-futures": (3.8, 30.5),
}


def _mlp_macs(in_dim: int, widths: tuple[int, ...]) -> int:
    dims = (in_dim, *widths)
    return sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))


def analytic_gflop(
    hidden,
    latent,
    futures,
    steps,
    *,
    split: bool = True,
    critic_evals: int | None = None,
    student: tuple[int, int] | None = None,
) -> tuple[float, float, float]:
    """FLOPs of (pre-training update, fine-tuning update with actor, critic futures alone).

    A forward pass costs 2 x MACs and a forward + backward pass 3 x that. With `split=False`
    the field's first layer sees the full concatenation `[x, t, s, a, z]` at every evaluation,
    as in the reference implementation. `student = (student_steps, student_futures)` adds the
    distillation of a student (its teacher takes `critic_evals` evaluations) and samples the
    critic's futures with the student's steps.
    """
    h0 = hidden[0]
    trunk = _mlp_macs(h0, (*hidden[1:], OBS))
    cond = (OBS + ACT + latent) * h0
    velocity = (OBS + 1) * h0 + trunk + (0 if split else cond)
    cond_once = cond if split else 0
    encoder = _mlp_macs(OBS + ACT, hidden) + 2 * hidden[-1] * latent
    reward = _mlp_macs(OBS, (*hidden, 1))
    critic = 2 * _mlp_macs(OBS + ACT, (*hidden, 1))
    actor = _mlp_macs(OBS, hidden) + hidden[-1] * ACT

    flow = (
        3 * encoder  # encoder, forward + backward
        + 2 * 3 * cond_once  # online conditioning for the two terms, forward + backward
        + cond_once
        + steps * velocity
        + velocity  # target: conditioning, ODE, target velocity
        + 2 * 3 * velocity  # online velocity in both terms, forward + backward
    )
    pretrain = flow + 3 * actor
    critic_evals = steps if critic_evals is None else critic_evals
    distill = 0
    if student is not None:
        student_steps, student_futures = student
        # teacher: conditioning + its solve; student: conditioning + its solve, forward + backward
        distill = cond_once + student_futures * critic_evals * velocity
        distill += 3 * (cond_once + student_futures * student_steps * velocity)
        critic_evals = student_steps
    critic_futures = cond_once + futures * critic_evals * velocity + futures * reward
    finetune = flow + 3 * reward + critic_futures + 3 * critic + 3 * actor + 3 * critic + distill
    return tuple(2 * BATCH * macs / 1e9 for macs in (pretrain, finetune, critic_futures))


def run_setting(name: str, repeat: int, block: int = 20, seeds_only: bool = False) -> dict:
    hidden, latent, futures, steps, extra = SETTINGS[name]
    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=hidden, latent_dim=latent),
        num_futures=futures,
        num_flow_steps=steps,
        batch_size=BATCH,
        **extra,
    )
    optim = infom.make_optimizer(config)
    rng = np.random.default_rng(0)
    n = 20_000
    terminals = np.zeros(n, bool)
    terminals[999::1000] = True
    raw = infom.Dataset.from_arrays(
        rng.normal(size=(n, OBS)).astype(np.float32),
        rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        terminals=terminals,
        rewards=-rng.uniform(0, 1, n).astype(np.float32),
    )
    normalizer = infom.fit_normalizer(raw.observations)
    dataset = infom.normalize_dataset(raw, normalizer)
    # step 3: (3 + 1) % actor_freq == 0, so the fine-tuning step includes the actor update.
    state = infom.init_train_state(OBS, ACT, normalizer, config, optim, key=jr.key(0))
    state = eqx.tree_at(lambda s: s.step, state, jnp.int32(3))
    batch = infom.sample_batch(dataset, jr.key(1), BATCH)
    key = jr.key(2)

    pretrain = eqx.filter_jit(lambda s, b, k: infom.pretrain_step(s, b, key=k, config=config, optim=optim))
    finetune = eqx.filter_jit(lambda s, b, k: infom.finetune_step(s, b, key=k, config=config, optim=optim))
    futures_only = eqx.filter_jit(
        lambda s, b, k: mc_q_targets(
            s.models, b, key=k, config=config, clip=(s.normalizer.lower, s.normalizer.upper)
        )
    )
    pre_block = eqx.filter_jit(
        lambda s, k: infom.pretrain_block(s, dataset, key=k, num_updates=block, config=config, optim=optim)
    )
    fine_block = eqx.filter_jit(
        lambda s, k: infom.finetune_block(s, dataset, key=k, num_updates=block, config=config, optim=optim)
    )

    # Three seeds vmapped in one block: the actor's schedule from the shared, unbatched update
    # counter (a branch; what the run does) against the batched per-seed counter (a select that
    # runs the actor loss on every update; what the run did before).
    seeds = 3
    seed_states = eqx.filter_vmap(
        lambda k: eqx.tree_at(
            lambda s: s.step,
            infom.init_train_state(OBS, ACT, normalizer, config, optim, key=k),
            jnp.int32(0),
        )
    )(jr.split(jr.key(3), seeds))
    seed_keys = jr.split(jr.key(4), seeds)

    def seeds_block(first_step):
        return eqx.filter_jit(
            lambda s, k: eqx.filter_vmap(
                lambda state, key: infom.finetune_block(
                    state,
                    dataset,
                    key=key,
                    num_updates=block,
                    config=config,
                    optim=optim,
                    first_step=first_step,
                )
            )(s, k)
        )

    seeds_branch, seeds_select = seeds_block(jnp.int32(0)), seeds_block(None)

    result = {"setting": name}
    calls = {
        "pretrain": functools.partial(pretrain, state, batch, key),
        "finetune": functools.partial(finetune, state, batch, key),
        "futures": functools.partial(futures_only, state, batch, key),
        "pretrain_block": functools.partial(pre_block, state, key),
        "finetune_block": functools.partial(fine_block, state, key),
        "finetune_block_seeds_branch": functools.partial(seeds_branch, seed_states, seed_keys),
        "finetune_block_seeds_select": functools.partial(seeds_select, seed_states, seed_keys),
    }
    if seeds_only:
        calls = {
            k: calls[k]
            for k in ("finetune_block", "finetune_block_seeds_branch", "finetune_block_seeds_select")
        }
    compile_seconds = {}
    for label, call in calls.items():
        started = time.perf_counter()
        jax.block_until_ready(call())
        compile_seconds[label] = time.perf_counter() - started
    # The matmul is timed in the same round robin as the updates, so that a change of machine
    # load between them affects both alike and the cost in matmul-equivalents stays comparable.
    a, b = jr.normal(jr.key(0), (2048, 2048)), jr.normal(jr.key(1), (2048, 2048))
    matmul = jax.jit(jnp.matmul)
    medians = interleaved_medians({**calls, "matmul": lambda: matmul(a, b)}, repeat=repeat, warmup=1)
    for label in calls:
        per_update = block * (seeds if "_seeds_" in label else 1) if "_block" in label else 1
        seconds = medians[label] / per_update
        result[label] = seconds
        result[f"{label}_compile"] = compile_seconds[label] - medians[label]
    result["matmul_gflops"] = 2 * 2048**3 / medians["matmul"] / 1e9
    result["block"] = block
    if seeds_only:
        return result
    evals = (extra.get("critic_flow_steps") or steps) * (
        2 if isinstance(extra.get("critic_solver"), (diffrax.Midpoint, diffrax.Heun)) else 1
    )
    student = (extra["student_steps"], 1) if "student_steps" in extra else None
    result["gflop"] = analytic_gflop(hidden, latent, futures, steps, critic_evals=evals, student=student)
    result["gflop_unsplit"] = analytic_gflop(
        hidden, latent, futures, steps, split=False, critic_evals=evals, student=student
    )
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS)
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--block", type=int, default=20, help="updates per timed block")
    parser.add_argument(
        "--seeds-only",
        action="store_true",
        help="time only the 3-seed vmapped block as a branch and as a select, beside one seed's block",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_setting(args.child, args.repeat, args.block, args.seeds_only)))
        return

    header(
        "Median seconds per update after compilation (synthetic batch on device); "
        "cost = seconds x this process's float32 matmul GFLOP/s."
    )
    results = []
    for name in args.settings.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--repeat",
                str(args.repeat),
                "--block",
                str(args.block),
            ]
            + (["--seeds-only"] if args.seeds_only else []),
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))

    if args.seeds_only:
        print_table(
            [
                "setting",
                "updates per block",
                "one seed: ms/update",
                "3 seeds, branch: ms/update/seed",
                "3 seeds, select: ms/update/seed",
                "branch / select",
                "matmul GFLOP/s",
            ],
            [
                [
                    r["setting"],
                    str(r["block"]),
                    f"{r['finetune_block'] * 1e3:.1f}",
                    f"{r['finetune_block_seeds_branch'] * 1e3:.1f}",
                    f"{r['finetune_block_seeds_select'] * 1e3:.1f}",
                    f"{r['finetune_block_seeds_branch'] / r['finetune_block_seeds_select']:.2f}",
                    f"{r['matmul_gflops']:.0f}",
                ]
                for r in results
            ],
        )
        return

    rows = []
    for r in results:
        rate = r["matmul_gflops"]
        pre_gflop, fine_gflop, fut_gflop = r["gflop"]
        ref = REFERENCE_COST.get(r["setting"])
        for label, gflop, ref_cost in (
            ("pretrain_step", pre_gflop, ref and ref[0]),
            ("finetune_step (actor)", fine_gflop, ref and ref[1]),
            ("critic futures only", fut_gflop, None),
        ):
            key = {"pretrain_step": "pretrain", "finetune_step (actor)": "finetune"}.get(label, "futures")
            seconds = r[key]
            cost = seconds * rate
            rows.append(
                [
                    r["setting"],
                    label,
                    f"{seconds * 1e3:.1f}",
                    f"{gflop:.1f}",
                    f"{gflop / seconds:.0f}",
                    f"{gflop / seconds / rate:.2f}",
                    f"{cost:.1f}",
                    f"{cost / ref_cost:.2f}" if ref_cost else "-",
                    f"{r[key + '_compile']:.1f}" if key != "futures" else "-",
                ]
            )
    print_table(
        [
            "setting",
            "update",
            "ms",
            "GFLOP",
            "GFLOP/s",
            "of matmul",
            "cost (matmul-GFLOP-eq)",
            "vs paper code",
            "compile s",
        ],
        rows,
    )
    print()
    print_table(
        [
            "setting",
            "matmul GFLOP/s",
            "pretrain ms/update in block",
            "finetune ms/update in block",
            f"finetune ms/update/seed, {3} seeds vmapped: branch / select (ratio)",
            "peak RSS GiB",
            "unsplit-field GFLOP (pre / fine)",
        ],
        [
            [
                r["setting"],
                f"{r['matmul_gflops']:.0f}",
                f"{r['pretrain_block'] * 1e3:.1f}",
                f"{r['finetune_block'] * 1e3:.1f}",
                "{:.1f} / {:.1f} ({:.2f})".format(
                    r["finetune_block_seeds_branch"] * 1e3,
                    r["finetune_block_seeds_select"] * 1e3,
                    r["finetune_block_seeds_branch"] / r["finetune_block_seeds_select"],
                ),
                f"{r['peak_rss_gib']:.2f}",
                f"{r['gflop_unsplit'][0]:.1f} / {r['gflop_unsplit'][1]:.1f}",
            ]
            for r in results
        ],
    )


if __name__ == "__main__":
    main()
