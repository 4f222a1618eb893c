"""A jitted adapter to gymnax's continuous-control environments: evaluation of a policy over
many episodes and collection of a multi-intention dataset, each a `vmap` over episodes of
a `lax.scan` over steps.

Policies act in `[-1, 1]` (InFOM's convention); the adapter clips to that range and rescales
to the environment's action bounds. `gymnax` is imported on first use, so the core library
does not depend on it.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ...data._dataset import Dataset


Policy = Callable[[Float[Array, " obs_dim"]], Float[Array, " action_dim"]]


@functools.cache
def _make_env(env_name: str) -> tuple[Any, Any]:
    """`gymnax.make(env_name)`, cached so that jitted functions see the same (static) env."""
    import gymnax
    from gymnax.environments import spaces

    if env_name not in gymnax.registered_envs:
        raise ValueError(f"unknown gymnax environment {env_name!r}; registered: {gymnax.registered_envs}")
    env, params = gymnax.make(env_name)
    if not isinstance(env.action_space(params), spaces.Box):
        raise ValueError(
            f"{env_name!r} has a discrete action space; only continuous (Box) actions are supported"
        )
    return env, params


def _action_bounds(
    env: Any, env_params: Any
) -> tuple[Float[Array, " action_dim"], Float[Array, " action_dim"]]:
    space = env.action_space(env_params)
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    return low, high


def _to_env_action(
    action: Float[Array, " policy_dim"], low: Float[Array, " action_dim"], high: Float[Array, " action_dim"]
) -> Float[Array, " action_dim"]:
    """Maps `[-1, 1]` affinely onto `[low, high]` after clipping to `[-1, 1]`."""
    # `policy_dim` is a separate axis name so that a mismatch raises the message below.
    if action.shape != low.shape:
        raise ValueError(
            f"the policy returned an action of shape {action.shape}, the environment expects {low.shape}"
        )
    action = jnp.clip(action, -1.0, 1.0)
    return low + 0.5 * (action + 1.0) * (high - low)


def _resolve(env_name: str, env_params: Any, max_steps: int | None) -> tuple[Any, Any, int]:
    env, default_params = _make_env(env_name)
    params = default_params if env_params is None else env_params
    steps = int(params.max_steps_in_episode) if max_steps is None else max_steps
    if steps < 1:
        raise ValueError(f"the number of steps must be >= 1, got {steps}")
    return env, params, steps


# --------------------------------------------------------------------------- evaluation


@eqx.filter_jit
def _evaluate(env, env_params, policy, key, num_episodes, max_steps):
    low, high = _action_bounds(env, env_params)

    def episode(episode_key):
        reset_key, steps_key = jr.split(episode_key)
        obs, state = env.reset(reset_key, env_params)

        def step(carry, step_key):
            obs, state, alive, total, length = carry
            action = _to_env_action(policy(obs), low, high)
            obs, state, reward, terminated, truncated, _ = env.step(step_key, state, action, env_params)
            total = total + jnp.where(alive, jnp.asarray(reward, jnp.float32), 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(terminated | truncated)
            return (obs, state, alive, total, length), None

        init = (obs, state, jnp.array(True), jnp.array(0.0, jnp.float32), jnp.array(0, jnp.int32))
        (_, _, _, total, length), _ = jax.lax.scan(step, init, jr.split(steps_key, max_steps))
        return total, length

    return jax.vmap(episode)(jr.split(key, num_episodes))


def evaluate_gymnax(
    env_name: str,
    policy: Policy,
    *,
    key: PRNGKeyArray,
    num_episodes: int,
    max_steps: int | None = None,
    env_params: Any = None,
) -> tuple[Float[Array, " num_episodes"], Int[Array, " num_episodes"]]:
    """Undiscounted returns of a deterministic policy on a gymnax environment, in one jitted call.

    Every episode starts from `env.reset` and runs `max_steps` steps of `env.step` in a
    `lax.scan` (episodes are `vmap`ped); reward is counted up to and including the first step
    at which the environment reports `terminated` or `truncated` (gymnax resets automatically,
    the steps after that are ignored).

    Keys: `jr.split(key, num_episodes)` gives one key per episode, which is split into a
    reset key and a key that is split into `max_steps` step keys.

    **Arguments:**

    - `env_name`: a gymnax environment with continuous actions (e.g. `"Pendulum-v1"`).
    - `policy`: a pure JAX function of one raw observation `[obs_dim]` returning an action
        `[action_dim]` in `[-1, 1]` (clipped to it, then rescaled to the environment's bounds).
        Pass an `eqx.Module` or `eqx.Partial(fn, model, normalizer)` rather than a fresh
        closure over arrays, so that repeated evaluations reuse the compiled function.
    - `key`: PRNG key for resets (and the environment's own randomness).
    - `num_episodes`: number of episodes.
    - `max_steps`: steps per episode; defaults to the environment's `max_steps_in_episode`.
    - `env_params`: gymnax environment parameters; defaults to the environment's own.

    **Returns:** `(returns, lengths)`: the summed reward `[num_episodes]` (float32) and the
    number of counted steps `[num_episodes]` (int32).

    !!! Example

        ```python
        returns, lengths = evaluate_gymnax(
            "Pendulum-v1", lambda obs: jnp.zeros(1), key=jr.key(0), num_episodes=10
        )
        ```
    """
    if num_episodes < 1:
        raise ValueError(f"evaluate_gymnax: `num_episodes` must be >= 1, got {num_episodes}")
    env, params, steps = _resolve(env_name, env_params, max_steps)
    return _evaluate(env, params, policy, key, num_episodes, steps)


# --------------------------------------------------------------------------- data collection


@eqx.filter_jit
def _collect(env, env_params, behaviours, key, episodes_per_behaviour, episode_length, action_noise):
    low, high = _action_bounds(env, env_params)
    num_behaviours = len(behaviours)
    behaviour_ids = jnp.repeat(jnp.arange(num_behaviours, dtype=jnp.int32), episodes_per_behaviour)
    # `lax.switch` hashes its branches; policies (e.g. `eqx.Partial`) need not be hashable.
    branches = [lambda obs, policy=policy: policy(obs) for policy in behaviours]

    def episode(episode_key, behaviour_id):
        reset_key, noise_key, steps_key = jr.split(episode_key, 3)
        obs, state = env.reset(reset_key, env_params)

        def step(carry, keys):
            obs, state = carry
            noise_key, step_key = keys
            action = jax.lax.switch(behaviour_id, branches, obs)
            noise = jr.normal(noise_key, action.shape, jnp.float32)
            action = jnp.clip(action + action_noise * noise, -1.0, 1.0)
            next_obs, state, reward, terminated, truncated, _ = env.step(
                step_key, state, _to_env_action(action, low, high), env_params
            )
            row = (obs, action, jnp.asarray(reward, jnp.float32), terminated, terminated | truncated)
            return (next_obs, state), row

        keys = (jr.split(noise_key, episode_length), jr.split(steps_key, episode_length))
        _, rows = jax.lax.scan(step, (obs, state), keys)
        return rows

    rows = jax.vmap(episode)(jr.split(key, behaviour_ids.shape[0]), behaviour_ids)
    return rows, behaviour_ids


def collect_gymnax_dataset(
    env_name: str,
    behaviours: Sequence[Policy] | Mapping[str, Policy],
    *,
    key: PRNGKeyArray,
    episodes_per_behaviour: int,
    episode_length: int | None = None,
    action_noise: float = 0.1,
    env_params: Any = None,
) -> tuple[Dataset, Int[Array, " n"]]:
    """Collects a multi-intention dataset: episodes of several behaviour policies, in JAX.

    Episode `e` is generated by behaviour `e // episodes_per_behaviour` (its "intention")
    with Gaussian action noise, `a = clip(behaviour(s) + action_noise * eps, -1, 1)`. Episodes
    have a fixed length and are laid out behaviour by behaviour, row by row:
    row `t` holds the observation *before* the step, the (noisy, `[-1, 1]`) action, and the
    environment's reward for that step. `terminals` is True on the last row of each episode;
    if the environment ends an episode earlier (`terminated` or `truncated`, after which
    gymnax resets), that row is terminal too, and `masks` is 0 on rows that `terminated`.

    **Arguments:**

    - `env_name`: a gymnax environment with continuous actions.
    - `behaviours`: pure JAX policies `[obs_dim] -> [action_dim]` in `[-1, 1]` (a sequence,
        or a mapping whose values are used in order, e.g. [`pendulum_behaviours`][]).
    - `key`: PRNG key for resets, action noise and the environment.
    - `episodes_per_behaviour`: episodes per behaviour.
    - `episode_length`: rows per episode; defaults to the environment's `max_steps_in_episode`.
    - `action_noise`: standard deviation of the Gaussian noise added to the behaviour's action.
    - `env_params`: gymnax environment parameters; defaults to the environment's own.

    **Returns:** `(dataset, behaviour_ids)`: a validated [`Dataset`][] of
    `n = len(behaviours) * episodes_per_behaviour * episode_length` rows and, per row, the
    index of the behaviour that produced it (`[n]`, int32).
    """
    policies = tuple(behaviours.values()) if isinstance(behaviours, Mapping) else tuple(behaviours)
    if not policies:
        raise ValueError("collect_gymnax_dataset: `behaviours` is empty")
    if episodes_per_behaviour < 1:
        raise ValueError(
            f"collect_gymnax_dataset: `episodes_per_behaviour` must be >= 1, got {episodes_per_behaviour}"
        )
    if action_noise < 0:
        raise ValueError(f"collect_gymnax_dataset: `action_noise` must be >= 0, got {action_noise}")
    env, params, length = _resolve(env_name, env_params, episode_length)
    if length < 2:
        raise ValueError(f"collect_gymnax_dataset: `episode_length` must be >= 2, got {length}")
    rows, episode_behaviours = _collect(
        env, params, policies, key, episodes_per_behaviour, length, float(action_noise)
    )
    observations, actions, rewards, terminated, ended = (np.asarray(x) for x in rows)
    num_episodes = observations.shape[0]
    ended = ended.copy()
    ended[:, -1] = True
    dataset = Dataset.from_arrays(
        observations.reshape(num_episodes * length, -1),
        actions.reshape(num_episodes * length, -1),
        terminals=ended.reshape(-1),
        rewards=rewards.reshape(-1),
        masks=1.0 - terminated.reshape(-1).astype(np.float32),
        source=f"gymnax:{env_name}",
    )
    return dataset, jnp.repeat(episode_behaviours, length)
