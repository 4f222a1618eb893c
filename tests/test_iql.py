"""The IQL baseline (`infom.agents.iql`): expectile value, AWR weights, gradient flow, a probe."""

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
from infom.agents import iql


OBS, ACT, B = 3, 2, 8
CONFIG = iql.IQLConfig(hidden_dims=(16, 16))


def _batch(key, *, same_state=False, rewards=None):
    s_key, a_key, next_s_key, next_a_key, r_key = jr.split(key, 5)
    s = jr.normal(s_key, (1 if same_state else B, OBS))
    s = jnp.broadcast_to(s, (B, OBS))
    return Batch(
        observations=s,
        actions=jr.uniform(a_key, (B, ACT), minval=-1, maxval=1),
        next_observations=s if same_state else jr.normal(next_s_key, (B, OBS)),
        next_actions=jr.uniform(next_a_key, (B, ACT), minval=-1, maxval=1),
        rewards=jr.normal(r_key, (B,)) if rewards is None else jnp.full((B,), rewards),
        masks=jnp.ones((B,)),
    )


def _loss(online, target, batch, key, update_actor=True, config=CONFIG):
    return iql.finetune_loss(
        online, target, batch, key=key, config=config, normalizer=None, update_actor=update_actor
    )


@pytest.fixture(scope="module")
def networks():
    return iql.AGENT.init(OBS, ACT, CONFIG, key=jr.key(0))


def _expectile(y, tau):
    """The `tau`-expectile of `y` by bisection on the derivative of `mean L_2^tau(y - v)`."""
    lo, hi = float(np.min(y)), float(np.max(y))
    for _ in range(100):
        v = 0.5 * (lo + hi)
        weights = np.where(y > v, tau, 1.0 - tau)
        lo, hi = (v, hi) if np.mean(weights * (y - v)) > 0 else (lo, v)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("expectile", [0.5, 0.9])
def test_fitted_value_is_the_expectile_of_target_q_between_mean_and_max_and_the_mean_at_half(
    networks, expectile, getkey
):
    # One state, B different actions: gradient descent on the value loss alone fits V(s) to the
    # expectile of the B frozen targets min_i Q_bar(s, a_j) (scaled up to spread them out).
    online, target = networks
    last = lambda t: t.critic.heads.layers[-1].weight
    target = eqx.tree_at(last, target, 30.0 * last(target))
    config = dataclasses.replace(CONFIG, expectile=expectile)
    batch = _batch(getkey(), same_state=True)
    key = getkey()
    optim = optax.adam(1e-2)

    def value_loss(value):
        net = eqx.tree_at(lambda o: o.value, online, value)
        return _loss(net, target, batch, key, update_actor=False, config=config)[1].value_loss

    @eqx.filter_jit
    def fit(value):
        def step(carry, _):
            value, opt_state = carry
            grads = eqx.filter_grad(value_loss)(value)
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
                updates, opt_state = optim.update(grads, opt_state)
            return (eqx.apply_updates(value, updates), opt_state), None

        (value, _), _ = jax.lax.scan(step, (value, optim.init(value)), None, length=1500)
        return value

    value = fit(online.value)
    v = float(iql.state_values(value, batch.observations[:1])[0])
    q = np.asarray(jnp.min(jax.vmap(target.critic)(batch.observations, batch.actions), axis=-1))
    assert np.ptp(q) > 1.0
    np.testing.assert_allclose(v, _expectile(q, expectile), atol=1e-3 * np.ptp(q))
    if expectile == 0.5:
        np.testing.assert_allclose(v, q.mean(), atol=1e-3 * np.ptp(q))
    else:
        assert q.mean() + 0.05 * np.ptp(q) < v < q.max()


def test_awr_weights_are_exp_alpha_adv_clipped_at_100_and_carry_no_gradient():
    adv = jnp.array([-2.0, 0.0, 0.5, 3.0, 10.0])
    weights = iql.awr_weights(adv, 1.0, 100.0)
    np.testing.assert_allclose(weights, np.minimum(np.exp(np.asarray(adv)), 100.0), rtol=1e-6)
    assert float(weights[-1]) == 100.0
    assert float(jnp.max(jax.grad(lambda x: jnp.sum(iql.awr_weights(x, 3.0, 100.0)))(adv))) == 0.0
    assert iql.IQLConfig().max_weight == 100.0


def test_actor_term_is_minus_awr_weighted_log_prob_and_gives_no_gradient_to_critic_or_value(networks, getkey):
    online, target = networks
    batch, key = _batch(getkey()), getkey()
    config = dataclasses.replace(CONFIG, alpha=10.0)
    _, metrics = _loss(online, target, batch, key, config=config)
    s, a = batch.observations, batch.actions
    adv = jnp.min(jax.vmap(online.critic)(s, a), axis=-1) - iql.state_values(online.value, s)
    weights = jnp.minimum(jnp.exp(10.0 * adv), 100.0)
    log_prob = jax.scipy.stats.norm.logpdf(a, jax.vmap(online.actor)(s), 1.0).sum(-1)
    np.testing.assert_allclose(metrics.actor_loss, -jnp.mean(weights * log_prob), rtol=1e-5)
    np.testing.assert_allclose(metrics.adv_mean, adv.mean(), rtol=1e-5, atol=1e-6)

    # The actor term is the difference of the losses with and without it.
    actor_term = lambda o: (
        _loss(o, target, batch, key, True, config)[0] - _loss(o, target, batch, key, False, config)[0]
    )
    grads = eqx.filter_grad(actor_term)(online)
    assert is_zero(grads.critic) and is_zero(grads.value)
    assert not is_zero(grads.actor)


