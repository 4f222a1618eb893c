"""The 16 ExORL tasks as environments with flat float32 observations, and reward relabelling.

ExORL (Yarats et al., 2022) builds its environments with URLB's `dmc.make`: the DeepMind Control
suite task where the suite has it, else URLB's `custom_dmc_tasks`, with a flat observation
(`flat_observation=True`: the task's observation dict concatenated in its key order), actions
rescaled from `[-1, 1]` to the actuators' range (`action_scale.Wrapper`), float32 observations
and actions, and the task's own time limit. `make_env` builds the same environments.

dm_control is imported only when an environment is made. Before it is first imported,
`MUJOCO_GL` is set to `"disable"` unless it is already set: nothing here renders, and MuJoCo
then does not look for a display. Set `MUJOCO_GL` yourself to render in the same process.
"""

import functools
import os
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Float, Float32, Float64

from ._names import (  # noqa: E402  (the plain constants, importable without JAX)
    _SUITE_TASKS,
    DOMAINS,
    split_task_name,
)


class DMCStep(NamedTuple):
    """What `DMCEnv.step` returns.

    **Fields:**

    - `observation`: `float32[obs_dim]`, the observation after the step.
    - `reward`: the task's reward for the step, computed from the physics after it.
    - `done`: True when the episode has reached its time limit (ExORL's episodes never
      terminate otherwise).
    """

    observation: Float32[np.ndarray, " obs_dim"]
    reward: float
    done: bool


class DMCEnv:
    """An ExORL task: a dm_control environment behind a small reset/step interface.

    Made by [`make_env`][]. Observations are the task's observation dict flattened in its key order
    and cast to float32 (as ExORL stores them); actions are float32 in `[-1, 1]` (clipped), rescaled
    affinely to the actuators' range as dm_control's `action_scale.Wrapper` does (the identity for
    walker and cheetah). The episode ends after `episode_length` steps; `step` after the end raises.

    **Attributes:**

    - `name`, `domain`, `task`: e.g. `"walker_flip"`, `"walker"`, `"flip"`.
    - `spec`: the domain's [`DomainSpec`][].
    - `episode_length`: steps per episode.
    - `environment`: the underlying dm_control environment (`control.Environment`, or
      `composer.Environment` for jaco); its own time limit is switched off.
    - `physics`, `dm_task`: its physics and its dm_control task (whose `get_reward(physics)` gives
      the reward).
    """

    def __init__(self, name: str, *, seed: int, episode_length: int | None = None):
        domain, task = split_task_name(name)
        self.name, self.domain, self.task = name, domain, task
        self.spec = DOMAINS[domain]
        if episode_length is None:
            episode_length = self.spec.episode_length
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
            raise ValueError(f"episode_length must be a positive integer, got {episode_length!r}")
        self.episode_length = episode_length
        os.environ.setdefault("MUJOCO_GL", "disable")
        self._random = np.random.RandomState(seed)
        if domain == "jaco":
            from ._jaco import make_jaco_environment

            self.environment = make_jaco_environment(task, self._random)
        elif name in _SUITE_TASKS:
            from dm_control import suite

            self.environment = suite.load(
                domain,
                task,
                task_kwargs={"random": self._random, "time_limit": float("inf")},
                environment_kwargs={"flat_observation": True},
            )
        else:
            from ._custom import make_custom_environment

            self.environment = make_custom_environment(domain, task, self._random)
        self.dm_task = self.environment.task
        spec = self.environment.action_spec()
        self._action_low = np.asarray(spec.minimum, np.float64)
        self._action_scale = (np.asarray(spec.maximum, np.float64) - self._action_low) / 2.0
        self._steps = 0
        self._done = True

    @property
    def physics(self) -> Any:
        """The environment's current physics (composer may rebuild it on reset: do not keep it)."""
        return self.environment.physics

    def reset(self, seed: int | None = None) -> Float32[np.ndarray, " obs_dim"]:
        """Starts an episode and returns its first observation.

        With `seed`, the task's random state is reseeded first, so the episode is the one a fresh
        `make_env(name, seed=seed)` starts with; without it, the random state carries on (as
        dm_control's does from one episode to the next).
        """
        if seed is not None:
            self._random.seed(seed)
        time_step = self.environment.reset()
        self._steps = 0
        self._done = False
        return self._flatten(time_step.observation)

    def step(self, action: Float[np.ndarray, " action_dim"]) -> DMCStep:
        """Applies one action (float32 in `[-1, 1]`, clipped) and returns the `DMCStep` after it."""
        if self._done:
            raise RuntimeError(f"{self.name}: step() called before reset() or after the episode ended")
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        if action.shape != (self.spec.action_dim,):
            raise ValueError(
                f"{self.name}: action has shape {action.shape}, expected ({self.spec.action_dim},)"
            )
        # dm_control's action_scale.Wrapper(env, minimum=-1, maximum=1), operation for operation.
        scaled = self._action_low + self._action_scale * (action - np.array(-1.0))
        time_step = self.environment.step(scaled.astype(np.float64, copy=False))
        self._steps += 1
        self._done = self._steps >= self.episode_length
        return DMCStep(self._flatten(time_step.observation), float(time_step.reward), self._done)

    def physics_state(self) -> Float64[np.ndarray, " physics_dim"]:
        """The current `physics.get_state()` (what ExORL stores under `physics`)."""
        return np.asarray(self.physics.get_state(), dtype=np.float64).copy()

    def close(self) -> None:
        """Releases the environment."""
        self.environment.close()

    def _flatten(self, observation: Any) -> Float32[np.ndarray, " obs_dim"]:
        if "observations" in observation and len(observation) == 1:  # control.Environment, flat
            flat = observation["observations"]
        else:  # composer: ExORL's FlattenJacoObservationWrapper, in the dict's order
            flat = np.concatenate([np.asarray(value).ravel() for value in observation.values()])
        return np.asarray(flat, dtype=np.float32)


