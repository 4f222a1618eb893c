"""How accurate is a student sampler distilled into one or two Euler steps (`sampler_distill_loss`,
`InFOMConfig.student_steps`), against exact occupancies and against a 1,000-step solve of a trained
model, and what does it cost?

A student is a vector field `u`, initialised as a copy of the trained field `v`, whose `k`-step Euler
solve is regressed on the teacher's solve from the same noise (`infom.sampler_distill_loss`):
`L(u) = E || Phi_u^k(x_0; s, a, z) - Phi_v^K(x_0; s, a, z) ||^2`, Adam 1e-3, batch 256,
`--distill-steps` updates on the model's own training distribution. Here the teacher is frozen; in
InFOM's fine-tuning (`student_steps`) the teacher is the field being fine-tuned and the student learns
alongside it.

Part 1, probes (`--probes`): the two occupancy models of `sample_future_solvers.py` (trained here with
`sarsa_flow_loss`, gamma 0.9, `--steps` updates), sampled at the three `(s, a)` of
`occupancy_accuracy.py`, 4,000 futures each from the same noise. Columns as in
`sample_future_solvers.py`: field evaluations per sample, `|x - ref|` (mean absolute difference to a
1,000-step Tsit5 solve of the teacher from the same noise), `W` (sliced) Wasserstein-1 to exact
occupancy samples, and the wall time of a 12,000-sample call relative to 10 Euler steps.

Part 2, a trained InFOM model (`--run DIR`): the fine-tuned field and reward model of seed 0 of a
run directory (e.g. the cube-single task-1 run of `ogbench_tasks.py`). Students learn on `(s, a)` of
the fine-tuning dataset and prior intentions `z ~ N(0, I)` (the critic's), with the critic's
clipping; evaluation on 1,024 held-out states x 8 futures from the same noise: `|x - ref|` against
1,000 Euler steps, and the error of the Monte-Carlo Q `Q = 1/(1 - gamma) mean_i r(s_f^i)` against
the reference solve's Q from the same noise (`|dQ|`, mean over states), next to the Q estimate's own
Monte-Carlo standard error over its 8 futures (the noise the critic already lives with).

Run: `python benchmarks/distilled_sampler.py --probes` (about 10 minutes on 2 cores) and/or
`--run runs/ablation/reference/cube-single-play-singletask-task1-v0-cube-single-cpu`.
"""

import argparse
import time
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _common import header, median_seconds, print_table
from occupancy_accuracy import PROBLEMS, distance, exact_samples, init, make_trainer
from sample_future_solvers import REFERENCE, count_evaluations, split_distance, trained_inputs

import infom


BATCH_SIZE, LEARNING_RATE = 256, 1e-3
TEACHERS = {"Euler 10": dict(num_steps=10), "Midpoint 2": dict(num_steps=2, solver=diffrax.Midpoint())}
STUDENTS = (("Euler 10", 1), ("Euler 10", 2), ("Midpoint 2", 1))
SOLVERS = {
    "Euler 1": dict(num_steps=1),
    "Euler 2": dict(num_steps=2),
    "Euler 10": dict(num_steps=10),
    "Midpoint 2": dict(num_steps=2, solver=diffrax.Midpoint()),
}


