"""Reward, behaviour-cloning and actor losses; target-network EMA and reset."""

import equinox as eqx
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import tree_allclose

import infom


OBS, ACT, B = 3, 2, 6


@pytest.fixture(scope="module")
def models():
    return infom.init_models(OBS, ACT, infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=4), key=jr.key(0))


def test_reward_loss_is_mean_squared_error(models, getkey):
    s, r = jr.normal(getkey(), (B, OBS)), jr.normal(getkey(), (B,))
    loss, aux = infom.reward_loss(models.reward, s, r)
    np.testing.assert_allclose(loss, jnp.mean((jax.vmap(models.reward)(s) - r) ** 2), rtol=1e-6)
    np.testing.assert_allclose(aux.target_mean, r.mean(), rtol=1e-6)


def test_gaussian_log_prob_matches_closed_form(getkey):
    mean, a = jr.normal(getkey(), (B, ACT)), jr.normal(getkey(), (B, ACT))
    want = jax.scipy.stats.norm.logpdf(a, mean, 1.0).sum(-1)
    np.testing.assert_allclose(infom.gaussian_log_prob(mean, a), want, rtol=1e-5)


def test_bc_loss_is_negative_mean_log_likelihood(models, getkey):
    s, a = jr.normal(getkey(), (B, OBS)), jr.uniform(getkey(), (B, ACT), minval=-1, maxval=1)
    loss, _ = infom.bc_loss(models.actor, s, a)
    np.testing.assert_allclose(loss, -infom.gaussian_log_prob(jax.vmap(models.actor)(s), a).mean(), rtol=1e-6)


@hypothesis.given(alpha=st.floats(0.0, 100.0))
def test_actor_loss_is_minus_q_of_clipped_mean_plus_alpha_bc(models, alpha):
    s = jr.normal(jr.key(1), (B, OBS))
    a = jr.uniform(jr.key(2), (B, ACT), minval=-1, maxval=1)
    q_fn = infom.min_q(models.critic)
    loss, aux = infom.actor_loss(models.actor, q_fn, s, a, alpha=alpha)
    means = jax.vmap(models.actor)(s)
    q = jnp.min(jax.vmap(models.critic)(s, jnp.clip(means, -1, 1)), axis=-1)
    bc = -infom.gaussian_log_prob(means, a).mean()
    np.testing.assert_allclose(loss, -q.mean() + alpha * bc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(aux.q_mean, q.mean(), rtol=1e-5, atol=1e-6)


def test_actor_loss_gives_no_gradient_to_the_critic(models, getkey):
    s, a = jr.normal(getkey(), (B, OBS)), jr.uniform(getkey(), (B, ACT), minval=-1, maxval=1)

    def loss(both):
        actor, critic = both
        return infom.actor_loss(actor, infom.min_q(critic), s, a, alpha=1.0)[0]

    actor_grad, critic_grad = eqx.filter_grad(loss)((models.actor, models.critic))
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(critic_grad))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(actor_grad))


@hypothesis.given(tau=st.floats(0.0, 1.0), tau2=st.floats(0.0, 1.0))
def test_ema_update_is_convex_combination(models, tau, tau2):
    """Every parameter moves from the target towards the online one and stays between them, and two
    updates towards the same online parameters compose into one with `1 - (1 - tau)(1 - tau2)`."""
    target = infom.init_models(
        OBS, ACT, infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=4), key=jr.key(9)
    ).field
    online = models.field
    new = infom.ema_update(target, online, tau)
    for t, o, n in zip(
        *(jax.tree.leaves(eqx.filter(x, eqx.is_array)) for x in (target, online, new)), strict=True
    ):
        assert n.shape == t.shape and n.dtype == t.dtype
        slack = 1e-6 * (1 + jnp.abs(o) + jnp.abs(t))
        assert bool(jnp.all(n >= jnp.minimum(t, o) - slack)) and bool(jnp.all(n <= jnp.maximum(t, o) + slack))
    twice = infom.ema_update(new, online, tau2)
    once = infom.ema_update(target, online, 1 - (1 - tau) * (1 - tau2))
    assert tree_allclose(twice, once, rtol=1e-5, atol=1e-6)


def test_ema_update_endpoints_and_reset(models):
    target = infom.init_models(
        OBS, ACT, infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=4), key=jr.key(9)
    ).field
    assert tree_allclose(infom.ema_update(target, models.field, 0.0), target, rtol=0, atol=0)
    assert tree_allclose(infom.ema_update(target, models.field, 1.0), models.field, rtol=0, atol=0)
    reset = infom.reset_target(models.field)
    assert tree_allclose(reset, models.field, rtol=0, atol=0)
