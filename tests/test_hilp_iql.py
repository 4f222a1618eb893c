"""The HILP + IQL baseline (`infom.agents.hilp_iql`): the Hilbert distance on a chain, telescoping skill
rewards, least-squares task inference, the goal sampler, gradient flow and the phase change."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from _trees import is_zero
from hypothesis import given, strategies as st

import infom
from infom._types import Batch
from infom.agents import hilp_iql
from infom.data._dataset import Dataset, batch_at


OBS, ACT, B, D = 3, 2, 8, 4
CONFIG = hilp_iql.HILPIQLConfig(hidden_dims=(16, 16), latent_dim=D, batch_size=B)


def _goal_batch(key, rewards=None):
    s_key, a_key, next_s_key, next_a_key, r_key, g_key = jr.split(key, 6)
    transitions = Batch(
        observations=jr.normal(s_key, (B, OBS)),
        actions=jr.uniform(a_key, (B, ACT), minval=-1, maxval=1),
        next_observations=jr.normal(next_s_key, (B, OBS)),
        next_actions=jr.uniform(next_a_key, (B, ACT), minval=-1, maxval=1),
        rewards=jr.normal(r_key, (B,)) if rewards is None else rewards,
        masks=jnp.ones((B,)),
    )
    success = (jnp.arange(B) % 4 == 0).astype(jnp.float32)
    return hilp_iql.GoalBatch(transitions, jr.normal(g_key, (B, OBS)), success - 1.0, 1.0 - success)


@eqx.filter_jit
def _grads(loss_fn, online, target, batch, update_actor):
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: loss_fn(o, target, batch, key=jr.key(1), config=CONFIG, update_actor=update_actor),
        has_aux=True,
    )(online)
    return loss, metrics, grads


@pytest.fixture(scope="module")
def networks():
    return eqx.filter_jit(hilp_iql.AGENT.init)(OBS, ACT, CONFIG, key=jr.key(0))


# --------------------------------------------------------------------------- the Hilbert distance


@given(st.integers(0, 2**31 - 1))
def test_the_hilbert_value_is_minus_a_metric_symmetric_zero_on_the_diagonal_and_triangular(seed):
    phi = jr.normal(jr.key(seed), (3, D))
    v = jax.jit(lambda p: hilbert_matrix(p))(phi)
    distance = -np.asarray(v, np.float64)
    np.testing.assert_allclose(distance, distance.T, rtol=1e-6)
    np.testing.assert_allclose(np.diagonal(distance), 1e-6, rtol=1e-3)  # sqrt of the 1e-12 floor
    for i, j, k in np.ndindex(3, 3, 3):
        assert distance[i, k] <= distance[i, j] + distance[j, k] + 1e-5


def hilbert_matrix(phi):
    return jax.vmap(lambda a: jax.vmap(lambda b: hilp_iql.hilbert_value(a, b))(phi))(phi)


CHAIN = 6


def _chain_dataset(key, episodes=8, length=40):
    """Random walks on a chain of `CHAIN` states (one-hot observations), a step of -1 or +1 each
    row (clipped at the ends)."""
    steps = jnp.where(jr.bernoulli(key, 0.5, (episodes, length)), 1, -1)
    start = jnp.arange(episodes) % CHAIN
    positions = jnp.clip(start[:, None] + jnp.cumsum(steps, axis=1) - steps[:, :1], 0, CHAIN - 1)
    positions = np.asarray(positions).reshape(-1)
    actions = np.asarray(steps, np.float32).reshape(-1, 1)
    terminals = np.tile(np.arange(length) == length - 1, episodes)
    return Dataset.from_arrays(np.eye(CHAIN, dtype=np.float32)[positions], actions, terminals=terminals)


def test_the_learned_hilbert_distance_on_a_chain_grows_with_the_number_of_steps_between_states():
    config = hilp_iql.HILPIQLConfig(
        hidden_dims=(32,), latent_dim=4, batch_size=128, gamma=0.8, learning_rate=3e-3, tau=0.05
    )
    data = _chain_dataset(jr.key(0))
    value = hilp_iql.HilbertValue(CHAIN, config.hidden_dims, config.latent_dim, key=jr.key(1))
    optim = optax.adam(config.learning_rate)

    @jax.jit
    def train(value, key):
        def step(carry, key):
            value, target, opt_state = carry
            batch = hilp_iql.sample_goal_batch(data, key, config)
            grads = jax.grad(
                lambda v: hilp_iql.representation_loss(
                    v, target, batch, gamma=config.gamma, expectile=config.expectile
                )[0]
            )(value)
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
                updates, opt_state = optim.update(grads, opt_state)
            value = eqx.apply_updates(value, updates)
            return (value, infom.ema_update(target, value, config.tau), opt_state), None

        carry = (value, value, optim.init(eqx.filter(value, eqx.is_array)))
        (value, _, _), _ = jax.lax.scan(step, carry, jr.split(key, 1500))
        phi = hilp_iql.representation(value, jnp.eye(CHAIN))
        return -hilbert_matrix(phi)

    distance = np.asarray(train(value, jr.key(2)))
    # From either end of the chain, every further state is further away.
    assert np.all(np.diff(distance[0]) > 0), distance[0]
    assert np.all(np.diff(distance[-1][::-1]) > 0), distance[-1]
    # A state's neighbours are its nearest states, and one step is worth about as much everywhere.
    neighbours = np.diagonal(distance, 1)
    assert np.all(neighbours < np.diagonal(distance, 2)[:, None].min() + 1e-6)
    assert neighbours.max() < 2.0 * neighbours.min(), neighbours
    # And the distance is near the optimal goal-reaching cost (1 - gamma^k) / (1 - gamma) of k steps
    # (learned from random walks with expectile 0.9: 1.1, 1.95, 2.61, 3.13, 3.76 from state 0 here).
    k = np.abs(np.arange(CHAIN)[:, None] - np.arange(CHAIN)[None])
    optimal = (1 - config.gamma**k) / (1 - config.gamma)
    np.testing.assert_allclose(
        distance[~np.eye(CHAIN, dtype=bool)], optimal[~np.eye(CHAIN, dtype=bool)], rtol=0.25
    )


# --------------------------------------------------------------------------- skills and the task


def _linear_value(d):
    """A `HilbertValue` whose `phi_e(s) = s` on `R^d`: one linear layer, identity weights, zero bias."""
    value = hilp_iql.HilbertValue(d, (), d, num_heads=2, layer_norm=False, key=jr.key(0))
    eye = jnp.broadcast_to(jnp.eye(d), (2, d, d))
    return eqx.tree_at(
        lambda v: (v.phi.layers[0].weight, v.phi.layers[0].bias), value, (eye, jnp.zeros((2, d)))
    )


def test_skill_rewards_telescope_along_a_trajectory(networks, getkey):
    online, _ = networks
    path = jr.normal(getkey(), (6, OBS))
    z = jnp.broadcast_to(jr.normal(getkey(), (D,)), (5, D))
    rewards, ends = jax.jit(
        lambda v: (
            hilp_iql.skill_rewards(v, path[:-1], path[1:], z),
            hilp_iql.representation(v, path[jnp.array([0, 5])]),
        )
    )(online.value)
    np.testing.assert_allclose(jnp.sum(rewards), (ends[1] - ends[0]) @ z[0], rtol=1e-4, atol=1e-5)


def test_task_inference_is_the_least_squares_skill_of_the_rewards(getkey):
    d = 4
    s, s_next = jr.normal(getkey(), (50, d)), jr.normal(getkey(), (50, d))
    w = jnp.array([0.5, -1.0, 2.0, 0.0])
    z = jax.jit(hilp_iql.infer_task)(_linear_value(d), s, s_next, (s_next - s) @ w)
    np.testing.assert_allclose(z, np.sqrt(d) * w / jnp.linalg.norm(w), rtol=1e-4, atol=1e-5)


def test_goal_sampler_draws_future_goals_of_the_episode_or_any_row_and_rewards_reaching_them(getkey):
    lengths = (5, 60)
    episode = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    rows = np.arange(len(episode))
    terminals = np.concatenate([np.arange(n) == n - 1 for n in lengths])
    data = Dataset.from_arrays(
        np.stack([rows, episode, np.zeros_like(rows)], axis=1).astype(np.float32),
        np.zeros((len(rows), ACT), np.float32),
        terminals=terminals,
    )
    ends = np.concatenate([np.full(n, start + n - 1) for start, n in zip((0, 5), lengths, strict=True)])
    sample = jax.jit(lambda key, config: hilp_iql.sample_goal_batch(data, key, config), static_argnums=1)
    for p_traj in (1.0, 0.0, 0.625):
        config = dataclasses.replace(CONFIG, batch_size=4096, gamma=0.5, value_p_trajgoal=p_traj)
        batch = sample(getkey(), config)
        i = np.asarray(batch.transitions.observations[:, 0]).astype(int)
        g = np.asarray(batch.goals[:, 0]).astype(int)
        assert bool(eqx.tree_equal(batch.transitions, batch_at(data, jnp.asarray(i, jnp.int32))))
        np.testing.assert_array_equal(batch.goal_rewards, -(g != i).astype(np.float32))
        np.testing.assert_array_equal(batch.goal_masks, (g != i).astype(np.float32))
        future = (episode[g] == episode[i]) & (g > i) & (g <= ends[i])
        if p_traj == 1.0:
            assert np.all(future)
            k = (g - i)[ends[i] - i >= 12]
            np.testing.assert_allclose(np.mean(k == 1), 0.5, atol=0.04)  # geometric, P(1) = 1 - gamma
        elif p_traj == 0.0:
            np.testing.assert_allclose(np.mean(g), (len(rows) - 1) / 2, atol=2.0)  # uniform over rows
            assert np.mean(g == i) > 0  # a random goal can be the row itself: reward 0, mask 0
        else:
            # P(future) = 0.625 + 0.375 P(a uniform row is in the row's future).
            chance = np.mean((ends[i] - i) / len(rows))
            np.testing.assert_allclose(np.mean(future), 0.625 + 0.375 * chance, atol=0.03)


# --------------------------------------------------------------------------- losses and gradients


def test_pretraining_trains_phi_by_ivl_alone_and_the_skill_policy_by_iql_on_skill_rewards(networks, getkey):
    online, target = networks
    batch = _goal_batch(getkey(), rewards=jnp.full((B,), jnp.nan))
    loss, metrics, grads = _grads(hilp_iql.pretrain_loss, online, target, batch, jnp.asarray(False))
    assert bool(jnp.isfinite(loss)) and all(jnp.shape(m) == () for m in metrics)  # what a run logs
    np.testing.assert_allclose(loss, metrics.phi_loss + metrics.skill_loss, rtol=1e-6)
    assert not any(
        is_zero(g) for g in (grads.value, grads.skill_value, grads.skill_critic, grads.skill_actor)
    )
    assert is_zero(grads.task)
    # phi's gradient is that of the representation loss alone (the skill rewards use phi frozen).
    phi_grads = eqx.filter_jit(
        eqx.filter_grad(
            lambda v: hilp_iql.representation_loss(
                v, target.value, batch, gamma=CONFIG.gamma, expectile=CONFIG.expectile
            )[0]
        )
    )(online.value)
    assert bool(eqx.tree_equal(grads.value, phi_grads, rtol=1e-5, atol=1e-7))
    # The actor learns on every pre-training update.
    assert float(metrics.skill_actor_loss) != 0.0


def test_finetuning_trains_the_skill_policy_on_the_task_and_nothing_else(networks, getkey):
    online, target = networks
    online = eqx.tree_at(lambda n: n.task, online, jnp.array([2.0, 0.0, 0.0, 0.0]))
    batch = _goal_batch(getkey())
    loss, metrics, grads = _grads(hilp_iql.finetune_loss, online, target, batch, jnp.asarray(True))
    assert bool(jnp.isfinite(loss)) and isinstance(metrics, infom.agents.iql.IQLMetrics)
    assert not any(is_zero(g) for g in (grads.skill_value, grads.skill_critic, grads.skill_actor))
    assert is_zero(grads.value) and is_zero(grads.task)
    _, no_actor, no_actor_grads = _grads(hilp_iql.finetune_loss, online, target, batch, jnp.asarray(False))
    assert float(no_actor.actor_loss) == 0.0 and is_zero(no_actor_grads.skill_actor)
    other = eqx.tree_at(lambda n: n.task, online, jnp.array([0.0, -2.0, 0.0, 0.0]))
    assert float(_grads(hilp_iql.finetune_loss, other, target, batch, jnp.asarray(True))[1].v_mean) != float(
        metrics.v_mean
    )


def test_start_finetuning_infers_the_task_and_resets_the_skill_critics_target(networks, getkey):
    online, target = networks
    assert hilp_iql.AGENT.task_batch is hilp_iql.task_batch and hilp_iql.AGENT.name == "hilp_iql"
    moved = eqx.tree_at(
        lambda n: n.skill_critic,
        online,
        jax.tree.map(lambda x: x + 1.0 if eqx.is_inexact_array(x) else x, online.skill_critic),
    )
    t = _goal_batch(getkey()).transitions
    with pytest.raises(ValueError, match="needs `batch=`"):
        hilp_iql.start_finetuning(online, target, CONFIG)
    tuned, new_target = jax.jit(lambda o, tg, b: hilp_iql.start_finetuning(o, tg, CONFIG, batch=b))(
        moved, target, t
    )
    np.testing.assert_allclose(
        tuned.task,
        hilp_iql.infer_task(online.value, t.observations, t.next_observations, t.rewards),
        rtol=1e-4,
    )
    assert bool(eqx.tree_equal(new_target.skill_critic, moved.skill_critic))
    assert bool(eqx.tree_equal(new_target.value, target.value))
    s = 100.0 * jr.normal(getkey(), (B, OBS))
    zs = jnp.broadcast_to(tuned.task, (B, D))
    np.testing.assert_allclose(
        hilp_iql.act(tuned, s), jnp.clip(jax.vmap(tuned.skill_actor)(jnp.concatenate([s, zs], 1)), -1, 1)
    )


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 0),
        ("hidden_dims", (0,)),
        ("latent_dim", 0),
        ("gamma", 1.0),
        ("tau", 2.0),
        ("expectile", 0.2),
        ("actor_freq", 0),
        ("alpha", -1.0),
        ("value_p_trajgoal", 1.5),
        ("num_task_samples", 0),
        ("num_phi_heads", 0),
        ("value_layer_norm", "yes"),
    ],
)
def test_hilp_iql_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"HILPIQLConfig.{field}"):
        hilp_iql.HILPIQLConfig(**{field: value})


@pytest.mark.parametrize("preset", sorted(infom.PRESETS))
def test_preset_config_takes_the_presets_networks_and_the_authors_alpha(preset):
    p = infom.get_preset(preset)
    config = hilp_iql.preset_config(p)
    assert config.hidden_dims == p.infom.network.hidden_dims and config.latent_dim == config.hidden_dims[-1]
    assert (config.batch_size, config.learning_rate, config.gamma, config.alpha) == (
        p.infom.batch_size,
        p.infom.learning_rate,
        p.infom.gamma,
        1.0,
    )
    assert dataclasses.replace(config, alpha=3.0).iql().alpha == 3.0


def test_the_iql_config_takes_every_iql_field_and_fbs_awr_temperature():
    from infom.agents import fb_iql, iql

    hilp = hilp_iql.HILPIQLConfig(alpha=3.0, expectile=0.7, hidden_dims=(8,), tau=0.01).iql()
    fb = fb_iql.FBIQLConfig(alpha_awr=2.0, alpha_repr=5.0, expectile=0.8, hidden_dims=(8,)).iql()
    assert (hilp.alpha, hilp.expectile, hilp.hidden_dims, hilp.tau) == (3.0, 0.7, (8,), 0.01)
    assert (fb.alpha, fb.expectile, fb.hidden_dims) == (2.0, 0.8, (8,))
    assert isinstance(fb, iql.IQLConfig)
