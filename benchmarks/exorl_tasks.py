"""What return do InFOM and its baselines reach on ExORL tasks at a CPU budget?

For each task (default: one per domain, the issue's `walker_run`, `cheetah_run`, `quadruped_walk`,
`jaco_reach_top_left`) and each agent (default `infom`, `bc`, `iql`), one run of
`infom.train(...)` with the domain's preset (default `<domain>-cpu`: 300k + 30k locally generated
OU-noise exploration transitions, 40k pre-training + 20k fine-tuning updates, 3 x 256 networks,
evaluation every 5k updates over 10 episodes per seed) and `--seeds` seeds in one program. The
agents share the domain's data (generated once, on the first run that needs it). Every number is a
mean +- standard deviation over seeds of the per-seed mean undiscounted return; the fine-tuning
update 0 column is the pre-trained actor.

**These data are not ExORL's** (its RND exploration data, 5M + 500k transitions in the paper): the
returns are not comparable with the paper's. Runs are resumable: the same command continues them;
other settings for the same `--out` are refused, naming each field that differs.

    python benchmarks/exorl_tasks.py [--tasks walker_run,...] [--agents infom,bc,iql] [--seeds 3]
        [--set KEY=VALUE ...] [--out runs/exorl_tasks] [--dataset-dir runs/exorl_data]
"""

import argparse
import os
import time
from pathlib import Path

from _common import header, print_table


os.environ.setdefault("MUJOCO_GL", "disable")

import infom  # noqa: E402
from infom.run._presets import apply_overrides  # noqa: E402


DEFAULT_TASKS = ("walker_run", "cheetah_run", "quadruped_walk", "jaco_reach_top_left")


def _log(message: str) -> None:
    print(f"  {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    parser.add_argument("--agents", default="infom,bc,iql")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default=None, help="default: <domain>-cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/exorl_tasks")
    parser.add_argument("--dataset-dir", default="runs/exorl_data")
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    args = parser.parse_args()
    tasks, agents = args.tasks.split(","), args.agents.split(",")
    header(
        f"ExORL tasks {tasks}, agents {agents}, {args.seeds} seeds, preset {args.preset or '<domain>-cpu'} "
        f"with overrides {args.overrides or 'none'}; local exploration data (not ExORL's RND data)"
    )
    rows = []
    for task in tasks:
        preset_name = args.preset or infom.run._presets.default_preset_name(task)
        preset = infom.get_preset(preset_name)
        for name in agents:
            agent = infom.AGENTS[name]
            overrides = [*args.overrides, f"num_seeds={args.seeds}"]
            config, run = apply_overrides(agent.preset_config(preset), preset.run, overrides)
            run_dir = Path(args.out) / f"{name}-{task}-{preset_name}"
            started = time.perf_counter()
            # A run directory that exists is resumed, refused if it was started with other settings.
            result = infom.train(
                task,
                run_dir,
                config,
                run,
                agent=agent,
                preset=preset_name,
                resume=run_dir.exists(),
                dataset_dir=args.dataset_dir,
                progress=args.progress,
                log=_log,
            )
            minutes = (time.perf_counter() - started) / 60
            first, last = result.evaluations[0], result.evaluations[-1]
            rows.append(
                [
                    task,
                    name,
                    f"{first['return_mean']:.1f} +- {first['return_std']:.1f}",
                    f"{last['return_mean']:.1f} +- {last['return_std']:.1f}",
                    " ".join(f"{r:.1f}" for r in last["per_seed_return"]),
                    str(last["finetune_step"]),
                    f"{minutes:.1f}",
                ]
            )
            curve = ", ".join(f"{e['finetune_step']}: {e['return_mean']:.1f}" for e in result.evaluations)
            print(f"{task} {name}: {curve} ({minutes:.1f} min)", flush=True)
    print()
    print_table(
        [
            "task",
            "agent",
            "return at fine-tuning update 0",
            "return at the last evaluation",
            "per seed",
            "last fine-tuning update",
            "minutes (this call)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
