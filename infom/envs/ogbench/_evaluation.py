"""Batched, parallel rollouts in OGBench's single-task evaluation environments.

Environment workers run in subprocesses and step their environments in lockstep; the main
process calls the policy once per step on the stacked observations of every running episode,
so a JAX policy runs one batched forward pass per step instead of one per environment.
"""

import math
import multiprocessing.connection
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from jaxtyping import Bool, Float, Int

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
) -> None:
    """Serves `("step", actions, resets)` requests until `("close",)`.

    `actions` maps slot -> action (or `None`: ask the slot's `EnvPolicy`); after stepping,
    `resets` maps slot -> the seed of the episode to start in that slot. The reply maps each stepped
    slot to `(ob, reward, done, success)` and each reset slot to its first observation.
    """
    try:
        _prepare_worker_process()
        import gymnasium
        import ogbench.manipspace  # noqa: F401  (registers the environments)

        envs = [gymnasium.make(env_name, terminate_at_goal=True) for _ in range(num_slots)]
        policies: list[EnvPolicy | None] = [None] * num_slots
        last: list[tuple[np.ndarray, dict] | None] = [None] * num_slots
        while True:
            message = conn.recv()
            if message[0] == "close":
                break
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
                env = envs[slot]
                env.action_space.seed(episode_seed)  # OGBench's task reset takes two random actions
                ob, info = env.reset(seed=episode_seed)
                last[slot] = (ob, info)
                if env_policy_factory is not None:
                    policies[slot] = env_policy_factory()
                    policies[slot].reset(env, ob, info, episode_seed)
                started[slot] = ob
            conn.send(("ok", stepped, started))
        for env in envs:
            env.close()
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except BaseException:
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# Main process
# ---------------------------------------------------------------------------------------


class _Workers:
    """Environment worker processes; shut down on exit, also after an exception."""

    def __init__(self, env_name: str, slots: list[int], env_policy: Any):
        context = _process_context()
        self.conns: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        try:
            for num_slots in slots:
                parent, child = context.Pipe()
                process = context.Process(
                    target=_worker_main, args=(child, env_name, num_slots, env_policy), daemon=True
                )
                process.start()
                child.close()
                self.conns.append(parent)
                self.processes.append(process)
        except BaseException:
            self.close()
            raise

    def request(self, messages: list[tuple]) -> list[tuple[dict, dict]]:
        """Sends one message to each worker, then collects every reply (the workers run in parallel)."""
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
            replies.append((reply[1], reply[2]))
        return replies

    def close(self) -> None:
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

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    (result,) = _evaluate(
        env_name, [policy], [seed], num_episodes, num_workers, envs_per_worker, progress, env_policy
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
    return _evaluate(env_name, policies, seeds, num_episodes, num_workers, envs_per_worker, progress, None)


def _evaluate(
    env_name: str,
    policies: list[Callable[[np.ndarray], Any] | None],
    seeds: list[int],
    num_episodes: int,
    num_workers: int,
    envs_per_worker: int,
    progress: bool,
    env_policy: Callable[[], EnvPolicy] | None,
) -> list[EvalResult]:
    """Runs `num_episodes` episodes for each policy; episode `(k, i)` is reset with `seeds[k] + i`."""
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
    if num_workers < 1 or envs_per_worker < 1:
        raise ValueError(
            f"num_workers and envs_per_worker must be at least 1, got {num_workers} and {envs_per_worker}"
        )
    name = eval_env_name(env_name)
    domain, _, _ = _parse_name(env_name)
    action_dim = 5
    obs_dim = _DOMAINS[domain].obs_dim

    # Episode g = k * num_episodes + i is policy k's episode i.
    total = len(policies) * num_episodes
    num_workers = min(num_workers, total)
    per_worker = min(envs_per_worker, math.ceil(total / num_workers))
    free = [(worker, slot) for slot in range(per_worker) for worker in range(num_workers)]
    pending = list(range(total))
    running: dict[int, tuple[int, int]] = {}  # episode -> (worker, slot)
    observations: dict[int, np.ndarray] = {}
    successes = np.zeros(total, dtype=bool)
    returns = np.zeros(total, dtype=np.float64)
    lengths = np.zeros(total, dtype=np.int64)

    with (
        _Workers(name, [per_worker] * num_workers, env_policy) as workers,
        _progress_bar(total, name, progress) as bar,
    ):
        actions: list[dict[int, Any]] = [{} for _ in range(num_workers)]
        while pending or running:
            resets: list[dict[int, int]] = [{} for _ in range(num_workers)]
            while pending and free:
                worker, slot = free.pop(0)
                episode = pending.pop(0)
                policy_index, index = divmod(episode, num_episodes)
                resets[worker][slot] = _episode_seed(seeds[policy_index], index)
                running[episode] = (worker, slot)
            replies = workers.request([("step", a, r) for a, r in zip(actions, resets, strict=True)])
            for worker, (stepped, started) in enumerate(replies):
                slot_episode = {slot: ep for ep, (w, slot) in running.items() if w == worker}
                for slot, (ob, reward, done, success) in stepped.items():
                    episode = slot_episode[slot]
                    returns[episode] += reward
                    lengths[episode] += 1
                    observations[episode] = ob
                    if done:
                        successes[episode] = success
                        del running[episode], observations[episode]
                        free.append((worker, slot))
                        bar.update(1)
                for slot, ob in started.items():
                    observations[slot_episode[slot]] = ob
            actions = [{} for _ in range(num_workers)]
            if not running:  # every episode in flight ended at this step; start queued ones, if any
                continue
            for policy_index, policy in enumerate(policies):
                order = [e for e in sorted(running) if e // num_episodes == policy_index]
                if not order:
                    continue
                if policy is None:
                    batch_actions = [None] * len(order)
                else:
                    batch = np.stack([observations[episode] for episode in order]).astype(np.float32)
                    if batch.shape[1] != obs_dim:
                        raise RuntimeError(
                            f"{name} gave observations of width {batch.shape[1]}, not {obs_dim}"
                        )
                    batch_actions = _check_actions(policy(batch), len(order), action_dim)
                for episode, action in zip(order, batch_actions, strict=True):
                    worker, slot = running[episode]
                    actions[worker][slot] = action

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


def _check_actions(actions: Any, n: int, action_dim: int) -> np.ndarray:
    actions = np.asarray(actions, dtype=np.float64)
    if actions.shape != (n, action_dim):
        raise ValueError(
            f"policy returned actions of shape {actions.shape} for {n} observations, "
            f"expected {(n, action_dim)}"
        )
    if not np.isfinite(actions).all():
        raise ValueError("policy returned non-finite actions")
    return np.clip(actions, -1.0, 1.0)


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
