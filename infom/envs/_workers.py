"""Environment worker processes that answer requests over pipes: the evaluation pools of OGBench and
ExORL share them. The worker side is [`serve`][infom.envs._workers.serve], the parent side
[`WorkerProcesses`][infom.envs._workers.WorkerProcesses]."""

import contextlib
import multiprocessing.connection
import multiprocessing.context
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def serve(
    conn: multiprocessing.connection.Connection,
    setup: Callable[[], tuple[Callable[[tuple], tuple], Callable[[], None]]],
) -> None:
    """A worker's loop: `handle, cleanup = setup()`, then for every message until `("close",)` it
    replies `("ok", *handle(message))`; `cleanup()` after the last. A failure (in `setup` too) is
    sent to the parent as `("error", traceback)`; a closed pipe or Ctrl-C ends the worker quietly."""
    try:
        handle, cleanup = setup()
        while True:
            message = conn.recv()
            if message[0] == "close":
                break
            conn.send(("ok", *handle(message)))
        cleanup()
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


class WorkerProcesses:
    """Worker processes `target(conn, *args)` (one per entry of `worker_args`), each serving requests
    with [`serve`][infom.envs._workers.serve]; shut down on `close()` or on leaving a `with` block, also
    after an exception."""

    closed = False

    def __init__(
        self,
        context: multiprocessing.context.BaseContext,
        target: Callable[..., None],
        worker_args: list[tuple],
    ):
        self.conns: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        try:
            for args in worker_args:
                parent, child = context.Pipe()
                process = context.Process(target=target, args=(child, *args), daemon=True)
                process.start()
                child.close()
                self.conns.append(parent)
                self.processes.append(process)
        except BaseException:
            self.close()
            raise

    def request(self, messages: list[tuple]) -> list[tuple]:
        """Sends one message to each worker, then collects every reply without its `"ok"` (the
        workers run in parallel); a worker's failure or death raises `RuntimeError` naming it."""
        for conn, message in zip(self.conns, messages, strict=True):
            conn.send(message)
        replies = []
        for index, conn in enumerate(self.conns):
            try:
                reply = conn.recv()
            except EOFError:
                code = self.processes[index].exitcode
                raise RuntimeError(f"evaluation worker {index} died (exit code {code})") from None
            if reply[0] == "error":
                raise RuntimeError(f"evaluation worker {index} failed:\n{reply[1]}")
            replies.append(tuple(reply[1:]))
        return replies

    def close(self) -> None:
        self.closed = True
        for conn in self.conns:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for conn in self.conns:
            conn.close()

    def __enter__(self) -> "WorkerProcesses":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def borrow_pool(
    pool: Any, pool_type: type, *, task_attr: str, task: str, limit_name: str, limit: int | None
) -> contextlib.AbstractContextManager[WorkerProcesses]:
    """Checks an evaluation's `pool` argument and lends its workers to one evaluation.

    `pool` must be a `pool_type` whose attribute `task_attr` equals `task`, still open, and, where the
    caller gave an episode-length limit (`limit`, the argument `limit_name`), with that limit (the pool's
    attribute of the same name). The returned context yields the pool's `_workers`; an evaluation that
    fails inside it closes the pool, whose workers may hold replies no one read."""
    if not isinstance(pool, pool_type):
        article = "an" if pool_type.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"`pool` must be {article} {pool_type.__name__}, got {type(pool).__name__}")
    if getattr(pool, task_attr) != task:
        raise ValueError(f"`pool` steps {getattr(pool, task_attr)}, not {task}")
    workers = pool._workers
    if workers.closed:
        raise ValueError("`pool` is closed")
    pool_limit = getattr(pool, limit_name)
    if limit not in (None, pool_limit):
        raise ValueError(f"{limit_name}={limit} differs from the pool's ({pool_limit})")
    return _borrowed(workers)


@contextlib.contextmanager
def _borrowed(workers: WorkerProcesses) -> Iterator[WorkerProcesses]:
    try:
        yield workers
    except BaseException:
        workers.close()
        raise


