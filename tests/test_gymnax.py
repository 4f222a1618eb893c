"""The gymnax adapter: jitted evaluation against a Python-loop rollout, and the layout and
diversity of a multi-intention Pendulum dataset."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest


gymnax = pytest.importorskip("gymnax")

import infom  # noqa: E402


def _policy(obs):
    # A fixed, non-trivial policy in [-1, 1] that sometimes saturates.
    return jnp.tanh(2.0 * obs[1:2] - 0.5 * obs[2:3] + 0.3)


def test_evaluate_matches_python_loop_rollout():
    key = jr.key(0)
    num_episodes, max_steps = 2, 230  # more steps than Pendulum's 200: the rest must not count
    returns, lengths = infom.evaluate_gymnax(
        "Pendulum-v1", _policy, key=key, num_episodes=num_episodes, max_steps=max_steps
    )
    assert returns.shape == lengths.shape == (num_episodes,)
    assert returns.dtype == jnp.float32 and lengths.dtype == jnp.int32

    env, params = gymnax.make("Pendulum-v1")
    episode_keys = jr.split(key, num_episodes)
    for episode_key, got_return, got_length in zip(episode_keys, returns, lengths, strict=True):
        reset_key, steps_key = jr.split(episode_key)
        obs, state = env.reset(reset_key, params)
        total, length = 0.0, 0
        for step_key in jr.split(steps_key, max_steps):
            torque = 2.0 * jnp.clip(_policy(obs), -1.0, 1.0)  # [-1, 1] -> [-2, 2]
            obs, state, reward, terminated, truncated, _ = env.step(step_key, state, torque, params)
            total += float(reward)
            length += 1
            if terminated or truncated:
                break
        assert int(got_length) == length == 200
        assert np.isclose(float(got_return), total, rtol=1e-4)


def test_evaluate_rejects_bad_environments_and_actions():
    with pytest.raises(ValueError, match="unknown gymnax environment"):
        infom.evaluate_gymnax("NoSuchEnv-v0", _policy, key=jr.key(0), num_episodes=1)
    with pytest.raises(ValueError, match="discrete"):
        infom.evaluate_gymnax("CartPole-v1", _policy, key=jr.key(0), num_episodes=1)
    with pytest.raises(ValueError, match="shape"):
        infom.evaluate_gymnax(
            "Pendulum-v1", lambda obs: jnp.zeros(2), key=jr.key(0), num_episodes=1, max_steps=3
        )


_EPISODES, _LENGTH = 4, 200


@pytest.fixture(scope="module")
def pendulum_data():
    behaviours = infom.pendulum_behaviours()
    dataset, behaviour_ids = infom.collect_gymnax_dataset(
        "Pendulum-v1",
        behaviours,
        key=jr.key(1),
        episodes_per_behaviour=_EPISODES,
        episode_length=_LENGTH,
        action_noise=0.1,
    )
    return list(behaviours), dataset, behaviour_ids


def test_collected_dataset_layout(pendulum_data):
    names, dataset, behaviour_ids = pendulum_data
    n = len(names) * _EPISODES * _LENGTH
    assert dataset.observations.shape == (n, 3) and dataset.actions.shape == (n, 1)
    assert behaviour_ids.shape == (n,) and behaviour_ids.dtype == jnp.int32
    assert np.array_equal(np.asarray(behaviour_ids), np.repeat(np.arange(len(names)), _EPISODES * _LENGTH))
    terminals = np.asarray(dataset.terminals).reshape(-1, _LENGTH)
    assert terminals[:, -1].all() and not terminals[:, :-1].any()
    assert len(dataset.valid_indices) == n - n // _LENGTH
    assert np.abs(np.asarray(dataset.actions)).max() <= 1.0
    assert np.array_equal(np.asarray(dataset.masks), np.ones(n))


def test_collected_rows_are_consecutive_steps_with_env_rewards(pendulum_data):
    _, dataset, _ = pendulum_data
    obs = np.asarray(dataset.observations, np.float64)
    torque = 2.0 * np.asarray(dataset.actions, np.float64)[:, 0]
    theta, theta_dot = np.arctan2(obs[:, 1], obs[:, 0]), obs[:, 2]
    # Pendulum-v1's reward for the row's state and action ...
    angle = np.mod(theta + np.pi, 2 * np.pi) - np.pi
    reward = -(angle**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)
    assert np.allclose(np.asarray(dataset.rewards), reward, atol=1e-3)
    # ... and its dynamics map every non-terminal row to the next one.
    valid = np.asarray(dataset.valid_indices)
    next_theta_dot = np.clip(theta_dot + (15.0 * np.sin(theta) + 3.0 * torque) * 0.05, -8.0, 8.0)
    assert np.allclose(obs[valid + 1, 2], next_theta_dot[valid], atol=1e-3)


def test_collected_dataset_can_be_sampled(pendulum_data):
    _, dataset, _ = pendulum_data
    batch = infom.sample_batch(dataset, jr.key(2), 64)
    assert batch.observations.shape == (64, 3)
    assert jnp.all(jnp.isfinite(batch.next_observations))


def test_pendulum_behaviours_are_distinct(pendulum_data):
    names, dataset, behaviour_ids = pendulum_data
    obs = np.asarray(dataset.observations).reshape(len(names), _EPISODES, _LENGTH, 3)
    sin_late = obs[:, :, -50:, 1].mean(axis=(1, 2))
    speed = obs[:, :, :, 2].mean(axis=(1, 2))
    cos_late_max = obs[:, :, -100:, 0].max(axis=(1, 2))
    stats = dict(zip(names, zip(sin_late, speed, cos_late_max, strict=True), strict=True))
    assert stats["hold_left"][0] > 0.15 and stats["hold_right"][0] < -0.15  # held at +-0.25 rad
    assert stats["hold_left"][2] > 0.95 and stats["hold_right"][2] > 0.95  # near upright
    assert stats["spin_ccw"][1] > 3.0 and stats["spin_cw"][1] < -3.0  # spinning either way
    assert stats["swing"][2] < 0.5 and abs(stats["swing"][1]) < 1.0  # swings below horizontal
