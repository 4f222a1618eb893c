"""The `infom` command.

Each command group adds its subparsers in one `_add_*_parser(subparsers)` function and sets a
`handler` that receives the parsed arguments and returns the exit status.

```
infom data generate DOMAIN [--kind play|play-ft|both] [--episodes N] [--val-episodes M]
                           [--dataset-dir DIR] [--seed S] [--workers W] [--overwrite]
infom data check PATH [PATH ...]
```
"""

import argparse
import os
import sys
from collections.abc import Sequence

from ._data import DatasetError
from ._ogbench import (
    DEFAULT_DATASET_DIR,
    EPISODE_LENGTH,
    OGBENCH_DOMAINS,
    REFERENCE_EPISODES,
    DatasetSummary,
    dataset_paths,
    default_val_episodes,
    generate_dataset,
    validate_ogbench_file,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `infom` command with `argv` (default: `sys.argv[1:]`) and returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (DatasetError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"infom: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("infom: interrupted", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infom", description="Intention-Conditioned Flow Occupancy Models: data, training, evaluation."
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    _add_data_parser(subparsers)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# ---------------------------------------------------------------------------------------
# infom data ...
# ---------------------------------------------------------------------------------------


def _add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate and check OGBench datasets (offline)")
    commands = data.add_subparsers(
        title="data commands", dest="data_command", required=True, metavar="COMMAND"
    )

    generate = commands.add_parser(
        "generate",
        help="collect OGBench play datasets with OGBench's scripted oracles",
        description=(
            "Collect OGBench 'play' (pre-training) and 'play-ft' (fine-tuning) datasets with the plan "
            "oracles shipped in the ogbench package, following OGBench's collection protocol, and write "
            "DIR/{domain}-play[-ft]-v0.npz and its -val.npz file in OGBench's format."
        ),
    )
    generate.add_argument("domain", choices=OGBENCH_DOMAINS, help="the OGBench domain")
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
            "with --kind both, play-ft gets half of N"
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
        help=f"where to write the files (default: {DEFAULT_DATASET_DIR})",
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
        default=EPISODE_LENGTH,
        metavar="L",
        help=f"rows per episode (default: OGBench's {EPISODE_LENGTH}; change only for quick tests)",
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


def _data_generate(args: argparse.Namespace) -> int:
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
        print(
            f"  {summary.num_rows} rows in {summary.seconds:.1f} s "
            f"({summary.num_rows / summary.seconds:.0f} steps/s, {summary.num_retries} health-check retries)"
        )
        for path in (summary.train_path, summary.val_path):
            _print_summary(validate_ogbench_file(path, episode_length=args.episode_length))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.paths:
        try:
            _print_summary(validate_ogbench_file(path, episode_length=args.episode_length))
        except DatasetError as error:
            print(f"FAILED {error}", file=sys.stderr)
            status = 1
    return status


def _print_summary(summary: DatasetSummary) -> None:
    size = summary.path.stat().st_size / 2**20
    print(
        f"OK {summary.path} ({size:.1f} MiB): {summary.num_episodes} episodes "
        f"x {summary.episode_length} steps = {summary.num_rows} rows, "
        f"obs {summary.obs_dim}, action {summary.action_dim}, "
        f"domain {summary.domain or 'unknown'}, keys {', '.join(summary.keys)}"
    )
