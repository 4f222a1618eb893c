"""Wrongly shaped or typed arguments fail at trace time with an error naming the argument."""

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from jaxtyping import TypeCheckError

import infom


OBS, ACT, LATENT, B = 3, 2, 4, 5


@pytest.fixture(scope="module")
def models():
    return infom.init_models(
        OBS, ACT, infom.NetworkConfig(hidden_dims=(8,), latent_dim=LATENT), key=jr.key(0)
    )


def test_batch_with_inconsistent_batch_size_names_the_field():
    with pytest.raises(TypeCheckError, match="rewards"):
        infom.Batch(
            jnp.zeros((B, OBS)),
            jnp.zeros((B, ACT)),
            jnp.zeros((B, OBS)),
            jnp.zeros((B, ACT)),
            jnp.zeros(B + 1),
            jnp.ones(B),
        )


def test_integer_observations_are_rejected_by_name():
    with pytest.raises(TypeCheckError, match="observations"):
        infom.Batch(
            jnp.zeros((B, OBS), dtype=jnp.int32),
            jnp.zeros((B, ACT)),
            jnp.zeros((B, OBS)),
            jnp.zeros((B, ACT)),
            jnp.zeros(B),
            jnp.ones(B),
        )


def test_encode_with_mismatched_leading_axes_names_next_actions(models):
    with pytest.raises(TypeCheckError, match="next_actions"):
        infom.encode(models.encoder, jnp.zeros((B, OBS)), jnp.zeros((B + 1, ACT)), key=jr.key(0))


def test_encoder_input_of_wrong_width_names_the_inputs(models):
    with pytest.raises(ValueError, match="next_observation"):
        infom.encode(models.encoder, jnp.zeros((B, OBS + 1)), jnp.zeros((B, ACT)), key=jr.key(0))


def test_kl_with_mismatched_latent_sizes_names_log_std():
    with pytest.raises(TypeCheckError, match="log_std"):
        infom.kl_to_prior(jnp.zeros((B, 4)), jnp.zeros((B, 3)))


def test_sample_future_with_wrong_action_width_names_action(models):
    with pytest.raises(ValueError, match="action"):
        infom.sample_future(
            models.field, jnp.zeros((B, OBS)), jnp.zeros((B, ACT + 1)), jnp.zeros((B, LATENT)), key=jr.key(0)
        )


def test_sample_future_with_non_float_intentions_names_intentions(models):
    with pytest.raises(TypeCheckError, match="intentions"):
        infom.sample_future(
            models.field,
            jnp.zeros((B, OBS)),
            jnp.zeros((B, ACT)),
            jnp.zeros((B, LATENT), dtype=jnp.int32),
            key=jr.key(0),
        )


def test_mc_q_with_missing_batch_axis_names_futures(models):
    with pytest.raises(TypeCheckError, match="futures"):
        infom.mc_q(models.reward, jnp.zeros((OBS,)), gamma=0.9)


def test_expectile_distill_with_wrong_target_batch_names_q_targets(models):
    with pytest.raises(TypeCheckError, match="q_targets"):
        infom.expectile_distill(models.critic, jnp.zeros((B, OBS)), jnp.zeros((B, ACT)), jnp.zeros(B + 1))


def test_reward_loss_with_wrong_observation_width_names_observation(models):
    with pytest.raises(ValueError, match="observation"):
        infom.reward_loss(models.reward, jnp.zeros((B, OBS + 2)), jnp.zeros(B))


def test_checks_happen_at_trace_time_under_jit(models):
    f = jax.jit(lambda m: infom.kl_to_prior(m, jnp.zeros((B, 3))))
    with pytest.raises(TypeCheckError, match="log_std"):
        f(jnp.zeros((B, 4)))