def distill(
    teacher: infom.AbstractVectorField,
    sample_inputs: Callable,
    *,
    key,
    updates: int,
    student_steps: int,
    teacher_steps: int,
    teacher_solver: diffrax.AbstractSolver | None = None,
    clip=None,
) -> tuple[infom.AbstractVectorField, np.ndarray]:
    """A student (a copy of `teacher`) after `updates` Adam steps on `sampler_distill_loss`; and its
    `distance` metric per update. `sample_inputs(key) -> (noise, s, a, z)`."""
    optim = optax.adam(LEARNING_RATE)

    def loss_fn(student, key):
        noise, s, a, z = sample_inputs(key)
        return infom.sampler_distill_loss(
            student,
            teacher,
            noise,
            s,
            a,
            z,
            student_steps=student_steps,
            teacher_steps=teacher_steps,
            teacher_solver=teacher_solver,
            clip=clip,
        )

    @jax.jit
    def run(student, key):
        def step(carry, key):
            student, opt_state = carry
            (_, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(student, key)
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
                updates_, opt_state = optim.update(grads, opt_state)
            return (eqx.apply_updates(student, updates_), opt_state), aux.distance

        carry = (student, optim.init(eqx.filter(student, eqx.is_array)))
        (student, _), distances = jax.lax.scan(step, carry, jr.split(key, updates))
        return student, distances

    student = infom.reset_target(teacher)
    student, distances = run(student, key)
    return student, np.asarray(distances)


def _solve(**kwargs) -> Callable:
    @jax.jit
    def solve(field, noise, s, a, z):
        return infom.solve_flow(field, noise, s, a, z, **kwargs)

    return solve


def _row(name, field, solve, inputs, reference, exact, repeat):
    samples = np.asarray(solve(field, *inputs))
    evals = count_evaluations(solve, field, *inputs)
    error = float(np.mean(np.abs(samples - reference)))
    ms = 1e3 * median_seconds(lambda: solve(field, *inputs), repeat=repeat)
    return [name, evals, f"{error:.2e}", f"{split_distance(samples, exact):.4f}", f"{ms:.1f}", ms]


def probe_tables(args) -> None:
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
        reference = np.asarray(_solve(**REFERENCE)(field, *inputs))
        print(
            f"  Monte-Carlo floor of W: {floor:.4f}; reference ({REFERENCE['num_steps']} Tsit5 steps): "
            f"W = {split_distance(reference, exact):.4f}"
        )

        def sample_inputs(key, problem=problem, encoder=encoder):
            batch_key, z_key, noise_key = jr.split(key, 3)
            batch = problem.sample_batch(batch_key, BATCH_SIZE)
            z = infom.encode(encoder, batch.next_observations, batch.next_actions, key=z_key).sample
            noise = jr.normal(noise_key, batch.observations.shape)
            return noise, batch.observations, batch.actions, jax.lax.stop_gradient(z)

        rows = []
        for name, kwargs in SOLVERS.items():
            rows.append(_row(name, field, _solve(**kwargs), inputs, reference, exact, args.repeat))
        for teacher_name, steps in STUDENTS:
            teacher = TEACHERS[teacher_name]
            start = time.perf_counter()
            student, distances = distill(
                field,
                sample_inputs,
                key=jr.key(args.seed + 10 + steps),
                updates=args.distill_steps,
                student_steps=steps,
                teacher_steps=teacher["num_steps"],
                teacher_solver=teacher.get("solver"),
            )
            seconds = time.perf_counter() - start
            name = f"student {steps} (teacher {teacher_name})"
            rows.append(_row(name, student, _solve(num_steps=steps), inputs, reference, exact, args.repeat))
            print(
                f"  {name}: {seconds:.0f} s to distil; distance to the teacher's samples "
                f"{distances[:100].mean():.4f} (first 100 updates) -> "
                f"{distances[-100:].mean():.4f} (last 100)"
            )
        baseline = next(row[-1] for row in rows if row[0] == "Euler 10")
        print_table(
            ["sampler", "evals", "|x - ref|", "W vs exact", "ms", "time / Euler 10"],
            [[*row[:-1], f"{row[-1] / baseline:.2f}"] for row in rows],
        )


def trained_table(args) -> None:
    env_name, config, run, states = infom.load_run(args.run)
    seed0 = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, states)
    models = seed0.models
    data = infom.load_task_data(
        env_name, run, normalizer=seed0.normalizer, generate_missing=False, progress=False
    )
    observations = jnp.asarray(data.finetune.observations)
    actions = jnp.asarray(data.finetune.actions)
    clip = (seed0.normalizer.lower, seed0.normalizer.upper) if config.clip_futures else None
    latent = config.network.latent_dim
    held_out = np.random.default_rng(args.seed).choice(observations.shape[0], 1024, replace=False)
    mask = np.ones(observations.shape[0], bool)
    mask[held_out] = False
    train_s, train_a = observations[mask], actions[mask]

    def sample_inputs(key):
        index_key, z_key, noise_key = jr.split(key, 3)
        index = jr.randint(index_key, (BATCH_SIZE,), 0, train_s.shape[0])
        s, a = train_s[index], train_a[index]
        return jr.normal(noise_key, s.shape), s, a, jr.normal(z_key, (BATCH_SIZE, latent))

    eval_key = jr.key(args.seed + 100)
    num_futures = 8
    s = observations[held_out]
    a = actions[held_out]
    z = jr.normal(jr.fold_in(eval_key, 0), (1024, latent))
    noise = jr.normal(jr.fold_in(eval_key, 1), (num_futures, 1024, s.shape[1]))
    inputs = (noise, s, a, z)
    reward = jax.jit(lambda futures: infom.mc_q(models.reward, futures, gamma=config.gamma))
    per_future = jax.jit(jax.vmap(jax.vmap(models.reward)))

    def solve_with(**kwargs):
        return _solve(**kwargs, clip=clip)

    reference = np.asarray(solve_with(num_steps=1000)(models.field, *inputs))
    q_ref = np.asarray(reward(jnp.asarray(reference)))
    r = np.asarray(per_future(jnp.asarray(reference))) / (1 - config.gamma)
    mc_error = float(np.mean(np.std(r, axis=0, ddof=1) / np.sqrt(num_futures)))
    print(
        f"\n{env_name}, seed 0 of {args.run}: 1,024 held-out states x {num_futures} futures; reference "
        f"1,000 Euler steps; mean |Q_ref| {np.mean(np.abs(q_ref)):.2f}, Monte-Carlo standard error of Q "
        f"over its {num_futures} futures {mc_error:.3f}"
    )
    rows = []

    def add(name, field, solve):
        samples = np.asarray(solve(field, *inputs))
        evals = count_evaluations(solve, field, *inputs)
        error = float(np.mean(np.abs(samples - reference)))
        dq = float(np.mean(np.abs(np.asarray(reward(jnp.asarray(samples))) - q_ref)))
        ms = 1e3 * median_seconds(lambda: solve(field, *inputs), repeat=args.repeat)
        rows.append([name, evals, f"{error:.2e}", f"{dq:.3f}", f"{ms:.1f}", ms])

    for name, kwargs in SOLVERS.items():
        add(name, models.field, solve_with(**kwargs))
    for teacher_name, steps in STUDENTS:
        teacher = TEACHERS[teacher_name]
        start = time.perf_counter()
        student, distances = distill(
            models.field,
            sample_inputs,
            key=jr.key(args.seed + 10 + steps),
            updates=args.distill_steps,
            student_steps=steps,
            teacher_steps=teacher["num_steps"],
            teacher_solver=teacher.get("solver"),
            clip=clip,
        )
        name = f"student {steps} (teacher {teacher_name})"
        print(
            f"  {name}: {time.perf_counter() - start:.0f} s to distil; distance to the teacher's samples "
            f"{distances[:100].mean():.4f} (first 100 updates) -> {distances[-100:].mean():.4f} (last 100)"
        )
        add(name, student, solve_with(num_steps=steps))
    baseline = next(row[-1] for row in rows if row[0] == "Euler 10")
    print_table(
        ["sampler", "evals", "|x - ref|", "|dQ|", "ms", "time / Euler 10"],
        [[*row[:-1], f"{row[-1] / baseline:.2f}"] for row in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", action="store_true", help="part 1: the two probe models")
    parser.add_argument("--run", help="part 2: a run directory with a trained InFOM model")
    parser.add_argument("--steps", type=int, default=10_000, help="training updates per probe model")
    parser.add_argument("--distill-steps", type=int, default=3_000, help="distillation updates per student")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per sampler (median)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.probes and args.run is None:
        parser.error("pass --probes and/or --run DIR")
    header(
        f"students distilled for {args.distill_steps:,} updates (Adam {LEARNING_RATE:g}, "
        f"batch {BATCH_SIZE}); median of {args.repeat} calls"
    )
    if args.probes:
        probe_tables(args)
    if args.run is not None:
        trained_table(args)


if __name__ == "__main__":
    main()
