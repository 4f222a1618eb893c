"""One progress line for a whole run: data generation, pre-training, fine-tuning and
evaluations, with an overall estimate of the time left."""

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class Phase:
    """One phase of a job: `total` items of which `done` are done, and a prior guess of the
    seconds one item takes (replaced by the measured rate as soon as items complete here)."""

    name: str
    total: int
    unit: str
    prior_seconds: float
    done: int = 0
    measured_items: int = 0
    measured_seconds: float = 0.0

    def seconds_per_item(self) -> tuple[float, bool]:
        """`(estimate, measured?)`."""
        if self.measured_items:
            return self.measured_seconds / self.measured_items, True
        return self.prior_seconds, False


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class JobProgress:
    """A single progress bar over the phases of a job, weighted by their estimated time.

    `advance(name, n, seconds)` records `n` items of phase `name` that took `seconds` of wall
    time here (omit `seconds` for items recovered from disk, which cost nothing). The line
    shows the current phase, the time elapsed and the estimated time left over all phases;
    the estimate is marked `~` while some phase still runs on its prior guess. A phase's prior
    may be tied to another phase's measurement with `scale_prior(name, like, factor)` (e.g.
    a fine-tuning update costs about 4x a pre-training update).
    """

    def __init__(self, phases: list[Phase], *, enabled: bool = True):
        self.phases = {phase.name: phase for phase in phases}
        self.links: dict[str, tuple[str, float]] = {}
        self.started = time.perf_counter()
        self.note = ""
        self.current = phases[0].name if phases else ""
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=1000,
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc} |{bar}|{postfix}",
            )
            self._render()

    def scale_prior(self, name: str, like: str, factor: float) -> None:
        self.links[name] = (like, factor)

    def _estimate(self, phase: Phase) -> tuple[float, bool]:
        seconds, measured = phase.seconds_per_item()
        if not measured and phase.name in self.links:
            like, factor = self.links[phase.name]
            other, other_measured = self.phases[like].seconds_per_item()
            if other_measured:
                return other * factor, False
        return seconds, measured

    def remaining_seconds(self) -> tuple[float, bool]:
        """`(estimated seconds left, whether every phase's estimate is measured)`."""
        total, exact = 0.0, True
        for phase in self.phases.values():
            left = max(0, phase.total - phase.done)
            if left:
                seconds, measured = self._estimate(phase)
                total += left * seconds
                exact &= measured
        return total, exact

    def advance(self, name: str, n: int = 1, seconds: float | None = None) -> None:
        phase = self.phases[name]
        self.current = name
        phase.done = min(phase.total, phase.done + n)
        if seconds is not None:
            phase.measured_items += n
            phase.measured_seconds += seconds
        self._render()

    def set_done(self, name: str, done: int) -> None:
        """Marks `done` items of a phase as already done (e.g. restored from a checkpoint)."""
        self.phases[name].done = min(self.phases[name].total, done)
        self._render()

    def set_note(self, note: str, current: str | None = None) -> None:
        self.note = note
        if current is not None:
            self.current = current
        self._render()

    def describe(self) -> str:
        """One line: the phases' counts and the time left, e.g. for a message on interruption."""
        parts = [f"{p.name} {p.done}/{p.total} {p.unit}" for p in self.phases.values() if p.total]
        left, exact = self.remaining_seconds()
        return f"{', '.join(parts)}; about {_clock(left)} left" if not exact else f"{', '.join(parts)}"

    def _render(self) -> None:
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.started
        left, exact = self.remaining_seconds()
        work_done = 0.0
        work_total = 0.0
        for phase in self.phases.values():
            seconds, _ = self._estimate(phase)
            work_done += phase.done * seconds
            work_total += phase.total * seconds
        phase = self.phases.get(self.current)
        where = f"{phase.name} {phase.done}/{phase.total} {phase.unit}" if phase is not None else ""
        self.bar.set_description_str(where, refresh=False)
        postfix = f"elapsed {_clock(elapsed)}, left {'' if exact else '~'}{_clock(left)}"
        if self.note:
            postfix += f" | {self.note}"
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.n = int(1000 * work_done / work_total) if work_total > 0 else 0
        self.bar.refresh()

    def wrap_log(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """`log`, writing its line above the progress line instead of through it."""

        def write(message: str) -> None:
            if self.bar is None:
                log(message)
                return
            with self.bar.external_write_mode():
                log(message)

        return write

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
