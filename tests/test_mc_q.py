"""Properties of the Monte-Carlo Q estimate `mc_q` and `standard_gpi`."""

import hypothesis
import hypothesis.strategies as st
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import infom


OBS = 3


@hypothesis.given(r=st.floats(-10, 10), gamma=st.floats(0.0, 0.995), seed=st.integers(0, 2**16))
def test_mc_q_is_reward_over_one_minus_gamma_for_constant_reward(r, gamma, seed):
    futures = jr.normal(jr.key(seed), (16, 5, OBS))
    q = infom.mc_q(lambda s: jnp.float32(r), futures, gamma=gamma)
    assert q.shape == (5,)
    np.testing.assert_allclose(q, np.full(5, r / (1 - gamma)), rtol=1e-4, atol=1e-5)


@hypothesis.given(
    alpha=st.floats(-3, 3), beta=st.floats(-3, 3), gamma=st.floats(0.0, 0.99), seed=st.integers(0, 2**16)
)
def test_mc_q_is_affine_in_the_reward(alpha, beta, gamma, seed):
    """`mc_q(alpha r + beta) = alpha mc_q(r) + beta / (1 - gamma)`."""
    futures = jr.normal(jr.key(seed), (2, 8, 4, OBS))
    reward = lambda s: jnp.sum(jnp.sin(s))
    lhs = infom.mc_q(lambda s: alpha * reward(s) + beta, futures, gamma=gamma)
    rhs = alpha * infom.mc_q(reward, futures, gamma=gamma) + beta / (1 - gamma)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


def test_mc_q_averages_over_the_futures_axis_for_each_intention(getkey):
    futures = jr.normal(getkey(), (3, 16, 4, OBS))  # [intentions, futures, batch, obs]
    reward = lambda s: s[0]
    q = infom.mc_q(reward, futures, gamma=0.9)
    assert q.shape == (3, 4)
    np.testing.assert_allclose(q, futures[..., 0].mean(axis=1) / (1 - 0.9), rtol=1e-5)


def test_mc_q_with_a_reward_model(getkey):
    model = infom.RewardModel(OBS, (8,), key=getkey())
    futures = jr.normal(getkey(), (16, 4, OBS))
    q = infom.mc_q(model, futures, gamma=0.5)
    want = np.mean([[float(model(futures[i, b])) for b in range(4)] for i in range(16)], axis=0) * 2
    np.testing.assert_allclose(q, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4,), (4, 3)])
def test_standard_gpi_is_the_max_over_intentions(shape, getkey):
    q = jr.normal(getkey(), shape)
    np.testing.assert_array_equal(infom.standard_gpi(q), q.max(axis=0))
