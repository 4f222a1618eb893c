"""Batched, parallel rollouts of a policy in an ExORL task.

Environment workers run in subprocesses and step their environments in lockstep; the main process
calls the policy once per step on the stacked observations of every running episode, so a JAX
policy runs one batched forward pass per step instead of one per environment.
"""

import contextlib
import math
import multiprocessing.connection
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Float, Int

from .._workers import WorkerProcesses, borrow_pool, policies_actions, run_episodes, serve
from ._names import DOMAINS, split_task_name
from ._tasks import DMCEnv
from ._workers import prepare_worker_process, process_context, progress_bar


class DMCEvalResult(NamedTuple):
    """The outcome of [`evaluate_dmc`][], episode `i` at index `i`.

    **Fields:**

    - `mean_return`: the mean undiscounted return.
    - `returns`: `float64[episodes]`, each episode's undiscounted return.
    - `lengths`: `int64[episodes]`, steps taken (the time limit: ExORL's episodes never terminate).
    """

    mean_return: float
    returns: Float[np.ndarray, " episodes"]
    lengths: Int[np.ndarray, " episodes"]


def _episode_seed(seed: int, episode: int) -> int:
    return (seed + episode) % 2**32


def _worker_main(
    conn: multiprocessing.connection.Connection, task_name: str, num_slots: int, episode_length: int | None
) -> None:
    """Serves `("step", actions, resets)` requests until `("close",)` ([`serve`][infom.envs._workers.serve]).

    `actions` maps slot -> action; after stepping, `resets` maps slot -> the seed of the episode to
    start in that slot. The reply maps each stepped slot to `(observation, reward, done)` and each
    reset slot to its first observation.
    """

    def setup():
        prepare_worker_process()
        envs: list[DMCEnv | None] = [None] * num_slots  # made on a slot's first episode

        def handle(message: tuple) -> tuple:
            _, actions, resets = message
            stepped = {slot: tuple(envs[slot].step(action)) for slot, action in actions.items()}
            started = {}
            for slot, episode_seed in resets.items():
                if envs[slot] is None:
                    envs[slot] = DMCEnv(task_name, seed=episode_seed, episode_length=episode_length)
                started[slot] = envs[slot].reset(seed=episode_seed)
            return stepped, started

        def cleanup() -> None:
            for env in envs:
                if env is not None:
                    env.close()

        return handle, cleanup

    serve(conn, setup)


class _Workers(WorkerProcesses):
    """ExORL environment workers, `slots` environments in each."""

    def __init__(self, task_name: str, num_workers: int, slots: int, episode_length: int | None):
        self.task_name, self.num_workers, self.slots = task_name, num_workers, slots
        self.episode_length = episode_length
        super().__init__(process_context(), _worker_main, [(task_name, slots, episode_length)] * num_workers)


def _check_sizes(**values: int | None) -> None:
    for name, value in values.items():
        if value is None and name == "episode_length":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class DMCEvaluationPool:
    """Environment workers kept open across evaluations, so that each environment is made once.

    `evaluate_dmc(..., pool=pool)` runs its episodes in the pool's environments instead of starting
    workers of its own. Every episode starts from a seeded reset, so results are those of a fresh
    pool.

    **Arguments:**

    - `task_name`: the ExORL task, e.g. `"walker_run"`.
    - `workers`: environment worker processes (one per core), started with multiprocessing's
      `forkserver` method (see [`evaluate_dmc`][]).
    - `envs_per_worker`: environments each worker steps per request; each is made on its first
      episode.
    - `episode_length`: as in `evaluate_dmc`; the pool's episodes all have this length.

    Use it as a context manager, or call `close()`.

    !!! Example

        ```python
        with DMCEvaluationPool("walker_run") as pool:
            for policy in policies:
                print(evaluate_dmc("walker_run", policy, pool=pool).mean_return)
        ```
    """

    def __init__(
        self, task_name: str, *, workers: int = 2, envs_per_worker: int = 8, episode_length: int | None = None
    ):
        split_task_name(task_name)
        _check_sizes(workers=workers, envs_per_worker=envs_per_worker, episode_length=episode_length)
        self.task_name = task_name
        self._workers = _Workers(task_name, workers, envs_per_worker, episode_length)

    @property
    def episode_length(self) -> int | None:
        """The episodes' length, or `None` for ExORL's own."""
        return self._workers.episode_length

    def close(self) -> None:
        """Stops the workers; the pool cannot be used afterwards."""
        self._workers.close()

    def __enter__(self) -> "DMCEvaluationPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def _owned(workers: _Workers) -> Iterator[_Workers]:
    try:
        yield workers
    finally:
        workers.close()


