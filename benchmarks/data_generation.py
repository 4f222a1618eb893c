"""How fast does `infom data generate` collect OGBench play data, with 1 and with 2 worker processes?

Times `infom.generate_dataset` end to end (worker start, collection with the plan oracles,
compressed atomic writes) on a few full-length (1001-step) episodes, and reports the median
over repeats of rows written per second, plus the speed-up of each worker count over one worker
measured in the same run. A warm-up run first starts the worker server process. With one
worker, `generate_dataset` collects in the calling process (no worker start); with more, each
run includes starting the worker pool and building one environment per worker (~1-2 s).

    python benchmarks/data_generation.py --domains cube-single --episodes 3 --repeats 3
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import timeit
from importlib.metadata import version


os.environ.setdefault("MUJOCO_GL", "disable")  # never render (no display here)

import infom  # noqa: E402


DOMAINS = ("cube-single", "cube-double", "scene", "puzzle-4x4")
EPISODE_LENGTH = 1001  # OGBench's rows per episode


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _machine() -> str:
    packages = ", ".join(f"{name} {version(name)}" for name in ("numpy", "mujoco", "gymnasium", "ogbench"))
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, {packages}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=["cube-single"], choices=DOMAINS)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--episodes", type=int, default=3, help="training episodes per run (plus 1 validation)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"machine: {_machine()}")
    print(f"command: python benchmarks/{os.path.basename(sys.argv[0])} {' '.join(sys.argv[1:])}")
    print(
        f"episodes per run: {args.episodes} + 1 validation, 1001 steps each; median of {args.repeats} runs\n"
    )
    header = f"| {'domain':<12} | workers | rows  | median s | steps/s | speed-up |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    with tempfile.TemporaryDirectory() as directory:
        for domain in args.domains:
            path = os.path.join(directory, f"{domain}-play-v0.npz")

            def run(num_workers: int, num_episodes: int, domain: str = domain, path: str = path) -> None:
                infom.generate_dataset(
                    domain,
                    path,
                    num_episodes=num_episodes,
                    num_val_episodes=1,
                    num_workers=num_workers,
                    overwrite=True,
                    progress=False,
                )

            run(max(args.workers), 1)  # warm-up: starts the worker server process
            rows = (args.episodes + 1) * EPISODE_LENGTH
            baseline = None
            for num_workers in args.workers:
                times = timeit.repeat(
                    lambda n=num_workers: run(n, args.episodes), number=1, repeat=args.repeats
                )
                median = statistics.median(times)
                rate = rows / median
                baseline = rate if baseline is None else baseline
                print(
                    f"| {domain:<12} | {num_workers:>7} | {rows:>5} | {median:>8.1f} | {rate:>7.0f} "
                    f"| {rate / baseline:>7.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