def test_actor_term_is_absent_without_update_actor(networks, getkey):
    online, target = networks
    batch, key = _batch(getkey()), getkey()
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: _loss(o, target, batch, key, False), has_aux=True
    )(online)
    assert float(metrics.actor_loss) == 0.0
    np.testing.assert_allclose(loss, metrics.value_loss + metrics.critic_loss, rtol=1e-6)
    assert is_zero(grads.actor)
    assert not is_zero(grads.critic) and not is_zero(grads.value)


def test_value_and_critic_losses_are_the_expectile_and_td_regressions(networks, getkey):
    online, target = networks
    batch = _batch(getkey())
    _, metrics = _loss(online, target, batch, getkey())
    s, a = batch.observations, batch.actions
    q_bar = jnp.min(jax.vmap(target.critic)(s, a), axis=-1)
    u = q_bar - iql.state_values(online.value, s)
    np.testing.assert_allclose(metrics.value_loss, jnp.mean(jnp.where(u < 0, 0.1, 0.9) * u**2), rtol=1e-5)
    y = batch.rewards + 0.99 * batch.masks * iql.state_values(online.value, batch.next_observations)
    qs = jax.vmap(online.critic)(s, a)
    np.testing.assert_allclose(metrics.critic_loss, jnp.mean(jnp.sum((qs - y[:, None]) ** 2, -1)), rtol=1e-5)


def test_targets_get_no_gradient_and_are_untouched_by_a_training_step(networks, getkey):
    online, target = networks
    batch, key = _batch(getkey()), getkey()
    grads = eqx.filter_grad(lambda both: _loss(both[0], both[1], batch, key)[0])((online, target))
    assert is_zero(grads[1]) and not is_zero(grads[0].critic)

    optim = optax.adam(1e-2)
    online_grads = eqx.filter_grad(lambda o: _loss(o, target, batch, key)[0])(online)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = optim.update(online_grads, optim.init(eqx.filter(online, eqx.is_array)))
    stepped = eqx.apply_updates(online, updates)
    assert not tree_allclose(stepped.critic, online.critic)
    assert tree_allclose(target, iql.AGENT.init(OBS, ACT, CONFIG, key=jr.key(0))[1])
    moved = iql.AGENT.update_target(target, stepped, CONFIG)
    want = jax.tree.map(lambda t, o: 0.005 * o + 0.995 * t, target.critic, stepped.critic)
    assert tree_allclose(moved.critic, want)


def test_pretraining_is_behaviour_cloning_of_the_actor_only(networks, getkey):
    online, target = networks
    batch = _batch(getkey())
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: iql.pretrain_loss(o, target, batch, key=jr.key(0), config=CONFIG, update_actor=False),
        has_aux=True,
    )(online)
    log_prob = jax.scipy.stats.norm.logpdf(batch.actions, jax.vmap(online.actor)(batch.observations), 1.0)
    np.testing.assert_allclose(loss, -log_prob.sum(-1).mean(), rtol=1e-5)
    assert metrics._fields[0] == "loss"
    assert is_zero(grads.critic) and is_zero(grads.value) and not is_zero(grads.actor)


def test_act_is_the_clipped_mean_and_metrics_are_scalars_with_loss_first(networks, getkey):
    online, target = networks
    s = 100.0 * jr.normal(getkey(), (B, OBS))
    actions = iql.AGENT.act(online, s)
    np.testing.assert_allclose(actions, jnp.clip(jax.vmap(online.actor)(s), -1, 1))
    assert float(jnp.max(jnp.abs(actions))) <= 1.0
    _, metrics = _loss(online, target, _batch(getkey()), getkey())
    assert metrics._fields[0] == "loss" and all(jnp.shape(m) == () for m in metrics)
    assert iql.AGENT.name == "iql" and iql.AGENT.config_type is iql.IQLConfig
    assert iql.AGENT.start_finetuning(online, target, CONFIG) == (online, target)


def test_q_approaches_r_over_one_minus_gamma_on_constant_reward_probe(getkey):
    # One state, reward 1, no terminals, gamma 0.5: Q(s, a) = V(s) = 1 / (1 - 0.5) = 2 for every a.
    config = dataclasses.replace(CONFIG, gamma=0.5, tau=0.2, learning_rate=3e-3)
    online, target = iql.AGENT.init(OBS, ACT, config, key=getkey())
    batch, key = _batch(getkey(), same_state=True, rewards=1.0), getkey()
    optim = optax.adam(config.learning_rate)

    @eqx.filter_jit
    def train(online, target):
        def step(carry, i):
            online, target, opt_state = carry
            grads = eqx.filter_grad(lambda o: _loss(o, target, batch, key, (i + 1) % 4 == 0, config)[0])(
                online
            )
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
                updates, opt_state = optim.update(grads, opt_state)
            online = eqx.apply_updates(online, updates)
            return (online, iql.AGENT.update_target(target, online, config), opt_state), None

        carry = (online, target, optim.init(eqx.filter(online, eqx.is_array)))
        (online, target, _), _ = jax.lax.scan(step, carry, jnp.arange(600))
        return online, target

    online, target = train(online, target)
    q = jax.vmap(online.critic)(batch.observations, batch.actions)
    np.testing.assert_allclose(q, 2.0, atol=0.05)
    np.testing.assert_allclose(iql.state_values(online.value, batch.observations), 2.0, atol=0.05)


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", 0.0),
        ("batch_size", 0),
        ("hidden_dims", ()),
        ("gamma", 1.0),
        ("tau", 1.5),
        ("actor_freq", 0),
        ("expectile", 0.4),
        ("alpha", -1.0),
        ("max_weight", 0.0),
        ("value_layer_norm", 1),
    ],
)
def test_iql_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"IQLConfig.{field}"):
        iql.IQLConfig(**{field: value})
