"""The `infom` command.

It imports only light modules at start (no JAX), so `infom --help` is instant; each handler
imports what it needs.

Each command group adds its subparsers in one `_add_*_parser(subparsers)` function and sets a
`handler` that receives the parsed arguments and returns the exit status.

```
infom data generate DOMAIN [--kind play|play-ft|both] [--episodes N] [--val-episodes M]
                           [--dataset-dir DIR] [--seed S] [--workers W] [--overwrite]
                           [--explorer ou_noise|uniform]   (ExORL domains)
infom data check PATH [PATH ...]
infom train --env TASK [--agent infom|bc|iql|rebrac] [--preset NAME] [--seeds N] [--seed S]
            [--set KEY=VALUE ...] [--run-dir DIR]
infom train --resume RUN_DIR
infom eval RUN_DIR [--episodes N]
infom presets
infom demo [--quick] [--seeds N] [--seed S]
```
"""

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from .._errors import DatasetError
from ..envs.dmc._names import DEFAULT_EXORL_DIR, DOMAINS as EXORL_DOMAINS, TASK_NAMES as EXORL_TASK_NAMES
from ..envs.ogbench._names import (
    DEFAULT_DATASET_DIR,
    EPISODE_LENGTH,
    OGBENCH_DOMAINS,
    REFERENCE_EPISODES,
    default_val_episodes,
)
from ._loggers import LOGGERS


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `infom` command with `argv` (default: `sys.argv[1:]`) and returns the exit status."""
    # The command never renders: keep MuJoCo from probing for a display.
    os.environ.setdefault("MUJOCO_GL", "disable")
    parser = _build_parser()
    args = parser.parse_args(argv)
    received: list[str] = []
    previous = _on_sigterm(received)
    try:
        return args.handler(args)
    except (DatasetError, FileExistsError, FileNotFoundError, ValueError, FloatingPointError) as error:
        print(f"infom: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        # RunInterrupted / GenerationInterrupted say what was kept and how to continue.
        what = received[0] if received else "interrupted"
        print(f"infom: {what}{': ' + str(error) if str(error) else ''}", file=sys.stderr)
        return 143 if received else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(received: list[str]):
    """Turns SIGTERM into a `KeyboardInterrupt`, so that a terminated run stops as cleanly as
    one stopped with Ctrl-C: workers are shut down, the last block is checkpointed, and one
    line says what was kept. Returns the previous handler (None off the main thread)."""

    def handler(signum, frame):
        received.append("stopped by SIGTERM")
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infom", description="Intention-Conditioned Flow Occupancy Models: data, training, evaluation."
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    _add_data_parser(subparsers)
    _add_train_parser(subparsers)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _mesh_shape(text: str) -> tuple[int, int]:
    """`SEEDSxDATA`, e.g. `2x4`: two positive integers."""
    parts = text.lower().split("x")
    try:
        seeds, data = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be SEEDSxDATA, e.g. 1x4, got {text!r}") from None
    if seeds < 1 or data < 1:
        raise argparse.ArgumentTypeError(f"must be two positive integers SEEDSxDATA, got {text!r}")
    return seeds, data


# ---------------------------------------------------------------------------------------
# infom data ...
# ---------------------------------------------------------------------------------------


def _add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate and check OGBench and ExORL datasets (offline)")
    commands = data.add_subparsers(
        title="data commands", dest="data_command", required=True, metavar="COMMAND"
    )

    generate = commands.add_parser(
        "generate",
        help="collect OGBench play datasets with OGBench's scripted oracles, or ExORL exploration data",
        description=(
            "OGBench domains: collect 'play' (pre-training) and 'play-ft' (fine-tuning) datasets with the "
            "plan oracles shipped in the ogbench package, following OGBench's collection protocol, and write "
            "DIR/{domain}-play[-ft]-v0.npz and its -val.npz file in OGBench's format. ExORL domains: "
            "collect reward-free exploration episodes with a local exploration scheme (--explorer; not "
            "ExORL's RND data, which cannot be downloaded here) into DIR/{domain}/{explorer}/buffer in "
            "ExORL's format; an existing buffer is extended, never overwritten."
        ),
    )
    generate.add_argument(
        "domain", choices=(*OGBENCH_DOMAINS, *EXORL_DOMAINS), help="the OGBench or ExORL domain"
    )
    generate.add_argument(
        "--kind",
        choices=("play", "play-ft", "both"),
        default="both",
        help="which dataset(s) to write (default: both)",
    )
    generate.add_argument(
        "--episodes",
        type=_positive_int,
        default=None,
        metavar="N",
        help=(
            "training episodes per dataset (default: the published sizes, "
            f"play {REFERENCE_EPISODES['play']}, play-ft {REFERENCE_EPISODES['play-ft']}); "
            "with --kind both, play-ft gets half of N. ExORL: the episodes the buffer should hold "
            "(default: the DOMAIN-cpu preset's pre-training + fine-tuning episodes)"
        ),
    )
    generate.add_argument(
        "--val-episodes",
        type=_positive_int,
        default=None,
        metavar="M",
        help="validation episodes per dataset (default: 10%% of the training episodes)",
    )
    generate.add_argument(
        "--dataset-dir",
        default=None,
        metavar="DIR",
        help=f"where to write the files (default: {DEFAULT_DATASET_DIR}; ExORL: {DEFAULT_EXORL_DIR})",
    )
    generate.add_argument("--seed", type=int, default=0, metavar="S", help="base seed (default: 0)")
    generate.add_argument(
        "--workers",
        type=_positive_int,
        metavar="W",
        default=min(2, os.cpu_count() or 1),
        help="worker processes, one per core (default: min(2, cores))",
    )
    generate.add_argument(
        "--episode-length",
        type=_positive_int,
        default=None,
        metavar="L",
        help=f"rows per episode (default: OGBench's {EPISODE_LENGTH}; ExORL: steps per episode, the "
        "domain's 1000 or jaco's 250; change only for quick tests)",
    )
    generate.add_argument(
        "--explorer",
        choices=("ou_noise", "uniform"),
        default="ou_noise",
        help="ExORL only: the exploration scheme, and the buffer's algorithm directory (default: ou_noise)",
    )
    generate.add_argument("--overwrite", action="store_true", help="replace existing files")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(handler=_data_generate)

    check = commands.add_parser(
        "check", help="validate OGBench dataset files", description="Validate OGBench .npz dataset files."
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="an .npz file")
    check.add_argument(
        "--episode-length",
        type=_positive_int,
        default=None,
        metavar="L",
        help="required rows per episode (default: any, the same for every episode)",
    )
    check.set_defaults(handler=_data_check)


def _episode_counts(args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    kinds = ("play", "play-ft") if args.kind == "both" else (args.kind,)
    counts = {}
    for kind in kinds:
        if args.episodes is None:
            episodes = REFERENCE_EPISODES[kind]
        elif kind == "play-ft" and args.kind == "both":
            episodes = max(1, args.episodes // 2)
        else:
            episodes = args.episodes
        val_episodes = default_val_episodes(episodes) if args.val_episodes is None else args.val_episodes
        counts[kind] = (episodes, val_episodes)
    return counts


def _exorl_generate(args: argparse.Namespace) -> int:
    from ..envs.dmc._generate import EXPLORERS, generate_exorl
    from ._presets import get_preset

    run = get_preset(f"{args.domain}-cpu").run
    episodes = args.episodes or run.pretrain_episodes + run.finetune_episodes
    root = args.dataset_dir or DEFAULT_EXORL_DIR
    print(
        f"{args.domain}: {episodes} {args.explorer} exploration episodes, seed {args.seed}, "
        f"{args.workers} worker(s) -> {os.path.join(root, args.domain, args.explorer, 'buffer')}",
        flush=True,
    )
    summary = generate_exorl(
        root,
        args.domain,
        episodes=episodes,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        explorer=EXPLORERS[args.explorer](),
        episode_length=args.episode_length,
    )
    print(
        f"  {summary.num_collected} episodes collected ({summary.num_kept} kept), {summary.num_steps} steps "
        f"in {summary.seconds:.1f} s ({summary.steps_per_second:.0f} steps/s)"
    )
    return 0


def _data_generate(args: argparse.Namespace) -> int:
    from ..envs.ogbench._datasets import dataset_paths, generate_dataset, validate_ogbench_file

    if args.domain in EXORL_DOMAINS:
        return _exorl_generate(args)
    if args.episode_length is None:
        args.episode_length = EPISODE_LENGTH

    play, _, play_ft, _ = dataset_paths(f"{args.domain}-play-v0", args.dataset_dir)
    paths = {"play": play, "play-ft": play_ft}
    counts = _episode_counts(args)
    if not args.overwrite:  # refuse before spending any time collecting
        for kind in counts:
            for path in (paths[kind], paths[kind].with_name(paths[kind].stem + "-val.npz")):
                if path.exists():
                    raise FileExistsError(f"{path} already exists; pass --overwrite to replace it.")
    for kind, (episodes, val_episodes) in counts.items():
        print(
            f"{args.domain} {kind}: {episodes} + {val_episodes} validation episodes "
            f"x {args.episode_length} steps, seed {args.seed}, {args.workers} worker(s) -> {paths[kind]}",
            flush=True,
        )
        summary = generate_dataset(
            args.domain,
            paths[kind],
            num_episodes=episodes,
            num_val_episodes=val_episodes,
            kind=kind,
            seed=args.seed,
            num_workers=args.workers,
            episode_length=args.episode_length,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        resumed = (
            f", {summary.num_resumed_episodes} episodes recovered from an interrupted run"
            if summary.num_resumed_episodes
            else f", {summary.num_rows / summary.seconds:.0f} steps/s"
        )
        print(
            f"  {summary.num_rows} rows in {summary.seconds:.1f} s "
            f"({summary.num_retries} health-check retries{resumed})"
        )
        for path in (summary.train_path, summary.val_path):
            _print_summary(validate_ogbench_file(path, episode_length=args.episode_length))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from ..envs.ogbench._datasets import validate_ogbench_file

    status = 0
    for path in args.paths:
        try:
            _print_summary(validate_ogbench_file(path, episode_length=args.episode_length))
        except DatasetError as error:
            print(f"FAILED {error}", file=sys.stderr)
            status = 1
    return status


def _print_summary(summary) -> None:
    size = summary.path.stat().st_size / 2**20
    print(
        f"OK {summary.path} ({size:.1f} MiB): {summary.num_episodes} episodes "
        f"x {summary.episode_length} steps = {summary.num_rows} rows, "
        f"obs {summary.obs_dim}, action {summary.action_dim}, "
        f"domain {summary.domain or 'unknown'}, keys {', '.join(summary.keys)}"
    )


# ---------------------------------------------------------------------------------------
# infom train / eval / presets
# ---------------------------------------------------------------------------------------


AGENT_NAMES = ("infom", "bc", "iql", "rebrac", "crl_is", "fb_iql", "hilp_iql", "dino_rebrac", "mbpo_rebrac")
"""The names of `infom.AGENTS`, here so that the parser is built without importing JAX (a test
checks that the two agree)."""


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="pre-train, fine-tune and evaluate InFOM on an OGBench or ExORL task",
        description=(
            "Pre-train on the reward-free 'play' data, fine-tune on the reward-labelled 'play-ft' data and "
            "evaluate every eval_interval fine-tuning updates, writing a run directory (config, metrics CSV, "
            "evaluations CSV/JSON, learning curve PNG, checkpoints). Missing datasets are generated first "
            "(OGBench's oracles; for ExORL tasks, local exploration data) unless --no-generate is given. "
            "ExORL tasks pre-train on the first episodes of the domain's exploration buffer and fine-tune "
            "on the following ones, relabelled with the task's reward."
        ),
    )
    train.add_argument(
        "--env",
        metavar="TASK",
        help="OGBench task, e.g. cube-single-play-singletask-task1-v0, or ExORL task, one of "
        + ", ".join(EXORL_TASK_NAMES),
    )
    train.add_argument(
        "--agent",
        choices=AGENT_NAMES,
        default="infom",
        help="the method: InFOM or one of its baselines (default: infom); see README",
    )
    train.add_argument(
        "--preset",
        metavar="NAME",
        help="settings preset (default: DOMAIN-cpu, a 2-core CPU budget; DOMAIN alone is the paper's "
        "setting; see `infom presets`)",
    )
    train.add_argument(
        "--seeds",
        type=_positive_int,
        metavar="N",
        help="seeds trained together in one program (see --set seed_batch=K)",
    )
    train.add_argument("--seed", type=int, metavar="S", help="first seed")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set alpha=30 --set network.hidden_dims=256,256 "
        "--set finetune_updates=10000 (repeatable)",
    )
    train.add_argument(
        "--run-dir", metavar="DIR", help="run directory (default: runs/TASK/PRESET-sSEED-TIME)"
    )
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint"
    )
    train.add_argument(
        "--dataset-dir",
        metavar="DIR",
        help=f"dataset directory (default: OGBench's {DEFAULT_DATASET_DIR}; ExORL's {DEFAULT_EXORL_DIR})",
    )
    train.add_argument(
        "--no-generate",
        action="store_true",
        help="stop with the command to run instead of generating missing data",
    )
    train.add_argument(
        "--mesh",
        type=_mesh_shape,
        metavar="SEEDSxDATA",
        help="train on SEEDS x DATA devices: the seeds split over SEEDS of them, each batch over DATA "
        "(default: one device; e.g. --mesh 1x4 on 4 GPUs; also with --resume)",
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="one of several processes (jax.distributed; JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and "
        "JAX_PROCESS_ID, or a cluster's own variables): process 0 writes the run directory and evaluates; "
        "the run directory and datasets must be on a filesystem every process sees",
    )
    train.add_argument(
        "--logger",
        action="append",
        default=[],
        choices=LOGGERS,
        help="also send metrics and evaluations to TensorBoard (RUN_DIR/tensorboard, extra "
        "infom[tensorboard]) or Weights & Biases (offline under RUN_DIR/wandb unless WANDB_MODE is set, "
        "extra infom[wandb]); repeatable; the CSV/JSON files are written either way (also with --resume)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser(
        "eval",
        help="re-evaluate the saved policies of a run",
        description="Re-evaluate a run's saved policies.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument(
        "--episodes", type=_positive_int, metavar="N", help="episodes per seed (default: the run's)"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=_eval)

    presets = subparsers.add_parser("presets", help="list the settings presets")
    presets.set_defaults(handler=_presets)

    demo = subparsers.add_parser(
        "demo",
        help="the fully-jitted gymnax Pendulum demo: InFOM vs behaviour cloning",
        description="Collect multi-user Pendulum-v1 data in JAX, pre-train, fine-tune on the swing-up reward "
        "and compare with behaviour cloning, all seeds vmapped in one compiled program per phase.",
    )
    demo.add_argument("--quick", action="store_true", help="a short pipeline check (too short to train well)")
    demo.add_argument(
        "--seeds", type=_positive_int, metavar="N", help="number of seeds (default: the setting's)"
    )
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="first seed (default: 0)")
    demo.set_defaults(handler=_demo)


def _log(message: str) -> None:
    print(f"infom: {message}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    import time

    from ._presets import apply_overrides, default_preset_name, get_preset

    if args.distributed:
        if not args.resume and not args.run_dir:
            raise ValueError("--distributed needs --run-dir (every process must write to the same directory)")
        from ..training._sharding import initialize_distributed

        initialize_distributed()
        import jax

        if jax.process_index() != 0:
            args.quiet = True
    from ._run import train

    if args.resume:
        if args.env or args.preset or args.overrides or args.seeds or args.seed is not None:
            raise ValueError(
                "--resume takes the run's own settings; drop --env/--preset/--set/--seeds/--seed"
            )
        if args.agent != "infom":
            raise ValueError("--resume takes the run's own agent; drop --agent")
        result = train(
            None,
            args.resume,
            resume=True,
            dataset_dir=args.dataset_dir,
            generate_missing=not args.no_generate,
            progress=not args.quiet,
            log=_log,
            mesh_shape=args.mesh,
            loggers=tuple(args.logger),
        )
    else:
        if not args.env:
            raise ValueError("--env is required (or --resume RUN_DIR)")
        from ..agents import AGENTS

        agent = AGENTS[args.agent]
        name = args.preset or default_preset_name(args.env)
        preset = get_preset(name)
        overrides = list(args.overrides)
        if args.seeds is not None:
            overrides.append(f"num_seeds={args.seeds}")
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        config, run = apply_overrides(agent.preset_config(preset), preset.run, overrides)
        run_dir = args.run_dir or os.path.join(
            "runs", args.env, f"{agent.name}-{name}-s{run.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        _log(f"{agent.name} on {args.env} with preset {name} ({preset.description}); run directory {run_dir}")
        result = train(
            args.env,
            run_dir,
            config,
            run,
            agent=agent,
            preset=name,
            dataset_dir=args.dataset_dir,
            generate_missing=not args.no_generate,
            progress=not args.quiet,
            log=_log,
            mesh_shape=args.mesh,
            loggers=tuple(args.logger),
        )
    print(f"run directory: {result.run_dir}")
    for row in result.evaluations:
        success = (
            ""
            if row["success_mean"] != row["success_mean"]  # NaN: a task without success (ExORL)
            else f"success {row['success_mean']:.3f} +- {row['success_std']:.3f}, "
        )
        print(
            f"fine-tuning update {row['finetune_step']:>7}: {success}return {row['return_mean']:.1f} "
            f"+- {row['return_std']:.1f} over {row['num_seeds']} seed(s)"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ._run import evaluate_run

    for row in evaluate_run(args.run_dir, num_episodes=args.episodes, progress=not args.quiet):
        success = "" if row["success_rate"] != row["success_rate"] else f"success {row['success_rate']:.3f}, "
        print(f"seed {row['seed']}: {success}return {row['mean_return']:.1f} over {row['episodes']} episodes")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import PENDULUM_DEMO, PENDULUM_DEMO_QUICK, format_demo_result, run_pendulum_demo

    config = PENDULUM_DEMO_QUICK if args.quick else PENDULUM_DEMO
    _log(
        f"Pendulum-v1 demo: {args.seeds or config.num_seeds} seeds, {config.pretrain_updates} pre-training + "
        f"{config.finetune_updates} fine-tuning updates"
    )
    result = run_pendulum_demo(config=config, seed=args.seed, num_seeds=args.seeds, log=_log)
    print(format_demo_result(result))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from ._presets import PRESETS

    for name, preset in sorted(PRESETS.items()):
        print(f"{name:>18}: {preset.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
