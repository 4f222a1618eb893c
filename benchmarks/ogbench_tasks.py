"""How often does InFOM solve OGBench tasks at a CPU budget, next to behaviour cloning?

For one domain (default `cube-single`) and its single tasks, with a preset (default
`<domain>-cpu`) and `--seeds` seeds trained together in one compiled program (one after another,
the CPU presets' `seed_batch=1`):

1. pre-trains **once** with `infom.train(...)` on the domain's reward-free play data
   (pre-training never sees a reward, so it is the same for every task of the domain), stopping
   when pre-training ends;
2. for each task, copies that run directory and resumes it on the task
   (`infom.train(..., resume=True)`): fine-tuning on the task's reward-labelled play-ft data,
   evaluating every `eval_interval` updates with `eval_episodes` episodes per seed.

The behaviour-cloning baseline is the pre-trained actor evaluated when fine-tuning starts
(fine-tuning update 0): a Gaussian BC policy trained on the same play data for the same number
of pre-training updates, with the same network and optimiser. InFOM's number is the success
rate after the last fine-tuning update. Every number is a mean +- standard deviation over seeds
of the per-seed success rate over `eval_episodes` episodes. The paper's published domain
average (ALGORITHM.md, 1M + 500k updates, 4 x 512 networks, 1,000 + 500 episodes) is printed for
reference; it was obtained at about 50x this budget.

Datasets are generated locally with OGBench's oracles if missing (`infom data generate ...`).
Run directories are kept under `--out` (each with its learning curve, metrics and checkpoint). The same
command continues them from their checkpoints; other settings (`--set`, `--seeds`, `--preset`) for the
same `--out` are refused, naming each field that differs.

Run: `python benchmarks/ogbench_tasks.py [--domain cube-single] [--tasks 1,2,3,4,5] [--seeds 3]
[--preset cube-single-cpu] [--set KEY=VALUE ...] [--out runs/ogbench_tasks]`.
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from _common import header, print_table

import infom
from infom.run._run import CONFIG_FILE, CURVE_PNG, DATA_FILE, EVAL_CSV, EVAL_JSON, FINETUNE_CSV


# ALGORITHM.md, "Published results": InFOM's success averaged over the domain's five tasks.
PAPER_INFOM = {
    "cube-single": "0.78 +- 0.21",
    "cube-double": "0.11 +- 0.07",
    "scene": "0.32 +- 0.02",
    "puzzle-4x4": "0.18 +- 0.10",
}


def _log(message: str) -> None:
    print(f"  {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="cube-single", choices=sorted(PAPER_INFOM))
    parser.add_argument("--tasks", default="1,2,3,4,5", help="comma-separated task numbers")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default=None, help="default: <domain>-cpu")
    parser.add_argument("--agent", default="infom", choices=sorted(infom.AGENTS), help="default: infom")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/ogbench_tasks")
    parser.add_argument("--dataset-dir", default=None)
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "disable")

    preset_name = args.preset or f"{args.domain}-cpu"
    preset = infom.get_preset(preset_name)
    agent = infom.AGENTS[args.agent]
    overrides = [*args.overrides, f"num_seeds={args.seeds}", f"seed={args.seed}"]
    config, run = infom.apply_overrides(agent.preset_config(preset), preset.run, overrides)
    tasks = [int(t) for t in args.tasks.split(",")]
    overrides = args.overrides or "none"
    header(
        f"OGBench {args.domain} tasks {tasks}, agent {agent.name}: preset {preset_name} "
        f"with overrides {overrides}; "
        f"{run.num_seeds} seeds, {run.pretrain_updates} pre-training + {run.finetune_updates} fine-tuning "
        f"updates, {run.pretrain_episodes} + {run.finetune_episodes} episodes, "
        f"{run.eval_episodes} evaluation episodes per seed every {run.eval_interval} updates"
    )
    out = Path(args.out)
    env = lambda task: f"{args.domain}-play-singletask-task{task}-v0"
    prefix = "" if agent.name == "infom" else f"{agent.name}-"  # InFOM's directories keep their names
    pretrain_dir = out / f"{prefix}{args.domain}-{preset_name}-pretrain"

    # A run directory that exists is resumed, refused if it was started with other settings.
    settings = dict(
        agent=agent, preset=preset_name, dataset_dir=args.dataset_dir, progress=args.progress, log=_log
    )
    started = time.perf_counter()
    infom.train(
        env(tasks[0]),
        pretrain_dir,
        config,
        run,
        resume=pretrain_dir.exists(),
        stop_after=run.pretrain_updates,
        **settings,
    )
    pretrain_seconds = time.perf_counter() - started
    print(f"pre-training: {pretrain_seconds / 60:.1f} min (dataset generation, if any, included)", flush=True)

    rows, curves = [], []
    for task in tasks:
        task_dir = out / f"{prefix}{env(task)}-{preset_name}"
        if not task_dir.exists():
            shutil.copytree(pretrain_dir, task_dir)
            record = json.loads((task_dir / CONFIG_FILE).read_text())
            record["env"] = env(task)
            (task_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2))
            # The task's fine-tuning rewards differ (OGBench relabels them per task): the copy
            # records its own data (DATA_FILE) when it resumes.
            for name in (EVAL_CSV, EVAL_JSON, CURVE_PNG, FINETUNE_CSV, DATA_FILE):
                (task_dir / name).unlink(missing_ok=True)
        started = time.perf_counter()
        result = infom.train(env(task), task_dir, config, run, resume=True, **settings)
        seconds = time.perf_counter() - started
        first, last = result.evaluations[0], result.evaluations[-1]
        assert first["finetune_step"] == 0 and last["finetune_step"] == run.finetune_updates
        rows.append(
            [
                f"task{task}",
                f"{first['success_mean']:.2f} +- {first['success_std']:.2f}",
                f"{last['success_mean']:.2f} +- {last['success_std']:.2f}",
                " ".join(f"{s:.2f}" for s in last["per_seed_success"]),
                f"{seconds / 60:.1f}",
            ]
        )
        curves.append((task, result.evaluations))
        print(
            f"task {task}: pre-trained {rows[-1][1]}, {agent.name} {rows[-1][2]} ({seconds / 60:.1f} min)",
            flush=True,
        )

    bc = [float(r[1].split()[0]) for r in rows]
    fin = [float(r[2].split()[0]) for r in rows]
    rows.append(["mean over tasks", f"{np.mean(bc):.2f}", f"{np.mean(fin):.2f}", "", ""])
    print()
    print_table(
        [
            "task",
            "pre-trained actor",
            f"{agent.name} (fine-tuned)",
            f"{agent.name} per seed",
            "fine-tune + eval min",
        ],
        rows,
    )
    print(f"\npaper (InFOM, {args.domain} average over its 5 tasks, full budget): {PAPER_INFOM[args.domain]}")
    print(f"pre-training (shared by the tasks): {pretrain_seconds / 60:.1f} min")
    print("\nlearning curves (success mean over seeds per fine-tuning update):")
    for task, evaluations in curves:
        curve = ", ".join(f"{e['finetune_step']}: {e['success_mean']:.2f}" for e in evaluations)
        print(f"  task{task}: {curve}")


if __name__ == "__main__":
    main()
