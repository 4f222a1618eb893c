"""`intention_usage`: how much a model's futures and Monte-Carlo Q depend on the intention `z`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _fields import GaussianField

import infom


OBS = 3
BATCH = 256


class DriftField(infom.AbstractVectorField):
    """`v(t, x, s, a, z) = c z` (obs_dim = latent_dim): the flow maps `x_0` to `x_0 + c z`."""

    c: float

    def condition(self, observation, action, intention):
        return self.c * intention

    def velocity(self, t, x, conditioning):
        return conditioning


def _batch(key):
    s_key, a_key = jr.split(key)
    s = jr.normal(s_key, (BATCH, OBS))
    a = jr.normal(a_key, (BATCH, 2))
    return infom.Batch(s, a, s, a, jnp.zeros(BATCH), jnp.ones(BATCH))


@pytest.fixture(scope="module")
def encoder():
    return infom.init_models(
        OBS, 2, infom.NetworkConfig(hidden_dims=(8,), latent_dim=OBS), key=jr.key(0)
    ).encoder


def _reward(s):
    return jnp.sum(s)


def test_a_field_that_ignores_the_intention_reads_exactly_zero(encoder):
    usage = infom.intention_usage(
        GaussianField(0.5), encoder, _batch(jr.key(1)), key=jr.key(2), reward_fn=_reward, gamma=0.9
    )
    assert float(usage.future_shift) == 0.0 and float(usage.q_shift) == 0.0
    assert usage.kl_per_dim.shape == (OBS,) and bool(jnp.all(usage.kl_per_dim > 0))


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_future_shift_is_c_squared_and_q_shift_c_sqrt_n_for_a_drift_of_c_z(encoder, c):
    """With `psi(x_0) = x_0 + c z`, `Var_z psi / Var_x0 psi = c^2` and, for `r(s) = sum_j s_j`,
    `std_z Q_hat / se(Q_hat) = c sqrt(N)` (up to the Monte-Carlo error of the estimate)."""
    num_futures = 8
    usage = jax.jit(
        lambda key: infom.intention_usage(
            DriftField(c),
            encoder,
            _batch(jr.key(1)),
            key=key,
            num_intentions=8,
            num_futures=num_futures,
            reward_fn=_reward,
            gamma=0.9,
        )
    )(jr.key(3))
    np.testing.assert_allclose(float(usage.future_shift), c**2, rtol=0.1)
    # E std_k is below sqrt(E var_k) by a factor c4(8) ~ 0.965, and likewise for the standard error.
    np.testing.assert_allclose(float(usage.q_shift), c * np.sqrt(num_futures), rtol=0.12)


def test_kl_per_dimension_is_zero_for_a_posterior_equal_to_the_prior():
    """An encoder whose posterior is `N(0, I)` everywhere uses no latent dimension."""
    models = infom.init_models(OBS, 2, infom.NetworkConfig(hidden_dims=(8,), latent_dim=4), key=jr.key(0))
    prior_encoder = jax.tree.map(lambda x: jnp.zeros_like(x) if eqx.is_array(x) else x, models.encoder)
    usage = infom.intention_usage(GaussianField(0.5), prior_encoder, _batch(jr.key(1)), key=jr.key(2))
    assert usage.q_shift is None
    np.testing.assert_array_equal(np.asarray(usage.kl_per_dim), np.zeros(4))


@pytest.mark.parametrize("argument, value", [("num_intentions", 1), ("num_futures", 1), ("gamma", 1.0)])
def test_out_of_range_sizes_are_refused_by_name(encoder, argument, value):
    with pytest.raises(ValueError, match=f"intention_usage: {argument} must"):
        infom.intention_usage(
            GaussianField(0.5), encoder, _batch(jr.key(1)), key=jr.key(2), **{argument: value}
        )