def make_env(name: str, *, seed: int, episode_length: int | None = None) -> DMCEnv:
    """Makes an ExORL task's environment.

    The six tasks the DeepMind Control suite has (walker stand / walk / run, cheetah run,
    quadruped walk / run) are the suite's own (`suite.load(domain, task, task_kwargs={"random":
    seed})`); walker flip, cheetah run_backward / walk / walk_backward and quadruped stand / jump
    are reimplemented from URLB's `custom_dmc_tasks` on the suite's physics and task classes, and
    the jaco reaching tasks on dm_control's manipulation library (see each task class's docstring
    for its reward and constants).

    **Arguments:**

    - `name`: one of `TASK_NAMES`, e.g. `"walker_flip"` (see `EXORL_TASKS`).
    - `seed`: the seed of the task's random state (initial states), as `random=seed` in
      dm_control and ExORL.
    - `episode_length`: steps per episode (default: ExORL's, `DOMAINS[domain].episode_length`);
      shorter only for tests and quick checks.

    **Returns:** a [`DMCEnv`][].

    **Raises:** `ValueError` naming the valid task names if `name` is unknown.

    !!! Example

        ```python
        env = make_env("cheetah_run_backward", seed=0)
        obs = env.reset()  # float32[17]
        obs, reward, done = env.step(np.zeros(6, np.float32))
        ```
    """
    return DMCEnv(name, seed=seed, episode_length=episode_length)


@functools.cache
def _reward_env(name: str) -> DMCEnv:
    """One environment per task and process, used only to evaluate rewards at given states."""
    return DMCEnv(name, seed=0)


def task_reward(name: str, physics_states: Float[np.ndarray, "n physics_dim"]) -> Float64[np.ndarray, " n"]:
    """Recomputes a task's reward at saved physics states, as ExORL relabels its data.

    For each state: `physics.set_state(state)`, `physics.forward()`, then the task's
    `get_reward(physics)`. Every ExORL reward depends on positions and velocities only, so this
    equals the reward the environment returned on the step that ended in that state.

    **Arguments:**

    - `name`: the task, e.g. `"walker_flip"`.
    - `physics_states`: `[n, physics_dim]`, rows of `DMCEnv.physics_state()` (ExORL's `physics`).

    **Returns:** `float64[n]`, the rewards.

    **Raises:** `ValueError` naming the task or the argument for an unknown task or a wrong width.
    """
    domain, _ = split_task_name(name)
    states = np.asarray(physics_states, dtype=np.float64)
    width = DOMAINS[domain].physics_dim
    if states.shape[1] != width:
        raise ValueError(
            f"physics_states has width {states.shape[1]}, but {domain} physics states have {width}"
        )
    env = _reward_env(name)
    physics, task = env.physics, env.dm_task
    rewards = np.empty(len(states), dtype=np.float64)
    for row, state in enumerate(states):
        physics.set_state(state)
        physics.forward()
        rewards[row] = task.get_reward(physics)
    return rewards
