"""How fast does `infom data generate DOMAIN` collect ExORL-format exploration data, per domain?

Times `infom.envs.dmc.generate_exorl` end to end (worker start, stepping dm_control with the
exploration scheme, compressed atomic writes of ExORL's per-episode files) on a few full-length
episodes (1000 steps; jaco 250) into a fresh directory per run, and reports the median over repeats
of environment steps per second with 1 and with 2 worker processes, and the speed-up of each worker
count over one worker measured in the same run.

    python benchmarks/exorl_data.py --domains walker cheetah quadruped jaco --episodes 4 --repeats 3
"""

import argparse
import os
import statistics
import tempfile
import time

from _common import header, print_table


os.environ.setdefault("MUJOCO_GL", "disable")  # never render (no display here)

from infom.envs.dmc import DOMAINS, EXPLORERS, generate_exorl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    parser.add_argument("--explorer", default="ou_noise", choices=sorted(EXPLORERS))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--episodes", type=int, default=4, help="episodes per run (jaco: 4x as many)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header(
        f"environment steps per second of {args.explorer} exploration data in ExORL's format; median of "
        f"{args.repeats} runs, each into a fresh directory"
    )
    rows = []
    for domain in args.domains:
        episodes = args.episodes * (4 if domain == "jaco" else 1)  # jaco's episodes are 250 steps
        baseline = None
        for workers in args.workers:
            rates, seconds = [], []
            for repeat in range(args.repeats + 1):  # the first run warms up (imports, model compilation)
                with tempfile.TemporaryDirectory() as root:
                    started = time.perf_counter()
                    summary = generate_exorl(
                        root,
                        domain,
                        episodes=episodes,
                        seed=repeat,
                        workers=workers,
                        progress=False,
                        explorer=EXPLORERS[args.explorer](),
                    )
                    elapsed = time.perf_counter() - started
                if repeat:
                    rates.append(summary.num_steps / elapsed)
                    seconds.append(elapsed)
            rate = statistics.median(rates)
            baseline = rate if baseline is None else baseline
            rows.append(
                [
                    domain,
                    str(workers),
                    str(summary.num_steps),
                    f"{statistics.median(seconds):.1f}",
                    f"{rate:.0f}",
                    f"{rate / baseline:.2f}x",
                ]
            )
            print("  " + " | ".join(rows[-1]), flush=True)
    print_table(["domain", "workers", "steps per run", "median s", "steps/s", "speed-up over 1 worker"], rows)


if __name__ == "__main__":
    main()
