"""Batched, parallel rollouts in OGBench's single-task evaluation environments.

Environment workers run in subprocesses and step their environments in lockstep; the main
process calls the policy once per step on the stacked observations of every running episode,
so a JAX policy runs one batched forward pass per step instead of one per environment.
"""

import math
import multiprocessing.connection
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from jaxtyping import Bool, Float, Int

from .._workers import WorkerProcesses, borrow_pool, policies_actions, run_episodes, serve
from ._datasets import (
    _DOMAINS,
    _parse_name,
    _prepare_worker_process,
    _process_context,
    _progress_bar,
)


class EvalResult(NamedTuple):
    """The outcome of `evaluate_ogbench`, episode `i` at index `i`.

    **Fields:**

    - `success_rate`: the fraction of episodes with `info["success"]` at their last step.
    - `mean_return`: the mean undiscounted return (OGBench's task reward, `<= 0` per step).
    - `successes`: `bool[num_episodes]`.
    - `returns`: `float64[num_episodes]`.
    - `lengths`: `int64[num_episodes]`, steps taken (the time limit unless the goal was reached).
    """

    success_rate: float
    mean_return: float
    successes: Bool[np.ndarray, " num_episodes"]
    returns: Float[np.ndarray, " num_episodes"]
    lengths: Int[np.ndarray, " num_episodes"]


