"""Helpers shared by the benchmark scripts: the machine, the command, and median timings."""

import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import jax


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line: CPU model and count, OS, Python, jax and its device, and the load average."""
    device = jax.devices()[0]
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, jax {jax.__version__} on {device.platform} "
        f"({device.device_kind}); load average {os.getloadavg()[0]:.2f}"
    )


def command() -> str:
    return f"python benchmarks/{os.path.basename(sys.argv[0])} {' '.join(sys.argv[1:])}".rstrip()


def header(description: str) -> None:
    print(f"command: {command()}")
    print(f"machine: {machine()}")
    print(description, flush=True)


def median_seconds(fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> float:
    """Median wall time of `jax.block_until_ready(fn())` over `repeat` calls, after `warmup`
    calls (which compile); measured with `timeit.repeat(number=1)`."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = timeit.repeat(lambda: jax.block_until_ready(fn()), number=1, repeat=repeat)
    return statistics.median(times)


def interleaved_medians(
    fns: dict[str, Callable[[], Any]], *, repeat: int, warmup: int = 1
) -> dict[str, float]:
    """Like [`median_seconds`][] for several functions, timed in turn (round robin), so that a
    change in machine load affects them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name] += timeit.repeat(lambda fn=fn: jax.block_until_ready(fn()), number=1, repeat=1)
    return {name: statistics.median(values) for name, values in times.items()}


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Markdown table; floats are printed as given (format them before)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |", flush=True)
