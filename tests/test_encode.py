"""`encode` (reparameterised intentions) and `kl_to_prior`."""

import equinox as eqx
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import infom


OBS, ACT, LATENT = 3, 2, 4


@pytest.fixture(scope="module")
def encoder():
    config = infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=LATENT)
    return infom.init_models(OBS, ACT, config, key=jr.key(0)).encoder


def test_encode_is_mean_plus_std_times_standard_normal(encoder, getkey):
    s2, a2 = jr.normal(getkey(), (7, OBS)), jr.normal(getkey(), (7, ACT))
    key = getkey()
    intention = infom.encode(encoder, s2, a2, key=key)
    mean, log_std = jax.vmap(encoder)(s2, a2)
    np.testing.assert_allclose(intention.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(intention.log_std, log_std, rtol=1e-6)
    eps = jr.normal(key, (7, LATENT))
    np.testing.assert_allclose(intention.sample, mean + jnp.exp(log_std) * eps, rtol=1e-5, atol=1e-6)


def test_encode_accepts_extra_leading_axes(encoder, getkey):
    s2, a2 = jr.normal(getkey(), (2, 3, OBS)), jr.normal(getkey(), (2, 3, ACT))
    intention = infom.encode(encoder, s2, a2, key=getkey())
    assert intention.sample.shape == intention.mean.shape == (2, 3, LATENT)
    np.testing.assert_allclose(intention.mean[1, 2], encoder(s2[1, 2], a2[1, 2])[0], rtol=1e-5, atol=1e-6)


def test_reparameterised_sample_carries_gradient_into_the_encoder(encoder, getkey):
    s2, a2, key = jr.normal(getkey(), (5, OBS)), jr.normal(getkey(), (5, ACT)), getkey()
    grads = eqx.filter_grad(lambda e: jnp.sum(infom.encode(e, s2, a2, key=key).sample ** 2))(encoder)
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(eqx.filter(grads.log_std_head, eqx.is_array)))


_vectors = hnp.arrays(np.float32, (LATENT,), elements=st.floats(-3, 3, width=32))


@hypothesis.given(mean=_vectors, log_std=_vectors)
def test_kl_to_prior_is_nonnegative(mean, log_std):
    assert float(infom.kl_to_prior(jnp.asarray(mean), jnp.asarray(log_std))) >= -1e-6


@hypothesis.given(mean=_vectors, log_std=_vectors)
def test_kl_to_prior_is_zero_iff_standard_normal(mean, log_std):
    kl = float(infom.kl_to_prior(jnp.asarray(mean), jnp.asarray(log_std)))
    is_standard = np.allclose(mean, 0) and np.allclose(log_std, 0)
    assert (kl < 1e-6) == is_standard or (
        kl < 1e-4 and np.abs(mean).max() < 1e-2 and np.abs(log_std).max() < 1e-2
    )
    assert float(infom.kl_to_prior(jnp.zeros(LATENT), jnp.zeros(LATENT))) == 0.0


@hypothesis.given(
    mean=_vectors, log_std=hnp.arrays(np.float32, (LATENT,), elements=st.floats(-1, 1, width=32))
)
def test_kl_to_prior_matches_closed_form_per_dimension(mean, log_std):
    """KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2, summed over dimensions."""
    s = np.exp(log_std.astype(np.float64))
    want = np.sum(-np.log(s) + (s**2 + mean.astype(np.float64) ** 2) / 2 - 0.5)
    got = float(infom.kl_to_prior(jnp.asarray(mean), jnp.asarray(log_std)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_kl_to_prior_matches_monte_carlo_estimate(getkey):
    mean, log_std = jnp.array([0.5, -1.0]), jnp.array([-0.3, 0.4])
    z = mean[None] + jnp.exp(log_std)[None] * jr.normal(getkey(), (200_000, 2))
    log_q = jnp.sum(-0.5 * ((z - mean[None]) / jnp.exp(log_std)[None]) ** 2 - log_std[None], axis=-1)
    log_p = jnp.sum(-0.5 * z**2, axis=-1)
    np.testing.assert_allclose(infom.kl_to_prior(mean, log_std), jnp.mean(log_q - log_p), rtol=0.02)
