"""The DINO + ReBRAC baseline (`infom.agents.dino_rebrac`): the distillation loss's optimum, centring's
invariance and what it prevents (a collapsed teacher), gradient flow and the phase change."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _trees import is_zero

import infom
from infom._types import Batch
from infom.agents import dino_rebrac, rebrac


OBS, ACT, B = 3, 2, 8
CONFIG = dino_rebrac.DINOReBRACConfig(hidden_dims=(16, 16), encoder_dims=(16, 8), batch_size=B)


def _batch(key, rewards=None):
    s_key, a_key, next_s_key, next_a_key, r_key = jr.split(key, 5)
    return Batch(
        observations=jr.normal(s_key, (B, OBS)),
        actions=jr.uniform(a_key, (B, ACT), minval=-0.9, maxval=0.9),
        next_observations=jr.normal(next_s_key, (B, OBS)),
        next_actions=jr.uniform(next_a_key, (B, ACT), minval=-0.9, maxval=0.9),
        rewards=jr.normal(r_key, (B,)) if rewards is None else rewards,
        masks=jnp.ones((B,)),
    )


@eqx.filter_jit
def _grads(loss_fn, online, target, batch, update_actor):
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: loss_fn(o, target, batch, key=jr.key(1), config=CONFIG, update_actor=update_actor),
        has_aux=True,
    )(online)
    return loss, metrics, grads


@pytest.fixture(scope="module")
def networks():
    return eqx.filter_jit(dino_rebrac.AGENT.init)(OBS, ACT, CONFIG, key=jr.key(0))


# --------------------------------------------------------------------------- the distillation loss


def test_dino_loss_is_minimised_by_a_student_equal_to_the_centred_sharpened_teacher(getkey):
    teacher, center = jr.normal(getkey(), (5, 6)), jr.normal(getkey(), (6,))
    log_p = jax.nn.log_softmax((teacher - center[None]) / 0.5, axis=-1)
    optimum = 0.1 * (log_p + jnp.broadcast_to(jr.normal(getkey(), (5, 1)), (5, 6)))  # log p + a row constant

    @jax.jit
    def loss_and_grad(student):
        return jax.value_and_grad(
            lambda x: dino_rebrac.dino_loss(x, teacher, center, student_temp=0.1, teacher_temp=0.5)
        )(student)

    loss, grad = loss_and_grad(optimum)
    np.testing.assert_allclose(grad, 0.0, atol=1e-5)
    entropy = -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))  # the cross-entropy's floor
    np.testing.assert_allclose(loss, entropy, rtol=1e-4, atol=1e-5)
    assert float(loss_and_grad(optimum + 0.05 * jr.normal(getkey(), optimum.shape))[0]) > float(loss) + 1e-5


def test_centring_makes_the_targets_blind_to_a_vector_added_to_every_teacher_output(getkey):
    student, teacher = jr.normal(getkey(), (2, 5, 6)), jr.normal(getkey(), (2, 5, 6))
    shift = 10.0 * jr.normal(getkey(), (6,))

    @jax.jit
    def losses(teacher):
        center = dino_rebrac.batch_center(teacher)
        centred = jax.vmap(
            lambda s, t: dino_rebrac.dino_loss(s, t, center, student_temp=0.1, teacher_temp=0.04)
        )(student, teacher)
        raw = jax.vmap(
            lambda s, t: dino_rebrac.dino_loss(s, t, jnp.zeros(6), student_temp=0.1, teacher_temp=0.04)
        )(student, teacher)
        return centred, raw

    centred, raw = losses(teacher)
    moved_centred, moved_raw = losses(teacher + shift[None, None])
    np.testing.assert_allclose(moved_centred, centred, rtol=1e-4)
    assert not np.allclose(moved_raw, raw, rtol=1e-2)  # without the centre the shift changes the targets


def test_centring_undoes_a_teacher_collapsed_onto_one_dimension(getkey):
    """A collapsed teacher, whose every output is dominated by one shared dimension k, gives targets
    that all point at k without the centre; with the batch centre its targets are those of the
    teacher without the shared part, spread over the dimensions."""
    spread = 3.0 * jr.normal(getkey(), (64, 8))
    collapsed = spread + 50.0 * jax.nn.one_hot(3, 8)[None]

    @jax.jit
    def mean_targets(teacher, center):
        return jnp.mean(jax.nn.softmax((teacher - center[None]) / 0.04, axis=-1), axis=0)

    uncentred = mean_targets(collapsed, jnp.zeros(8))
    centred = mean_targets(collapsed, dino_rebrac.batch_center(collapsed))
    assert float(uncentred[3]) > 0.99
    np.testing.assert_allclose(centred, mean_targets(spread, dino_rebrac.batch_center(spread)), atol=1e-5)
    assert float(jnp.max(centred)) < 0.5 and int(jnp.sum(centred > 0.02)) >= 4


# --------------------------------------------------------------------------- losses and gradients


def test_pretraining_trains_the_encoder_by_distillation_and_the_actor_by_cloning_only(networks, getkey):
    online, target = networks
    batch = _batch(getkey(), rewards=jnp.full((B,), jnp.nan))
    loss, metrics, grads = _grads(dino_rebrac.pretrain_loss, online, target, batch, jnp.asarray(False))
    assert bool(jnp.isfinite(loss)) and all(jnp.shape(m) == () for m in metrics)
    np.testing.assert_allclose(loss, metrics.dino_loss + metrics.bc_loss, rtol=1e-6)
    assert not is_zero(grads.encoder) and not is_zero(grads.policy.actor)
    assert is_zero(grads.policy.critic)
    # The encoder's gradient is the distillation's alone: BC reads sg[E(s)].
    no_bc = eqx.tree_at(lambda n: n.policy.actor, online, jax.tree.map(jnp.zeros_like, online.policy.actor))
    _, _, no_bc_grads = _grads(dino_rebrac.pretrain_loss, no_bc, target, batch, jnp.asarray(False))
    assert bool(eqx.tree_equal(no_bc_grads.encoder, grads.encoder, rtol=1e-5, atol=1e-7))
    assert 0.0 < float(metrics.teacher_entropy) <= np.log(CONFIG.encoder_dims[-1]) + 1e-5


def test_finetuning_is_rebrac_on_the_frozen_representation(networks, getkey):
    online, target = networks
    batch = _batch(getkey())
    loss, metrics, grads = _grads(dino_rebrac.finetune_loss, online, target, batch, jnp.asarray(True))
    assert bool(jnp.isfinite(loss)) and isinstance(metrics, rebrac.ReBRACMetrics)
    assert is_zero(grads.encoder)
    assert not is_zero(grads.policy.critic) and not is_zero(grads.policy.actor)
    # It is ReBRAC's loss on (E(s), Ebar(s')), the same key drawing the same smoothing noise.
    represented = dataclasses.replace(
        batch,
        observations=dino_rebrac.encode(online.encoder, batch.observations),
        next_observations=dino_rebrac.encode(target.encoder, batch.next_observations),
    )
    want, _ = eqx.filter_jit(
        lambda: rebrac.finetune_loss(
            online.policy,
            target.policy,
            represented,
            key=jr.key(1),
            config=CONFIG.rebrac(),
            update_actor=True,
        )
    )()
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_start_finetuning_resets_the_teacher_and_acting_reads_the_representation(networks, getkey):
    online, target = networks
    moved = eqx.tree_at(
        lambda t: t.encoder,
        target,
        jax.tree.map(lambda x: x + 1.0 if eqx.is_inexact_array(x) else x, target.encoder),
    )
    same, reset = dino_rebrac.start_finetuning(online, moved, CONFIG)
    assert same is online and bool(eqx.tree_equal(reset.encoder, online.encoder))
    assert bool(eqx.tree_equal(reset.policy, target.policy))
    s = 100.0 * jr.normal(getkey(), (B, OBS))
    want = jnp.clip(jnp.tanh(jax.vmap(online.policy.actor)(jax.vmap(online.encoder)(s))), -1, 1)
    np.testing.assert_allclose(dino_rebrac.act(online, s), want, rtol=1e-6)
    # The teacher follows the encoder by EMA after every update; ReBRAC's targets count updates.
    after = dino_rebrac.update_target(moved, online, CONFIG)
    assert int(after.policy.num_updates) == int(target.policy.num_updates) + 1
    assert not bool(eqx.tree_equal(after.encoder, moved.encoder))


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 0),
        ("hidden_dims", (0,)),
        ("encoder_dims", ()),
        ("gamma", 1.0),
        ("tau", 2.0),
        ("actor_freq", 0),
        ("alpha_actor", -1.0),
        ("repr_noise", -0.1),
        ("repr_temp", 0.0),
        ("target_repr_temp", -1.0),
        ("encoder_layer_norm", "yes"),
    ],
)
def test_dino_rebrac_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"DINOReBRACConfig.{field}"):
        dino_rebrac.DINOReBRACConfig(**{field: value})


@pytest.mark.parametrize("preset", sorted(infom.PRESETS))
def test_preset_config_takes_the_presets_networks_and_the_benchmarks_temperature(preset):
    p = infom.get_preset(preset)
    config = dino_rebrac.preset_config(p)
    assert config.hidden_dims == config.encoder_dims == p.infom.network.hidden_dims
    assert (config.batch_size, config.learning_rate, config.gamma) == (
        p.infom.batch_size,
        p.infom.learning_rate,
        p.infom.gamma,
    )
    assert config.repr_temp == (0.04 if p.benchmark == "ogbench" else 0.1)
    assert (config.alpha_actor, config.alpha_critic) == (0.0, 0.0)


@pytest.mark.parametrize("agent", ["dino_rebrac", "mbpo_rebrac"])
def test_the_rebrac_config_takes_every_rebrac_field_of_the_agents_config(agent):
    config_type = infom.AGENTS[agent].config_type
    values = dict(
        alpha_actor=0.3, alpha_critic=0.7, tau=0.01, actor_freq=3, actor_noise=0.1, hidden_dims=(8, 8)
    )
    inner = config_type(**values).rebrac()
    for field in dataclasses.fields(rebrac.ReBRACConfig):
        assert getattr(inner, field.name) == getattr(config_type(**values), field.name), field.name
    assert (inner.alpha_actor, inner.tau, inner.hidden_dims) == (0.3, 0.01, (8, 8))