def run_episodes(
    workers: WorkerProcesses,
    num_workers: int,
    envs_per_worker: int,
    seeds: list[int],
    choose_actions: Callable[[list[int], dict[int, Any]], list[Any]],
    record: Callable[[int, tuple], None],
    on_done: Callable[[], None],
) -> None:
    """Runs episode `e` for every `e < len(seeds)` (reset with `seeds[e]`) in the workers'
    `num_workers x envs_per_worker` environment slots, all running episodes stepped in lockstep;
    queued episodes take the slots of finished ones.

    The workers answer `("step", actions, resets)` with `(stepped, started)`: per slot, a step's
    `(observation, reward, done, ...)` and a new episode's first observation. Every step's reply is
    passed to `record(episode, reply)`, every finished episode to `on_done()`, and once per step
    `choose_actions(episodes, observations)` gives the next actions of the running `episodes`
    (ascending) from their latest `observations`."""
    free = [(worker, slot) for slot in range(envs_per_worker) for worker in range(num_workers)]
    pending = list(range(len(seeds)))
    running: dict[int, tuple[int, int]] = {}  # episode -> (worker, slot)
    observations: dict[int, Any] = {}
    actions: list[dict[int, Any]] = [{} for _ in range(num_workers)]
    while pending or running:
        resets: list[dict[int, int]] = [{} for _ in range(num_workers)]
        while pending and free:
            worker, slot = free.pop(0)
            episode = pending.pop(0)
            resets[worker][slot] = seeds[episode]
            running[episode] = (worker, slot)
        replies = workers.request([("step", a, r) for a, r in zip(actions, resets, strict=True)])
        for worker, (stepped, started) in enumerate(replies):
            slot_episode = {slot: ep for ep, (w, slot) in running.items() if w == worker}
            for slot, reply in stepped.items():
                episode = slot_episode[slot]
                record(episode, reply)
                observations[episode] = reply[0]
                if reply[2]:  # done
                    del running[episode], observations[episode]
                    free.append((worker, slot))
                    on_done()
            for slot, observation in started.items():
                observations[slot_episode[slot]] = observation
        actions = [{} for _ in range(num_workers)]
        if not running:  # every episode in flight ended at this step; start queued ones, if any
            continue
        order = sorted(running)
        for episode, action in zip(order, choose_actions(order, observations), strict=True):
            worker, slot = running[episode]
            actions[worker][slot] = action


def policies_actions(
    policies: Sequence[Callable[[np.ndarray], Any] | None],
    episodes_per_policy: int,
    *,
    obs_dim: int,
    action_dim: int,
    action_dtype: type,
    env_name: str,
) -> Callable[[list[int], dict[int, Any]], list[Any]]:
    """The `choose_actions` of [`run_episodes`][infom.envs._workers.run_episodes] for several
    policies, episode `g` being policy `g // episodes_per_policy`'s: each policy is called once per
    step on the stacked `float32` observations of its own running episodes, and its actions are
    checked (shape `[n, action_dim]`, finite) and clipped to `[-1, 1]`. A `None` policy gives `None`
    actions (its episodes' actions are chosen in the workers)."""

    def choose_actions(order: list[int], observations: dict[int, Any]) -> list[Any]:
        chosen: dict[int, Any] = {}
        for index, policy in enumerate(policies):
            own = [e for e in order if e // episodes_per_policy == index]
            if not own:
                continue
            if policy is None:
                chosen.update(dict.fromkeys(own))
                continue
            batch = np.stack([observations[e] for e in own]).astype(np.float32)
            if batch.shape[1] != obs_dim:
                raise RuntimeError(f"{env_name} gave observations of width {batch.shape[1]}, not {obs_dim}")
            actions = np.asarray(policy(batch), dtype=action_dtype)
            if actions.shape != (len(own), action_dim):
                raise ValueError(
                    f"policy returned actions of shape {actions.shape} for {len(own)} observations, "
                    f"expected {(len(own), action_dim)}"
                )
            if not np.isfinite(actions).all():
                raise ValueError("policy returned non-finite actions")
            chosen.update(zip(own, np.clip(actions, -1.0, 1.0), strict=True))
        return [chosen[e] for e in order]

    return choose_actions
