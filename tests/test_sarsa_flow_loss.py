"""Properties of the pre-training objective `sarsa_flow_loss`."""

import equinox as eqx
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _trees import is_zero
from conftest import tree_allclose

import infom


OBS, ACT, LATENT, BATCH, STEPS = 3, 2, 4, 6, 10


def _models(seed=0):
    config = infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=LATENT)
    return infom.init_models(OBS, ACT, config, key=jr.key(seed))


@pytest.fixture(scope="module")
def models():
    return _models()


@pytest.fixture(scope="module")
def target_field():
    # A different set of parameters, so that field != target.
    return _models(seed=1).field


def _batch(key):
    k = jr.split(key, 4)
    return infom.Batch(
        observations=jr.normal(k[0], (BATCH, OBS)),
        actions=jr.uniform(k[1], (BATCH, ACT), minval=-1, maxval=1),
        next_observations=jr.normal(k[2], (BATCH, OBS)),
        next_actions=jr.uniform(k[3], (BATCH, ACT), minval=-1, maxval=1),
        rewards=jnp.zeros(BATCH),
        masks=jnp.ones(BATCH),
    )


@eqx.filter_jit
def _loss(field, encoder, target_field, batch, key, gamma, kl_weight):
    return infom.sarsa_flow_loss(
        field, encoder, target_field, batch, key=key, gamma=gamma, kl_weight=kl_weight
    )


@eqx.filter_jit
def _oracle_terms(field, encoder, target_field, batch, key, shared_noise=False):
    """The two flow-matching terms and the KL, written out independently of the library
    (with `shared_noise`, wrongly: the future term reuses the current term's noise)."""
    latent_key, time_key, current_key, future_key = jr.split(key, 4)
    s, a, s2, a2 = batch.observations, batch.actions, batch.next_observations, batch.next_actions
    mean, log_std = jax.vmap(encoder)(s2, a2)
    z = mean + jnp.exp(log_std) * jr.normal(latent_key, mean.shape)
    t = jr.uniform(time_key, (BATCH,))
    x0 = jr.normal(current_key, (BATCH, OBS))
    x0_future = x0 if shared_noise else jr.normal(future_key, (BATCH, OBS))
    v = jax.vmap(field)
    v_target = jax.vmap(target_field)
    x_t = t[:, None] * s + (1 - t[:, None]) * x0
    current = jnp.mean((v(t, x_t, s, a, z) - (s - x0)) ** 2, axis=-1)
    x = x0_future
    for k in range(STEPS):  # Euler on the grid k / STEPS
        x = x + v_target(jnp.full((BATCH,), k / STEPS), x, s2, a2, z) / STEPS
    x_t = t[:, None] * x + (1 - t[:, None]) * x0_future
    future = jnp.mean((v(t, x_t, s, a, z) - v_target(t, x_t, s2, a2, z)) ** 2, axis=-1)
    kl = jnp.mean(0.5 * jnp.sum(mean**2 + jnp.exp(2 * log_std) - 1 - 2 * log_std, axis=-1)) / LATENT
    return current, future, kl, (x0, x0_future)


