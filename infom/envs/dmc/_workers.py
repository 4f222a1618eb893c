"""Worker processes and progress bars shared by the ExORL generator, loader and evaluation."""

import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def process_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context for environment workers: `forkserver` (never `fork`).

    The parent may have initialised JAX, which must not be forked. Workers fork from a server
    process that has imported this package once, so a worker starts in milliseconds.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - non-POSIX
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["infom.envs.dmc._tasks", "infom.envs.dmc._format"])
    return context


def prepare_worker_process() -> None:
    """Settings for worker processes only: no rendering (MuJoCo looks for no display), and Ctrl-C
    handled by the parent alone (it stops the workers), so an interruption prints one line."""
    os.environ.setdefault("MUJOCO_GL", "disable")
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool, unit: str = "episode") -> Iterator[Any]:
    """A tqdm bar on stderr (`tqdm.auto` when enabled, so notebooks get their widget)."""
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    with tqdm(total=total, desc=description, unit=unit, disable=not enabled, dynamic_ncols=True) as bar:
        yield bar


def _call(job: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    function, args = job
    return function(*args)


def map_in_workers(
    function: Callable[..., Any],
    arguments: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    progress: bool,
    description: str,
) -> list[Any]:
    """`[function(*args) for args in arguments]`, in `workers` processes (in this one for `1`),
    in order, with a progress bar over the calls. `function` must be a module-level function."""
    results = []
    with progress_bar(len(arguments), description, progress) as bar:
        if workers == 1 or len(arguments) == 1:
            for args in arguments:
                results.append(function(*args))
                bar.update(1)
            return results
        jobs = [(function, args) for args in arguments]
        with process_context().Pool(min(workers, len(jobs)), initializer=prepare_worker_process) as pool:
            for result in pool.imap(_call, jobs, chunksize=1):
                results.append(result)
                bar.update(1)
            pool.close()
            pool.join()
    return results
