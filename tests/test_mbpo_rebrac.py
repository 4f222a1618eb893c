"""The MBPO + ReBRAC baseline (`infom.agents.mbpo_rebrac`): the dynamics model recovers a linear
system, the rollouts follow the model and the actor, and each network learns from its own term."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from _trees import is_zero

import infom
from infom._types import Batch
from infom.agents import mbpo_rebrac, rebrac


OBS, ACT, B = 3, 2, 8
CONFIG = mbpo_rebrac.MBPOReBRACConfig(hidden_dims=(16, 16), batch_size=B, num_model_rollouts=4)

A = jnp.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]])
B_ACT = jnp.array([[0.5, 0.0], [0.0, -0.5], [0.3, 0.3]])


def _linear_batch(key, n):
    """Transitions of the linear system `s' = A s + B a`."""
    s_key, a_key, next_a_key, r_key = jr.split(key, 4)
    s = jr.normal(s_key, (n, OBS))
    a = jr.uniform(a_key, (n, ACT), minval=-0.9, maxval=0.9)
    return Batch(
        observations=s,
        actions=a,
        next_observations=s @ A.T + a @ B_ACT.T,
        next_actions=jr.uniform(next_a_key, (n, ACT), minval=-0.9, maxval=0.9),
        rewards=jr.normal(r_key, (n,)),
        masks=jnp.ones((n,)),
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
    return eqx.filter_jit(mbpo_rebrac.AGENT.init)(OBS, ACT, CONFIG, key=jr.key(0))


def test_the_dynamics_model_recovers_a_linear_system(getkey):
    model = mbpo_rebrac.DynamicsModel(OBS, ACT, (), layer_norm=False, key=getkey())
    exact = eqx.tree_at(
        lambda m: (m.mlp.layers[0].weight, m.mlp.layers[0].bias),
        model,
        (jnp.concatenate([A - jnp.eye(OBS), B_ACT], axis=1), jnp.zeros(OBS)),
    )
    data = _linear_batch(getkey(), 256)
    assert float(jax.jit(mbpo_rebrac.dynamics_loss)(exact, data)) < 1e-12
    optim = optax.adam(1e-2)

    @jax.jit
    def fit(model, key):
        def step(carry, key):
            model, opt_state = carry
            grads = jax.grad(mbpo_rebrac.dynamics_loss)(model, _linear_batch(key, 64))
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
                updates, opt_state = optim.update(grads, opt_state)
            return (eqx.apply_updates(model, updates), opt_state), None

        (model, _), _ = jax.lax.scan(step, (model, optim.init(model)), jr.split(key, 1500))
        return model

    fitted = fit(model, getkey())
    np.testing.assert_allclose(fitted.mlp.layers[0].weight, exact.mlp.layers[0].weight, atol=5e-3)
    test = _linear_batch(getkey(), 32)
    predicted = jax.vmap(fitted)(test.observations, test.actions)
    np.testing.assert_allclose(predicted, test.next_observations, atol=1e-2)


def test_rollouts_chain_the_models_steps_and_the_actors_noisy_actions(networks, getkey):
    online, _ = networks
    starts = jr.normal(getkey(), (4, OBS))
    key = getkey()
    batch = jax.jit(lambda o, s: mbpo_rebrac.rollout(o, s, key=key, num_steps=3, noise=0.2, noise_clip=0.5))(
        online, starts
    )
    assert batch.observations.shape == (12, OBS) and batch.actions.shape == (12, ACT)
    s = batch.observations.reshape(3, 4, OBS)
    s_next = batch.next_observations.reshape(3, 4, OBS)
    a, a_next = batch.actions.reshape(3, 4, ACT), batch.next_actions.reshape(3, 4, ACT)
    np.testing.assert_array_equal(s[0], starts)
    np.testing.assert_allclose(s[1:], s_next[:-1])  # each step starts where the last one ended
    np.testing.assert_allclose(a[1:], a_next[:-1])
    np.testing.assert_allclose(s_next, jax.vmap(jax.vmap(online.dynamics))(s, a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        batch.rewards, jax.vmap(online.reward)(batch.observations), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(batch.masks, 1.0)
    # The actions are the policy's plus clipped noise, within [-1, 1].
    policy = rebrac.policy_actions(online.policy.actor, batch.observations, online.policy.tanh_squash)
    assert float(jnp.max(jnp.abs(batch.actions - policy))) <= 0.5 + 1e-6
    assert float(jnp.max(jnp.abs(batch.actions))) <= 1.0 and not np.allclose(batch.actions, policy)


def test_pretraining_trains_the_dynamics_model_and_the_actor_only(networks, getkey):
    online, target = networks
    batch = _linear_batch(getkey(), B)
    batch = eqx.tree_at(lambda b: b.rewards, batch, jnp.full((B,), jnp.nan))
    loss, metrics, grads = _grads(mbpo_rebrac.pretrain_loss, online, target, batch, jnp.asarray(False))
    assert bool(jnp.isfinite(loss)) and all(jnp.shape(m) == () for m in metrics)
    np.testing.assert_allclose(loss, metrics.dynamics_loss + metrics.bc_loss, rtol=1e-6)
    assert not is_zero(grads.dynamics) and not is_zero(grads.policy.actor)
    assert is_zero(grads.reward) and is_zero(grads.policy.critic)


def test_finetuning_trains_each_network_on_its_own_term_and_the_policy_on_rollouts(networks, getkey):
    online, target = networks
    batch = _linear_batch(getkey(), B)
    loss, metrics, grads = _grads(mbpo_rebrac.finetune_loss, online, target, batch, jnp.asarray(True))
    assert bool(jnp.isfinite(loss)) and all(jnp.shape(m) == () for m in metrics)
    assert not any(
        is_zero(g) for g in (grads.dynamics, grads.reward, grads.policy.critic, grads.policy.actor)
    )
    # The rollouts carry no gradient: the models' gradients are those of their own losses.
    model_grads = eqx.filter_jit(
        lambda o: (
            eqx.filter_grad(mbpo_rebrac.dynamics_loss)(o.dynamics, batch),
            eqx.filter_grad(lambda r: jnp.mean(jnp.square(jax.vmap(r)(batch.observations) - batch.rewards)))(
                o.reward
            ),
        )
    )(online)
    assert bool(eqx.tree_equal((grads.dynamics, grads.reward), model_grads, rtol=1e-5, atol=1e-7))
    # The critic learns from the rollouts' transitions, not the batch's: other data actions and
    # next states of the batch change nothing in ReBRAC's terms.
    other = eqx.tree_at(
        lambda b: (b.actions, b.next_actions), batch, (-batch.actions, jnp.zeros_like(batch.next_actions))
    )
    other = eqx.tree_at(lambda b: b.next_observations, other, other.next_observations + 1.0)
    _, other_metrics, _ = _grads(mbpo_rebrac.finetune_loss, online, target, other, jnp.asarray(True))
    assert float(other_metrics.critic_loss) == float(metrics.critic_loss)
    assert float(other_metrics.dynamics_loss) != float(metrics.dynamics_loss)


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 0),
        ("hidden_dims", (0,)),
        ("gamma", 1.0),
        ("tau", 2.0),
        ("num_model_rollouts", 0),
        ("num_model_rollouts", 9),
        ("num_model_rollout_steps", 0),
        ("actor_noise", -1.0),
        ("model_layer_norm", "yes"),
    ],
)
def test_mbpo_rebrac_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"MBPOReBRACConfig.{field}"):
        mbpo_rebrac.MBPOReBRACConfig(**{"batch_size": 8, "num_model_rollouts": 4, field: value})


@pytest.mark.parametrize("preset", sorted(infom.PRESETS))
def test_preset_config_takes_the_presets_networks_and_the_benchmarks_rollouts(preset):
    p = infom.get_preset(preset)
    config = mbpo_rebrac.preset_config(p)
    assert config.hidden_dims == p.infom.network.hidden_dims
    ogbench = p.benchmark == "ogbench"
    assert config.num_model_rollouts == min(256 if ogbench else 128, p.infom.batch_size)
    assert config.num_model_rollout_steps == (2 if ogbench else 1)
