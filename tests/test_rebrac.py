"""The ReBRAC baseline (`infom.agents.rebrac`): behaviour penalties, gradient flow, targets, a probe."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from _trees import is_zero
from conftest import tree_allclose

from infom._types import Batch
from infom.agents import rebrac


OBS, ACT, B = 3, 2, 8
CONFIG = rebrac.ReBRACConfig(hidden_dims=(16, 16))


def _batch(key, *, same_state=False, rewards=None, next_actions=None):
    s_key, a_key, next_s_key, next_a_key, r_key = jr.split(key, 5)
    s = jnp.broadcast_to(jr.normal(s_key, (1 if same_state else B, OBS)), (B, OBS))
    if next_actions is None:
        next_actions = jr.uniform(next_a_key, (B, ACT), minval=-1, maxval=1)
    return Batch(
        observations=s,
        actions=jr.uniform(a_key, (B, ACT), minval=-1, maxval=1),
        next_observations=s if same_state else jr.normal(next_s_key, (B, OBS)),
        next_actions=jnp.broadcast_to(next_actions, (B, ACT)),
        rewards=jr.normal(r_key, (B,)) if rewards is None else jnp.full((B,), rewards),
        masks=jnp.ones((B,)),
    )


def _loss(online, target, batch, key, update_actor=True, config=CONFIG):
    return rebrac.finetune_loss(
        online, target, batch, key=key, config=config, normalizer=None, update_actor=update_actor
    )


@pytest.fixture(scope="module")
def networks():
    online, target = rebrac.AGENT.init(OBS, ACT, CONFIG, key=jr.key(0))
    # Move the online networks away from the targets, so that the two are distinguishable.
    perturb = lambda x: x + 0.3 * jr.normal(jr.key(1), x.shape) if eqx.is_inexact_array(x) else x
    return jax.tree.map(perturb, online), target


def test_actor_bc_penalty_vanishes_when_the_policy_action_equals_the_data_action(networks, getkey):
    online, target = networks
    batch = _batch(getkey())
    _, metrics = _loss(online, target, batch, getkey())
    pi = rebrac.AGENT.act(online, batch.observations)
    np.testing.assert_allclose(metrics.bc_loss, jnp.mean(jnp.sum((pi - batch.actions) ** 2, -1)), rtol=1e-5)
    assert float(metrics.bc_loss) > 0

    _, metrics = _loss(online, target, dataclasses.replace(batch, actions=pi), getkey())
    np.testing.assert_allclose(metrics.bc_loss, 0.0, atol=1e-10)
    np.testing.assert_allclose(metrics.actor_loss, metrics.q_loss, rtol=1e-6)


def test_actor_q_term_is_minus_q_of_the_policy_over_mean_abs_q(networks, getkey):
    online, target = networks
    batch = _batch(getkey())
    _, metrics = _loss(online, target, batch, getkey())
    pi = jnp.tanh(jax.vmap(online.actor)(batch.observations))
    q = jnp.min(jax.vmap(online.critic)(batch.observations, pi), axis=-1)
    np.testing.assert_allclose(metrics.q_loss, -q.mean() / jnp.abs(q).mean(), rtol=1e-5)


def test_critic_penalty_vanishes_when_the_target_next_action_equals_the_data_next_action(networks, getkey):
    online, target = networks
    config = dataclasses.replace(CONFIG, actor_noise=0.0)
    batch = _batch(getkey())
    next_pi = rebrac.policy_actions(target.actor, batch.next_observations, True)
    batch = dataclasses.replace(batch, next_actions=next_pi)
    _, metrics = _loss(online, target, batch, getkey(), config=config)
    np.testing.assert_allclose(metrics.next_action_penalty, 0.0, atol=1e-10)
    next_q = jnp.min(jax.vmap(target.critic)(batch.next_observations, next_pi), axis=-1)
    y = batch.rewards + 0.99 * batch.masks * next_q
    np.testing.assert_allclose(metrics.target_mean, y.mean(), rtol=1e-5, atol=1e-6)
    qs = jax.vmap(online.critic)(batch.observations, batch.actions)
    np.testing.assert_allclose(metrics.critic_loss, jnp.mean((qs - y[:, None]) ** 2), rtol=1e-5)

    # With another next action the penalty is alpha_critic * ||a~ - a'||^2.
    other = dataclasses.replace(batch, next_actions=jnp.zeros((B, ACT)))
    _, metrics = _loss(online, target, other, getkey(), config=config)
    np.testing.assert_allclose(metrics.next_action_penalty, jnp.mean(jnp.sum(next_pi**2, -1)), rtol=1e-5)


def test_target_policy_noise_is_clipped_and_drawn_from_the_key(networks, getkey):
    online, target = networks
    config = dataclasses.replace(CONFIG, actor_noise=100.0, actor_noise_clip=0.1)
    batch = _batch(getkey())
    next_pi = rebrac.policy_actions(target.actor, batch.next_observations, True)
    batch = dataclasses.replace(batch, next_actions=next_pi)
    key = getkey()
    _, metrics = _loss(online, target, batch, key, config=config)
    assert 0 < float(metrics.next_action_penalty) <= ACT * 0.1**2 + 1e-6
    _, same = _loss(online, target, batch, key, config=config)
    _, other = _loss(online, target, batch, getkey(), config=config)
    assert float(same.target_mean) == float(metrics.target_mean) != float(other.target_mean)


def test_no_gradient_reaches_the_target_networks(networks, getkey):
    online, target = networks
    batch, key = _batch(getkey()), getkey()
    grads = eqx.filter_grad(lambda both: _loss(both[0], both[1], batch, key)[0])((online, target))
    assert is_zero(grads[1])
    assert not is_zero(grads[0].critic) and not is_zero(grads[0].actor)


def test_actor_loss_gives_no_gradient_to_the_critic_and_is_absent_without_update_actor(networks, getkey):
    online, target = networks
    batch, key = _batch(getkey()), getkey()
    actor_term = lambda o: _loss(o, target, batch, key, True)[0] - _loss(o, target, batch, key, False)[0]
    grads = eqx.filter_grad(actor_term)(online)
    assert is_zero(grads.critic) and not is_zero(grads.actor)

    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: _loss(o, target, batch, key, False), has_aux=True
    )(online)
    assert float(metrics.actor_loss) == float(metrics.bc_loss) == 0.0
    np.testing.assert_allclose(loss, metrics.critic_loss)
    assert is_zero(grads.actor) and not is_zero(grads.critic)


def test_targets_move_by_ema_on_every_actor_freq_th_update_only(networks):
    online, target = networks
    trees = [target]
    for _ in range(4):
        trees.append(rebrac.AGENT.update_target(trees[-1], online, CONFIG))
    for before, after in zip(trees[:3], trees[1:4], strict=True):
        assert tree_allclose((before.critic, before.actor), (after.critic, after.actor))
    want = jax.tree.map(
        lambda t, o: 0.005 * o + 0.995 * t, (target.critic, target.actor), (online.critic, online.actor)
    )
    assert tree_allclose((trees[4].critic, trees[4].actor), want)
    assert not tree_allclose(trees[4].critic, target.critic)
    assert int(trees[4].num_updates) == 4


def test_pretraining_is_tanh_gaussian_behaviour_cloning_finite_at_the_action_bounds(networks, getkey):
    online, target = networks
    batch = _batch(getkey())
    batch = dataclasses.replace(batch, actions=batch.actions.at[0].set(jnp.array([1.0, -1.0])))
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: rebrac.pretrain_loss(o, target, batch, key=jr.key(0), config=CONFIG), has_aux=True
    )(online)
    a = jnp.clip(batch.actions, -1 + 1e-5, 1 - 1e-5)
    mu = jax.vmap(online.actor)(batch.observations)
    log_prob = jax.scipy.stats.norm.logpdf(jnp.arctanh(a), mu, 1.0) - jnp.log(1 - a**2)
    np.testing.assert_allclose(loss, -log_prob.sum(-1).mean(), rtol=1e-4)
    assert metrics._fields[0] == "loss" and bool(jnp.isfinite(loss))
    assert is_zero(grads.critic) and not is_zero(grads.actor)


def test_act_is_tanh_of_the_mean_in_bounds_and_metrics_are_scalars_with_loss_first(networks, getkey):
    online, target = networks
    s = 100.0 * jr.normal(getkey(), (B, OBS))
    actions = rebrac.AGENT.act(online, s)
    np.testing.assert_allclose(actions, jnp.tanh(jax.vmap(online.actor)(s)), rtol=1e-6)
    assert float(jnp.max(jnp.abs(actions))) <= 1.0
    _, metrics = _loss(online, target, _batch(getkey()), getkey())
    assert metrics._fields[0] == "loss" and all(jnp.shape(m) == () for m in metrics)
    assert rebrac.AGENT.name == "rebrac" and rebrac.AGENT.config_type is rebrac.ReBRACConfig
    assert rebrac.AGENT.start_finetuning(online, target, CONFIG) == (online, target)


def test_q_approaches_penalised_r_over_one_minus_gamma_on_constant_reward_probe(getkey):
    # One state, reward 1, no terminals, gamma 0.5, no target noise, a fixed actor (no actor
    # updates) and one data next action a': Q = (1 - gamma * alpha_critic * ||pi(s) - a'||^2) / (1 - gamma).
    config = dataclasses.replace(
        CONFIG, gamma=0.5, tau=0.2, learning_rate=3e-3, actor_noise=0.0, actor_freq=1
    )
    online, target = rebrac.AGENT.init(OBS, ACT, config, key=getkey())
    batch = _batch(getkey(), same_state=True, rewards=1.0, next_actions=jnp.array([0.5, -0.5]))
    key = getkey()
    optim = optax.adam(config.learning_rate)

    @eqx.filter_jit
    def train(online, target):
        def step(carry, _):
            online, target, opt_state = carry
            grads = eqx.filter_grad(lambda o: _loss(o, target, batch, key, False, config)[0])(online)
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
                updates, opt_state = optim.update(grads, opt_state)
            online = eqx.apply_updates(online, updates)
            return (online, rebrac.AGENT.update_target(target, online, config), opt_state), None

        carry = (online, target, optim.init(eqx.filter(online, eqx.is_array)))
        (online, target, _), _ = jax.lax.scan(step, carry, None, length=1000)
        return online, target

    pi = rebrac.AGENT.act(online, batch.observations[:1])
    penalty = float(jnp.sum((pi[0] - batch.next_actions[0]) ** 2))
    online, target = train(online, target)
    q = jax.vmap(online.critic)(batch.observations, batch.actions)
    np.testing.assert_allclose(q, (1.0 - 0.5 * penalty) / 0.5, atol=0.05)


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 0),
        ("hidden_dims", (0,)),
        ("gamma", -0.1),
        ("tau", 2.0),
        ("actor_freq", 0),
        ("alpha_actor", -1.0),
        ("alpha_critic", -1.0),
        ("actor_noise", -0.1),
        ("actor_noise_clip", -0.1),
        ("action_clip_eps", 1.0),
        ("tanh_squash", "yes"),
    ],
)
def test_rebrac_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"ReBRACConfig.{field}"):
        rebrac.ReBRACConfig(**{field: value})