class EnvPolicy(Protocol):
    """A policy that runs inside an environment worker and may read the environment itself.

    Meant for scripted test policies (such as `CubeOraclePolicy`) that need privileged state;
    learned policies go through `evaluate_ogbench`'s batched `policy` argument instead.
    """

    def reset(self, env: Any, ob: np.ndarray, info: dict[str, Any], seed: int) -> None:
        """Starts an episode; `seed` is the episode's seed (for any randomness of the policy)."""
        ...

    def __call__(self, env: Any, ob: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The action for the current step."""
        ...


def eval_env_name(env_name: str) -> str:
    """The OGBench single-task evaluation environment for a task or dataset name.

    **Arguments:**

    - `env_name`: e.g. `cube-single-play-singletask-task1-v0` or `cube-single-singletask-task1-v0`.

    **Returns:**

    The evaluation environment's id, e.g. `cube-single-singletask-task1-v0`.
    """
    domain, _, task = _parse_name(env_name)
    if not task:
        raise ValueError(
            f"{env_name!r} names no single task; evaluation needs a '...-singletask[-taskN]-v0' name"
        )
    return f"{domain}{task}-v0"


# ---------------------------------------------------------------------------------------
# Worker process
# ---------------------------------------------------------------------------------------


def _episode_seed(seed: int, episode: int) -> int:
    return (seed + episode) % 2**32


def _worker_main(
    conn: multiprocessing.connection.Connection,
    env_name: str,
    num_slots: int,
    env_policy_factory: Callable[[], EnvPolicy] | None,
    max_episode_steps: int | None = None,
) -> None:
    """Serves `("step", actions, resets)` requests until `("close",)` ([`serve`][infom.envs._workers.serve]).

    `actions` maps slot -> action (or `None`: ask the slot's `EnvPolicy`); after stepping,
    `resets` maps slot -> the seed of the episode to start in that slot. The reply maps each stepped
    slot to `(ob, reward, done, success)` and each reset slot to its first observation.
    """

    def setup():
        _prepare_worker_process()
        import gymnasium
        import ogbench.manipspace  # noqa: F401  (registers the environments)

        # Made on a slot's first episode, so a pool sized for more episodes than it runs costs nothing.
        envs: list[Any] = [None] * num_slots
        policies: list[EnvPolicy | None] = [None] * num_slots
        last: list[tuple[np.ndarray, dict] | None] = [None] * num_slots

        def handle(message: tuple) -> tuple:
            _, actions, resets = message
            stepped = {}
            for slot, action in actions.items():
                env = envs[slot]
                if action is None:
                    ob, info = last[slot]
                    action = policies[slot](env, ob, info)
                action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
                ob, reward, terminated, truncated, info = env.step(action)
                last[slot] = (ob, info)
                stepped[slot] = (ob, float(reward), bool(terminated or truncated), bool(info["success"]))
            started = {}
            for slot, episode_seed in resets.items():
                np.random.seed(episode_seed)
                if envs[slot] is None:
                    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
                    envs[slot] = gymnasium.make(env_name, terminate_at_goal=True, **limit)
                env = envs[slot]
                env.action_space.seed(episode_seed)  # OGBench's task reset takes two random actions
                ob, info = env.reset(seed=episode_seed)
                last[slot] = (ob, info)
                if env_policy_factory is not None:
                    policies[slot] = env_policy_factory()
                    policies[slot].reset(env, ob, info, episode_seed)
                started[slot] = ob
            return stepped, started

        def cleanup() -> None:
            for env in envs:
                if env is not None:
                    env.close()

        return handle, cleanup

    serve(conn, setup)


# ---------------------------------------------------------------------------------------
# Main process
# ---------------------------------------------------------------------------------------


class _Workers(WorkerProcesses):
    """OGBench environment workers, `slots[i]` environments in worker `i`."""

    def __init__(self, env_name: str, slots: list[int], env_policy: Any, max_episode_steps: int | None):
        self.env_name, self.slots, self.max_episode_steps = env_name, list(slots), max_episode_steps
        super().__init__(
            _process_context(),
            _worker_main,
            [(env_name, num_slots, env_policy, max_episode_steps) for num_slots in slots],
        )


class EvaluationPool:
    """Environment workers kept open across evaluations, so that each environment is made once.

    `evaluate_ogbench(..., pool=pool)` and `evaluate_ogbench_policies(..., pool=pool)` run their
    episodes in the pool's environments instead of starting workers of their own, which costs a
    worker start and one `gymnasium.make` (about a second for a manipulation task) per environment
    on every call. Every episode starts from a seeded reset, so results are those of a fresh pool.
    [`train`][] keeps one pool for all its evaluations.

    **Arguments:**

    - `env_name`: a task or dataset name, e.g. `cube-single-play-singletask-task1-v0`.
    - `num_workers`: environment worker processes (one per core), started with multiprocessing's
      `forkserver` method (see `evaluate_ogbench`).
    - `envs_per_worker`: environments each worker steps per request; each is made on its first
      episode, so slots no evaluation fills cost nothing.
    - `max_episode_steps`: as in `evaluate_ogbench`; the pool's episodes all have this limit.

    Use it as a context manager, or call `close()`; the workers also stop when this process ends.

    !!! Example

        ```python
        with infom.EvaluationPool("cube-single-play-singletask-task1-v0") as pool:
            for policy in policies:
                print(infom.evaluate_ogbench(pool.env_name, policy, pool=pool).success_rate)
        ```
    """

    def __init__(
        self,
        env_name: str,
        *,
        num_workers: int = 2,
        envs_per_worker: int = 8,
        max_episode_steps: int | None = None,
    ):
        _check_pool_size(num_workers, envs_per_worker, max_episode_steps)
        self.env_name = env_name
        self._eval_name = eval_env_name(env_name)
        _parse_name(env_name)
        self._workers = _Workers(self._eval_name, [envs_per_worker] * num_workers, None, max_episode_steps)

    @property
    def max_episode_steps(self) -> int | None:
        """The episodes' time limit, or `None` for OGBench's own."""
        return self._workers.max_episode_steps

    @property
    def num_workers(self) -> int:
        """The number of worker processes."""
        return len(self._workers.slots)

    @property
    def envs_per_worker(self) -> int:
        """The number of environments each worker steps."""
        return self._workers.slots[0]

    def close(self) -> None:
        """Stops the workers (and closes their environments); the pool cannot be used afterwards."""
        self._workers.close()

    def __enter__(self) -> "EvaluationPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_pool_size(num_workers: int, envs_per_worker: int, max_episode_steps: int | None) -> None:
    for name, value in (
        ("num_workers", num_workers),
        ("envs_per_worker", envs_per_worker),
        ("max_episode_steps", 1 if max_episode_steps is None else max_episode_steps),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def evaluate_ogbench(
    env_name: str,
    policy: Callable[[np.ndarray], Any] | None,
    *,
    num_episodes: int = 50,
    seed: int = 0,
    num_workers: int = 2,
    envs_per_worker: int = 8,
    progress: bool = True,
    env_policy: Callable[[], EnvPolicy] | None = None,
    pool: EvaluationPool | None = None,
    max_episode_steps: int | None = None,
) -> EvalResult:
    """Rolls a policy out in OGBench's single-task evaluation environment.

    The environment is `gymnasium.make(eval_env_name(env_name), terminate_at_goal=True)` with
    OGBench's time limits (cube-single 200, cube-double 500, scene 750, puzzle-4x4 500 steps).
    An episode ends at the goal or at the time limit; it succeeds if `info["success"]` holds at
    its last step. Actions are clipped to `[-1, 1]` before stepping.

    Episode `i` is reset with seed `seed + i` (the environment, its action space, and NumPy's
    global RNG in the worker), so for a policy that acts on each row independently the result
    does not depend on `num_workers` or `envs_per_worker`.

    **Arguments:**

    - `env_name`: a task or dataset name, e.g. `cube-single-play-singletask-task1-v0`.
    - `policy`: maps a `float32[n, obs_dim]` array of raw (unnormalised) observations of the `n`
      running episodes to `[n, action_dim]` actions (NumPy or JAX). It is called once per step
      in this process. Normalisation and determinism are the caller's business.
    - `num_episodes`: episodes to run.
    - `seed`: the seed of episode 0.
    - `num_workers`: environment worker processes (one per core). They are started with
      multiprocessing's `forkserver` method, so a script that calls this function (or
      [`train`][], which does) must do so under `if __name__ == "__main__":`; notebooks
      and the `infom` command need nothing.
    - `envs_per_worker`: environments each worker steps per request; episodes queue for free ones.
    - `progress`: show a progress bar over finished episodes (on stderr).
    - `env_policy`: instead of `policy`, a picklable zero-argument factory of `EnvPolicy` objects
      that act inside the workers with access to the environment (for scripted test policies,
      e.g. `CubeOraclePolicy`). Pass `policy=None` with it.
    - `pool`: an open [`EvaluationPool`][] for this environment to run in instead of starting
      workers; then `num_workers`, `envs_per_worker` and `max_episode_steps` are the pool's. Not
      with `env_policy`.
    - `max_episode_steps`: end episodes after this many steps instead of at OGBench's time limit
      (`None`). Success rates under a shorter limit are not comparable with published ones; it is
      meant for quick checks and tests.

    **Returns:**

    An `EvalResult`.

    !!! Example

        ```python
        def policy(obs):  # float32[n, obs_dim] -> [n, action_dim]
            return jax.vmap(actor_mean)(normalise(obs))

        result = infom.evaluate_ogbench("cube-single-play-singletask-task1-v0", policy, num_episodes=50)
        print(result.success_rate)
        ```
    """
    if (policy is None) == (env_policy is None):
        raise ValueError("pass exactly one of `policy` and `env_policy`")
    if pool is not None and env_policy is not None:
        raise ValueError("`env_policy` runs in workers of its own; it cannot use `pool`")
    (result,) = _evaluate(
        env_name,
        [policy],
        [seed],
        num_episodes,
        num_workers,
        envs_per_worker,
        progress,
        env_policy,
        pool,
        max_episode_steps,
    )
    return result


def evaluate_ogbench_policies(
    env_name: str,
    policies: Sequence[Callable[[np.ndarray], Any]],
    *,
    seeds: Sequence[int],
    num_episodes: int = 50,
    num_workers: int = 2,
    envs_per_worker: int = 8,
    progress: bool = True,
    pool: EvaluationPool | None = None,
    max_episode_steps: int | None = None,
) -> list[EvalResult]:
    """Rolls several policies out in one pool of environment workers, each on its own episodes.

    Result `k` equals `evaluate_ogbench(env_name, policies[k], seed=seeds[k], num_episodes=...)`
    for policies that act on each row independently: policy `k`'s episode `i` is reset with seed
    `seeds[k] + i`, and each policy is called once per step on the observations of its own running
    episodes. One pool serves all of them, so the workers start once and their environments step
    every policy's episodes together (how [`train`][] evaluates all its seeds at once).

    **Arguments:**

    - `env_name`: a task or dataset name, e.g. `cube-single-play-singletask-task1-v0`.
    - `policies`: one or more policies, each as `evaluate_ogbench`'s `policy`.
    - `seeds`: the seed of each policy's episode 0 (as many as `policies`).
    - `num_episodes`, `num_workers`, `envs_per_worker`, `progress`: as in `evaluate_ogbench`;
      `num_episodes` is per policy, the workers and the progress bar are shared.
    - `pool`, `max_episode_steps`: as in `evaluate_ogbench`.

    **Returns:**

    A list of `EvalResult`, one per policy, in order.
    """
    policies, seeds = list(policies), [int(s) for s in seeds]
    if not policies:
        raise ValueError("`policies` is empty")
    if len(seeds) != len(policies):
        raise ValueError(f"`seeds` has {len(seeds)} entries for {len(policies)} policies")
    if any(p is None for p in policies):
        raise ValueError("`policies` holds None; scripted policies go through evaluate_ogbench(env_policy=)")
    return _evaluate(
        env_name,
        policies,
        seeds,
        num_episodes,
        num_workers,
        envs_per_worker,
        progress,
        None,
        pool,
        max_episode_steps,
    )


def _evaluate(
    env_name: str,
    policies: list[Callable[[np.ndarray], Any] | None],
    seeds: list[int],
    num_episodes: int,
    num_workers: int,
    envs_per_worker: int,
    progress: bool,
    env_policy: Callable[[], EnvPolicy] | None,
    pool: EvaluationPool | None = None,
    max_episode_steps: int | None = None,
) -> list[EvalResult]:
    """Runs `num_episodes` episodes for each policy; episode `(k, i)` is reset with `seeds[k] + i`."""
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
    name = eval_env_name(env_name)
    domain, _, _ = _parse_name(env_name)
    action_dim = 5
    obs_dim = _DOMAINS[domain].obs_dim

    # Episode g = k * num_episodes + i is policy k's episode i.
    total = len(policies) * num_episodes
    if pool is None:
        _check_pool_size(num_workers, envs_per_worker, max_episode_steps)
        num_workers = min(num_workers, total)
        per_worker = min(envs_per_worker, math.ceil(total / num_workers))
        workers_context: Any = _Workers(name, [per_worker] * num_workers, env_policy, max_episode_steps)
    else:
        workers_context = borrow_pool(
            pool,
            EvaluationPool,
            task_attr="_eval_name",
            task=name,
            limit_name="max_episode_steps",
            limit=max_episode_steps,
        )
        num_workers, per_worker = pool.num_workers, pool.envs_per_worker
    successes = np.zeros(total, dtype=bool)
    returns = np.zeros(total, dtype=np.float64)
    lengths = np.zeros(total, dtype=np.int64)

    def record(episode: int, reply: tuple) -> None:
        _, reward, done, success = reply
        returns[episode] += reward
        lengths[episode] += 1
        if done:
            successes[episode] = success

    # Policy k's actions (float64: what OGBench's environments step with); `None`: each slot's
    # `EnvPolicy` acts in the worker.
    choose_actions = policies_actions(
        policies, num_episodes, obs_dim=obs_dim, action_dim=action_dim, action_dtype=np.float64, env_name=name
    )

    # Episode g = k * num_episodes + i is policy k's episode i, reset with `seeds[k] + i`.
    episode_seeds = [_episode_seed(seeds[g // num_episodes], g % num_episodes) for g in range(total)]
    with workers_context as workers, _progress_bar(total, name, progress) as bar:
        run_episodes(
            workers, num_workers, per_worker, episode_seeds, choose_actions, record, lambda: bar.update(1)
        )

    results = []
    for k in range(len(policies)):
        own = slice(k * num_episodes, (k + 1) * num_episodes)
        results.append(
            EvalResult(
                success_rate=float(successes[own].mean()),
                mean_return=float(returns[own].mean()),
                successes=successes[own].copy(),
                returns=returns[own].copy(),
                lengths=lengths[own].copy(),
            )
        )
    return results


# ---------------------------------------------------------------------------------------
# A scripted policy for testing the harness
# ---------------------------------------------------------------------------------------


class CubeOraclePolicy:
    """OGBench's cube plan oracle, usable in the single-task evaluation environments.

    In task mode OGBench's environments do not report the oracle's target (the
    `privileged/target_block`, `..._pos` and `..._yaw` info keys); this policy reads them from
    the goal mocap bodies and aims at the first cube that is not yet at its goal, re-planning
    whenever the oracle finishes. It is an `EnvPolicy` for `evaluate_ogbench(..., env_policy=...)`
    and is meant for checking the evaluation harness (it solves cube-single tasks).

    **Arguments:**

    - `noise`: the plan oracle's action noise (0 for a clean demonstration).
    """

    def __init__(self, noise: float = 0.0):
        self.noise = noise
        self._oracle: Any = None
        self._seed = 0
        self._plans = 0

    def _target_info(self, env: Any, info: dict[str, Any]) -> dict[str, Any]:
        from ogbench.manipspace import lie

        unwrapped = env.unwrapped
        mocap_ids = unwrapped._cube_target_mocap_ids
        target = 0
        for block, mocap_id in enumerate(mocap_ids):
            position = unwrapped._data.joint(f"object_joint_{block}").qpos[:3]
            if np.linalg.norm(position - unwrapped._data.mocap_pos[mocap_id]) > 0.04:
                target = block
                break
        mocap_id = mocap_ids[target]
        info = dict(info)
        info["privileged/target_block"] = target
        info["privileged/target_block_pos"] = unwrapped._data.mocap_pos[mocap_id].copy()
        info["privileged/target_block_yaw"] = np.array(
            [lie.SO3(wxyz=unwrapped._data.mocap_quat[mocap_id]).compute_yaw_radians()]
        )
        return info

    def _plan(self, env: Any, ob: np.ndarray, info: dict[str, Any]) -> None:
        # The oracle draws its plan from NumPy's global RNG: seed it per plan for reproducibility.
        np.random.seed([self._seed, self._plans])
        self._plans += 1
        self._oracle.reset(ob, self._target_info(env, info))

    def reset(self, env: Any, ob: np.ndarray, info: dict[str, Any], seed: int) -> None:
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

        self._oracle = CubePlanOracle(env=env, noise=self.noise, noise_smoothing=0.5)
        self._seed = seed
        self._plans = 0
        self._plan(env, ob, info)

    def __call__(self, env: Any, ob: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if self._oracle.done:
            self._plan(env, ob, info)
        return np.asarray(self._oracle.select_action(ob, info))