def evaluate_dmc(
    task_name: str,
    policy: Callable[[np.ndarray], Any],
    *,
    episodes: int = 10,
    seed: int = 0,
    workers: int = 2,
    envs_per_worker: int = 8,
    progress: bool = True,
    pool: DMCEvaluationPool | None = None,
    episode_length: int | None = None,
) -> DMCEvalResult:
    """Rolls a deterministic batched policy out in an ExORL task and returns its undiscounted returns.

    Episode `i` is reset with seed `seed + i` (`DMCEnv.reset(seed=...)`), so for a policy that acts
    on each row independently the result does not depend on `workers` or `envs_per_worker`, and
    equals a sequential rollout in `make_env(task_name, seed=seed + i)`. Every episode runs to the
    time limit (1000 steps, jaco 250). Actions are clipped to `[-1, 1]`.

    **Arguments:**

    - `task_name`: the ExORL task, e.g. `"walker_run"`.
    - `policy`: maps a `float32[n, obs_dim]` array of raw (unnormalised) observations of the `n`
      running episodes to `[n, action_dim]` actions (NumPy or JAX). It is called once per step in
      this process. Normalisation and determinism are the caller's business.
    - `episodes`: episodes to run.
    - `seed`: the seed of episode 0.
    - `workers`: environment worker processes (one per core), started with multiprocessing's
      `forkserver` method, so a script that calls this function must do so under
      `if __name__ == "__main__":`.
    - `envs_per_worker`: environments each worker steps per request; episodes queue for free ones.
    - `progress`: show a progress bar over finished episodes (on stderr).
    - `pool`: an open [`DMCEvaluationPool`][] for this task to run in instead of starting workers;
      `workers`, `envs_per_worker` and `episode_length` are then the pool's.
    - `episode_length`: steps per episode instead of ExORL's (`None`); returns under another length
      are not comparable with published ones (for tests and quick checks).

    **Returns:** a [`DMCEvalResult`][].

    !!! Example

        ```python
        result = evaluate_dmc("walker_run", lambda obs: np.asarray(jax.vmap(actor)(obs)), episodes=10)
        print(result.mean_return)
        ```
    """
    (result,) = evaluate_dmc_policies(
        task_name,
        [policy],
        seeds=[seed],
        episodes=episodes,
        workers=workers,
        envs_per_worker=envs_per_worker,
        progress=progress,
        pool=pool,
        episode_length=episode_length,
    )
    return result


def evaluate_dmc_policies(
    task_name: str,
    policies: Sequence[Callable[[np.ndarray], Any]],
    *,
    seeds: Sequence[int],
    episodes: int = 10,
    workers: int = 2,
    envs_per_worker: int = 8,
    progress: bool = True,
    pool: DMCEvaluationPool | None = None,
    episode_length: int | None = None,
) -> list[DMCEvalResult]:
    """Rolls several policies out in one pool of environment workers, each on its own episodes.

    Result `k` equals `evaluate_dmc(task_name, policies[k], seed=seeds[k], episodes=episodes)` for
    policies that act on each row independently: policy `k`'s episode `i` is reset with seed
    `seeds[k] + i`, and each policy is called once per step on the observations of its own running
    episodes. The environments step every policy's episodes together, so the slots stay full (how
    `infom.train` evaluates all its seeds at once).

    **Arguments:** `policies` (one or more, each as [`evaluate_dmc`][]'s `policy`) and `seeds` (the
    seed of each policy's episode 0, as many as `policies`); `episodes` is per policy; the rest as
    in [`evaluate_dmc`][], the workers and the progress bar shared.

    **Returns:** a list of [`DMCEvalResult`][], one per policy, in order.
    """
    policies, seeds = list(policies), [int(s) for s in seeds]
    if not policies:
        raise ValueError("`policies` is empty")
    if len(seeds) != len(policies):
        raise ValueError(f"`seeds` has {len(seeds)} entries for {len(policies)} policies")
    domain, _ = split_task_name(task_name)
    _check_sizes(episodes=episodes)
    total = len(policies) * episodes
    if pool is None:
        _check_sizes(workers=workers, envs_per_worker=envs_per_worker, episode_length=episode_length)
        workers = min(workers, total)
        per_worker = min(envs_per_worker, math.ceil(total / workers))
        workers_context: Any = _owned(_Workers(task_name, workers, per_worker, episode_length))
    else:
        workers_context = borrow_pool(
            pool,
            DMCEvaluationPool,
            task_attr="task_name",
            task=task_name,
            limit_name="episode_length",
            limit=episode_length,
        )
        workers, per_worker = pool._workers.num_workers, pool._workers.slots
    obs_dim, action_dim = DOMAINS[domain].obs_dim, DOMAINS[domain].action_dim
    # Episode g = k * episodes + i is policy k's episode i, reset with `seeds[k] + i`.
    returns = np.zeros(total, dtype=np.float64)
    lengths = np.zeros(total, dtype=np.int64)

    def record(episode: int, reply: tuple) -> None:
        returns[episode] += reply[1]
        lengths[episode] += 1

    choose_actions = policies_actions(
        policies,
        episodes,
        obs_dim=obs_dim,
        action_dim=action_dim,
        action_dtype=np.float32,
        env_name=task_name,
    )
    episode_seeds = [_episode_seed(seeds[g // episodes], g % episodes) for g in range(total)]
    with workers_context as pool_workers, progress_bar(total, task_name, progress) as bar:
        run_episodes(
            pool_workers, workers, per_worker, episode_seeds, choose_actions, record, lambda: bar.update(1)
        )
    return [
        DMCEvalResult(
            mean_return=float(returns[k * episodes : (k + 1) * episodes].mean()),
            returns=returns[k * episodes : (k + 1) * episodes].copy(),
            lengths=lengths[k * episodes : (k + 1) * episodes].copy(),
        )
        for k in range(len(policies))
    ]
