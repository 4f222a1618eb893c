"""Wrongly shaped or typed arguments fail at trace time with a short error naming the argument;
out-of-range hyper-parameters fail with a `ValueError` (or, traced, an `eqx.error_if`) naming it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import tree_allclose
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


def test_an_unknown_choice_names_the_argument(models):
    """Literal choices are checked by the annotation before the function runs: no branch inside it."""
    with pytest.raises(TypeCheckError, match="target_form"):
        infom.sarsa_flow_loss(
            models.field, models.encoder, models.field, _batch(), key=jr.key(0), target_form="td3"
        )
    with pytest.raises(TypeCheckError, match="kind"):
        infom.fit_normalizer(np.zeros((4, OBS), np.float32), kind="minmax")


# --------------------------------------------------------------------------- hyper-parameter ranges


def _batch(size=B):
    return infom.Batch(
        jnp.zeros((size, OBS)),
        jnp.zeros((size, ACT)),
        jnp.zeros((size, OBS)),
        jnp.zeros((size, ACT)),
        jnp.zeros(size),
        jnp.ones(size),
    )


_S, _A, _Z = jnp.zeros((B, OBS)), jnp.zeros((B, ACT)), jnp.zeros((B, LATENT))
_first = lambda s: s[0]

# A call of each public function on tiny valid inputs, taking its hyper-parameters as keywords.
_CALLS = {
    "mc_q": lambda m, **kw: infom.mc_q(_first, jnp.ones((2, B, OBS)), **kw),
    "sarsa_flow_loss": lambda m, **kw: infom.sarsa_flow_loss(
        m.field, m.encoder, m.field, _batch(), key=jr.key(0), **kw
    ),
    "expectile_distill": lambda m, **kw: infom.expectile_distill(m.critic, _S, _A, jnp.zeros(B), **kw),
    "expectile_loss": lambda m, **kw: infom.expectile_loss(jnp.zeros(B), **kw),
    "actor_loss": lambda m, **kw: infom.actor_loss(m.actor, infom.min_q(m.critic), _S, _A, **kw),
    "ema_update": lambda m, **kw: infom.ema_update(m.field, m.field, **kw),
    "solve_flow": lambda m, **kw: infom.solve_flow(m.field, _S, _S, _A, _Z, **kw),
    "sample_future": lambda m, **kw: infom.sample_future(m.field, _S, _A, _Z, key=jr.key(0), **kw),
}

_OUT_OF_RANGE = [
    ("mc_q", "gamma", 1.0),
    ("mc_q", "gamma", 1.5),
    ("mc_q", "gamma", -0.1),
    ("sarsa_flow_loss", "gamma", 1.0),
    ("sarsa_flow_loss", "gamma", 1.5),
    ("sarsa_flow_loss", "kl_weight", -0.01),
    ("sarsa_flow_loss", "num_flow_steps", 0),
    ("expectile_distill", "expectile", 1.5),
    ("expectile_distill", "expectile", 0.2),
    ("expectile_loss", "expectile", 1.5),
    ("expectile_loss", "expectile", 0.2),
    ("expectile_loss", "expectile", 1.0),
    ("actor_loss", "alpha", -1.0),
    ("ema_update", "tau", 1.5),
    ("ema_update", "tau", -0.5),
    ("solve_flow", "num_steps", 0),
    ("sample_future", "num_steps", 0),
]


@pytest.mark.parametrize("function, argument, value", _OUT_OF_RANGE)
def test_out_of_range_hyperparameter_raises_naming_the_function_and_argument(
    models, function, argument, value
):
    with pytest.raises(ValueError, match=rf"^{function}: {argument} must .*, got {value}$") as error:
        _CALLS[function](models, **{argument: value})
    assert len(str(error.value)) < 400


def test_positional_hyperparameters_are_checked_too(models):
    with pytest.raises(ValueError, match=r"^ema_update: tau must lie in \[0.0, 1.0\], got 1.5$"):
        infom.ema_update(models.field, models.field, 1.5)
    with pytest.raises(ValueError, match=r"^expectile_loss: expectile must lie in \[0.5, 1.0\), got 0.2$"):
        infom.expectile_loss(jnp.zeros(B), np.float32(0.2))


@pytest.mark.parametrize(
    "function, argument, value",
    [
        ("mc_q", "gamma", 1.0),
        ("expectile_distill", "expectile", 0.2),
        ("expectile_loss", "expectile", 1.5),
        ("actor_loss", "alpha", -1.0),
        ("ema_update", "tau", 1.5),
    ],
)
def test_traced_out_of_range_hyperparameter_raises_when_the_jitted_call_runs(
    models, function, argument, value
):
    f = eqx.filter_jit(lambda v: _CALLS[function](models, **{argument: v}))
    with pytest.raises(eqx.EquinoxRuntimeError, match=f"{function}: {argument} must"):
        jax.block_until_ready(f(jnp.float32(value)))


def test_vmap_over_kl_weight_with_a_negative_value_raises(models):
    f = eqx.filter_jit(
        jax.vmap(
            lambda w: infom.sarsa_flow_loss(
                models.field, models.encoder, models.field, _batch(), key=jr.key(0), kl_weight=w
            )[0]
        )
    )
    assert f(jnp.array([0.0, 0.5])).shape == (2,)
    with pytest.raises(eqx.EquinoxRuntimeError, match="sarsa_flow_loss: kl_weight must be non-negative"):
        jax.block_until_ready(f(jnp.array([0.5, -0.5])))


def test_valid_hyperparameters_give_the_direct_computation(models):
    futures = jr.normal(jr.key(1), (2, B, OBS))
    np.testing.assert_allclose(
        infom.mc_q(_first, futures, gamma=0.0), futures[..., 0].mean(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        infom.mc_q(_first, futures, gamma=0.75), futures[..., 0].mean(axis=0) / 0.25, rtol=1e-6
    )
    traced = jax.jit(lambda g: infom.mc_q(_first, futures, gamma=g))(jnp.float32(0.75))
    np.testing.assert_allclose(traced, futures[..., 0].mean(axis=0) / 0.25, rtol=1e-6)
    diff = jnp.array([-2.0, 0.0, 3.0])
    for mu in (0.5, 0.9):
        want = jnp.where(diff < 0, 1.0 - mu, mu) * diff**2
        np.testing.assert_allclose(infom.expectile_loss(diff, mu), want, rtol=1e-6)
    online = jax.tree.map(lambda x: x + 1.0 if eqx.is_inexact_array(x) else x, models.field)
    assert tree_allclose(infom.ema_update(models.field, online, 1.0), online, rtol=0, atol=0)
    assert tree_allclose(infom.ema_update(models.field, online, 0.0), models.field, rtol=0, atol=0)


# --------------------------------------------------------------------------- NumPy inputs, short errors


def test_numpy_float32_arrays_give_the_same_results_as_jax_arrays(models):
    rng = np.random.default_rng(0)
    s, a = rng.normal(size=(B, OBS)).astype(np.float32), rng.normal(size=(B, ACT)).astype(np.float32)
    futures, targets = rng.normal(size=(2, B, OBS)).astype(np.float32), rng.normal(size=B).astype(np.float32)
    key = jr.key(0)
    assert tree_allclose(
        infom.encode(models.encoder, s, a, key=key),
        infom.encode(models.encoder, jnp.asarray(s), jnp.asarray(a), key=key),
    )
    np.testing.assert_allclose(
        infom.mc_q(_first, futures, gamma=0.5), infom.mc_q(_first, jnp.asarray(futures), gamma=0.5)
    )
    np.testing.assert_allclose(
        infom.expectile_distill(models.critic, s, a, targets)[0],
        infom.expectile_distill(models.critic, jnp.asarray(s), jnp.asarray(a), jnp.asarray(targets))[0],
    )
    np.testing.assert_allclose(
        infom.bc_loss(models.actor, s, a)[0], infom.bc_loss(models.actor, jnp.asarray(s), jnp.asarray(a))[0]
    )
    np.testing.assert_allclose(infom.kl_to_prior(s, s), infom.kl_to_prior(jnp.asarray(s), jnp.asarray(s)))


@pytest.mark.parametrize("wrong", ["observations", "actions", "q_targets"])
def test_the_one_argument_with_a_different_batch_size_is_named(models, wrong):
    args = {"observations": jnp.zeros((B, OBS)), "actions": jnp.zeros((B, ACT)), "q_targets": jnp.zeros(B)}
    args[wrong] = jnp.zeros((B + 1,) + args[wrong].shape[1:])
    with pytest.raises(TypeCheckError) as error:
        infom.expectile_distill(models.critic, **args)
    message = str(error.value)
    assert message.startswith(f"expectile_distill: `{wrong}` (shape ")
    assert f"has batch={B + 1}, but" in message and f"have batch={B}" in message
    assert len(message) < 400


def test_sample_future_names_the_conditioning_input_with_a_different_batch_size(models):
    with pytest.raises(
        TypeCheckError, match=r"^sample_future: `actions` \(shape \(6, 2\)\) has \*batch=\(6,\)"
    ) as error:
        infom.sample_future(
            models.field, jnp.zeros((B, OBS)), jnp.zeros((B + 1, ACT)), jnp.zeros((B, LATENT)), key=jr.key(0)
        )
    assert len(str(error.value)) < 400


def test_encode_with_two_disagreeing_arguments_names_both(models):
    with pytest.raises(TypeCheckError) as error:
        infom.encode(models.encoder, jnp.zeros((B, OBS)), jnp.zeros((B + 1, ACT)), key=jr.key(0))
    message = str(error.value)
    assert message.startswith("encode: arguments disagree on *batch")
    assert "`next_observations`" in message and "`next_actions`" in message and len(message) < 400


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda m: infom.bc_loss(m.actor, jnp.zeros((B, OBS), dtype=jnp.int32), jnp.zeros((B, ACT))),
            r"^bc_loss: `observations` got int32 array of shape \(5, 3\); "
            r"expected Float\[Array, 'batch obs_dim'\]$",
        ),
        (
            lambda m: infom.reward_loss(m.reward, jnp.zeros((B, OBS)), jnp.zeros((B, 1))),
            r"^reward_loss: `rewards` got float32 array of shape \(5, 1\); expected Float\[Array, 'batch'\]$",
        ),
        (
            lambda m: infom.standard_gpi(jnp.float32(1.0)),
            r"^standard_gpi: `q_values` got float32 array of shape \(\); expected Float",
        ),
        (
            lambda m: infom.mc_q(_first, jnp.zeros((OBS,)), gamma=0.9),
            r"^mc_q: `futures` got float32 array of shape \(3,\); expected Float",
        ),
        (
            lambda m: infom.kl_to_prior(jnp.zeros((B, 4)), jnp.zeros((B, 3))),
            r"^kl_to_prior: arguments disagree on latent_dim: `mean` \(shape \(5, 4\)\) has latent_dim=4",
        ),
    ],
)
def test_type_errors_are_short_and_name_the_argument(models, call, match):
    with pytest.raises(TypeCheckError, match=match) as error:
        call(models)
    assert len(str(error.value)) < 400