# gamma < 1 after the float32 cast the test applies (0.99999999 would round to 1.0, which the loss refuses).
@hypothesis.given(gamma=st.floats(0.0, 0.999), kl_weight=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_loss_is_one_minus_gamma_current_plus_gamma_future_plus_weighted_kl(
    models, target_field, gamma, kl_weight, seed
):
    batch, key = _batch(jr.key(seed)), jr.key(seed + 1)
    loss, aux = _loss(
        models.field, models.encoder, target_field, batch, key, jnp.float32(gamma), jnp.float32(kl_weight)
    )
    current, future, kl, _ = _oracle_terms(models.field, models.encoder, target_field, batch, key)
    np.testing.assert_allclose(aux.current_loss, current.mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(aux.future_loss, future.mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(aux.kl, kl, rtol=1e-4, atol=1e-6)
    expected = (1 - gamma) * current.mean() + gamma * future.mean() + kl_weight * kl
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-6)


@hypothesis.given(seed=st.integers(0, 2**16))
def test_gamma_zero_is_plain_conditional_flow_matching_on_s(models, target_field, seed):
    """At `gamma = 0` (and no KL) the loss is `E || v(t, t s + (1 - t) x0, s, a, z) - (s - x0) ||^2`."""
    batch, key = _batch(jr.key(seed)), jr.key(seed + 1)
    zero = jnp.float32(0.0)
    loss, _ = _loss(models.field, models.encoder, target_field, batch, key, zero, zero)
    current, _, _, _ = _oracle_terms(models.field, models.encoder, target_field, batch, key)
    np.testing.assert_allclose(loss, current.mean(), rtol=1e-5)
    # ... and does not depend on the target field at all.
    other, _ = _loss(models.field, models.encoder, models.field, batch, key, zero, zero)
    np.testing.assert_allclose(loss, other, rtol=1e-6)


def test_the_two_noise_draws_differ(models, target_field, getkey):
    """The library's future term uses its own noise: it matches the oracle with two independent draws
    and not the one that reuses the current term's draw for the future term."""
    batch, key = _batch(getkey()), getkey()
    _, aux = _loss(models.field, models.encoder, target_field, batch, key, jnp.float32(0.9), jnp.float32(0.0))
    _, future, _, (x0, x0_future) = _oracle_terms(models.field, models.encoder, target_field, batch, key)
    _, future_shared, _, _ = _oracle_terms(
        models.field, models.encoder, target_field, batch, key, shared_noise=True
    )
    assert float(jnp.abs(jnp.corrcoef(x0.ravel(), x0_future.ravel())[0, 1])) < 0.5
    np.testing.assert_allclose(aux.future_loss, future.mean(), rtol=1e-4, atol=1e-6)
    gap = abs(float(future_shared.mean()) - float(future.mean()))
    assert abs(float(aux.future_loss) - float(future_shared.mean())) > 0.5 * gap > 0


def _field_ignoring_state_and_action(field):
    """Zero the first-layer columns that read `(s, a)`, so `v(t, x, s, a, z) = v(t, x, z)`."""
    cols = jnp.arange(field.weight_cond.shape[1]) < OBS + ACT
    return eqx.tree_at(lambda f: f.weight_cond, field, jnp.where(cols[None, :], 0.0, field.weight_cond))


@hypothesis.given(seed=st.integers(0, 2**16))
def test_future_term_vanishes_for_field_ignoring_s_a_that_equals_its_target(models, seed):
    field = _field_ignoring_state_and_action(models.field)
    _, aux = _loss(
        field,
        models.encoder,
        field,
        _batch(jr.key(seed)),
        jr.key(seed + 1),
        jnp.float32(0.9),
        jnp.float32(0.01),
    )
    assert float(aux.future_loss) == 0.0
    assert float(aux.current_loss) > 0.0


def _grads(models, target_field, batch, key, gamma=0.9, kl_weight=0.1, future_only=False, **options):
    """Gradients of the loss (or, with `future_only`, of its future term alone)."""

    def total(trainable):
        field, encoder, target = trainable
        loss, aux = infom.sarsa_flow_loss(
            field, encoder, target, batch, key=key, gamma=gamma, kl_weight=kl_weight, **options
        )
        return aux.future_loss if future_only else loss

    return eqx.filter_grad(total)((models.field, models.encoder, target_field))


def test_no_gradient_reaches_the_target_field(models, target_field, getkey):
    field_grad, encoder_grad, target_grad = _grads(models, target_field, _batch(getkey()), getkey())
    assert is_zero(target_grad)
    assert not is_zero(field_grad) and not is_zero(encoder_grad)


def test_no_gradient_flows_through_the_bootstrapped_sample(models, getkey):
    """Using the online field as its own target gives the same gradient as a frozen copy of it:
    no gradient path runs through the ODE sample or the target velocity."""
    batch, key = _batch(getkey()), getkey()
    frozen_copy = jax.tree.map(lambda x: jnp.array(x) if eqx.is_array(x) else x, models.field)

    def loss_wrt_field(field, target):
        return infom.sarsa_flow_loss(field, models.encoder, target, batch, key=key)[0]

    shared = eqx.filter_grad(lambda f: loss_wrt_field(f, f))(models.field)
    separate = eqx.filter_grad(lambda f: loss_wrt_field(f, frozen_copy))(models.field)
    assert tree_allclose(shared, separate, rtol=1e-6, atol=1e-8)


def test_encoder_learns_only_from_current_term_and_kl(models, target_field, getkey):
    """`z` is stop-gradient in the future term: that term alone gives the encoder no gradient."""
    _, encoder_grad, _ = _grads(models, target_field, _batch(getkey()), getkey(), future_only=True)
    assert is_zero(encoder_grad)
    _, encoder_grad, _ = _grads(models, target_field, _batch(getkey()), getkey(), gamma=0.5, kl_weight=0.0)
    assert not is_zero(encoder_grad)


def _identity(z):
    return z


def test_future_intention_with_gradient_changes_only_the_encoders_gradient(models, target_field, getkey):
    """With `future_intention=identity` the loss and the field's gradient are unchanged;
    the encoder also learns from the future term (nonzero gradient of that term alone)."""
    batch, key = _batch(getkey()), getkey()
    loss_off, aux_off = infom.sarsa_flow_loss(models.field, models.encoder, target_field, batch, key=key)
    loss_on, aux_on = infom.sarsa_flow_loss(
        models.field, models.encoder, target_field, batch, key=key, future_intention=_identity
    )
    assert float(loss_off) == float(loss_on) and aux_off == aux_on
    off = _grads(models, target_field, batch, key)
    on = _grads(models, target_field, batch, key, future_intention=_identity)
    assert tree_allclose(off[0], on[0], rtol=1e-6, atol=1e-8)
    assert not tree_allclose(off[1], on[1], rtol=1e-3, atol=1e-6)
    _, encoder_grad, target_grad = _grads(
        models, target_field, batch, key, future_only=True, future_intention=_identity
    )
    assert not is_zero(encoder_grad) and is_zero(target_grad)


def test_td2_form_differs_only_in_the_future_term(models, target_field, getkey):
    batch, key = _batch(getkey()), getkey()
    _, infom_aux = infom.sarsa_flow_loss(models.field, models.encoder, target_field, batch, key=key)
    _, td2_aux = infom.sarsa_flow_loss(
        models.field, models.encoder, target_field, batch, key=key, target_form="td2"
    )
    assert float(infom_aux.current_loss) == float(td2_aux.current_loss)
    assert float(infom_aux.kl) == float(td2_aux.kl)
    assert float(infom_aux.future_loss) != float(td2_aux.future_loss)


def test_td2_evaluates_the_target_at_its_own_ode_point(getkey):
    """For a constant target field `c`, psi_t(x0') = x0' + t c, and the straight-line point
    `t x~_1 + (1 - t) x0'` coincides with it: both forms give the same future term."""
    from _fields import ConstantField

    models = _models()
    c = jnp.array([0.5, -1.0, 2.0])
    batch, key = _batch(getkey()), getkey()
    a = infom.sarsa_flow_loss(models.field, models.encoder, ConstantField(c), batch, key=key)[1]
    b = infom.sarsa_flow_loss(
        models.field, models.encoder, ConstantField(c), batch, key=key, target_form="td2"
    )[1]
    np.testing.assert_allclose(a.future_loss, b.future_loss, rtol=1e-5)


def test_unknown_target_form_is_rejected(models, target_field, getkey):
    with pytest.raises(TypeError, match=r"sarsa_flow_loss: `target_form` got str; expected Literal"):
        infom.sarsa_flow_loss(
            models.field, models.encoder, target_field, _batch(getkey()), key=getkey(), target_form="x"
        )


def test_loss_is_jittable_and_vmappable_over_kl_weight(models, target_field, getkey):
    batch, key = _batch(getkey()), getkey()
    weights = jnp.array([0.0, 0.1, 1.0])
    losses = jax.vmap(lambda w: _loss(models.field, models.encoder, target_field, batch, key, 0.99, w)[0])(
        weights
    )
    kl = _loss(models.field, models.encoder, target_field, batch, key, 0.99, 0.0)[1].kl
    np.testing.assert_allclose(losses - losses[0], weights * kl, rtol=1e-4, atol=1e-6)


def test_the_default_context_is_the_next_pair(models, target_field, getkey):
    """`context=None` encodes `(s', a')`: passing that pair explicitly gives the same loss and
    gradients; another pair changes only what the encoder sees."""
    batch, key = _batch(getkey()), getkey()
    default = infom.sarsa_flow_loss(models.field, models.encoder, target_field, batch, key=key)
    explicit = infom.sarsa_flow_loss(
        models.field,
        models.encoder,
        target_field,
        batch,
        key=key,
        context=(batch.next_observations, batch.next_actions),
    )
    assert float(default[0]) == float(explicit[0]) and default[1] == explicit[1]
    other = infom.sarsa_flow_loss(
        models.field,
        models.encoder,
        target_field,
        batch,
        key=key,
        context=(batch.observations, batch.actions),
    )
    assert float(other[1].kl) != float(default[1].kl)
