"""The FB + IQL baseline (`infom.agents.fb_iql`): the measure loss's optimum on a tabular MDP, the
orthonormality loss, task inference, the latents, gradient flow and the fixed task."""

import dataclasses
import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _trees import is_zero

import infom
from infom._types import Batch
from infom.agents import fb_iql


OBS, ACT, B, D = 3, 2, 8, 4
CONFIG = fb_iql.FBIQLConfig(hidden_dims=(16, 16), latent_dim=D, batch_size=B)


def _batch(key, rewards=None):
    s_key, a_key, next_s_key, next_a_key, r_key = jr.split(key, 5)
    return Batch(
        observations=jr.normal(s_key, (B, OBS)),
        actions=jr.uniform(a_key, (B, ACT), minval=-1, maxval=1),
        next_observations=jr.normal(next_s_key, (B, OBS)),
        next_actions=jr.uniform(next_a_key, (B, ACT), minval=-1, maxval=1),
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
    return eqx.filter_jit(fb_iql.AGENT.init)(OBS, ACT, CONFIG, key=jr.key(0))


# --------------------------------------------------------------------------- the measure loss's optimum

# A tiny MDP: 3 states, 2 actions, a fixed policy pi(s), data (s, a) uniform over the 6 pairs and
# s' ~ P(. | s, a). rho is the next-state marginal of the data.
GAMMA = 0.8
P = np.array(
    [
        [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
        [[0.3, 0.6, 0.1], [0.2, 0.3, 0.5]],
        [[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]],
    ]
)  # P[s, a, s']
PI = np.array([1, 0, 1])
D_SA = np.full((3, 2), 1 / 6)
RHO = np.einsum("sa,sax->x", D_SA, P)


def _successor_measure_over_rho():
    """`M(s, a, x) = sum_{t >= 0} gamma^t P(s_{t+1} = x | s, a, pi) / rho(x)`, by a linear solve."""
    p_pi = np.zeros((6, 6))  # (s, a) -> (s', pi(s'))
    for s, a, s2 in itertools.product(range(3), range(2), range(3)):
        p_pi[2 * s + a, 2 * s2 + PI[s2]] += P[s, a, s2]
    first = P.reshape(6, 3) / RHO[None]
    return np.linalg.solve(np.eye(6) - GAMMA * p_pi, first).reshape(3, 2, 3)


def _batches(size):
    """Every batch of `size` i.i.d. rows (s, a, s') and its probability."""
    rows = list(itertools.product(range(3), range(2), range(3)))
    configs = np.array(list(itertools.product(rows, repeat=size)))  # [num, size, 3]
    s, a, s2 = configs[..., 0], configs[..., 1], configs[..., 2]
    probs = np.prod(D_SA[s, a] * P[s, a, s2], axis=-1)
    return jnp.asarray(s), jnp.asarray(a), jnp.asarray(s2), jnp.asarray(probs, jnp.float32)


S, A, S2, PROBS = _batches(3)


@jax.jit
def _expected_measure_loss(table, target_table):
    """The exact expectation over batches of 3 of `mean measure_loss` with tabular measures
    `m[i, j] = table[s_i, a_i, s'_j]`, `m_target[i, j] = target_table[s'_i, pi(s'_i), s'_j]`, and its
    gradient with respect to `table`."""
    pi = jnp.asarray(PI)

    def expected(table):
        def one(s, a, s2):
            m = table[s, a][:, s2]
            m_target = target_table[s2, pi[s2]][:, s2]
            return jnp.mean(fb_iql.measure_loss(m[None], m_target, GAMMA))

        return jnp.sum(PROBS * jax.vmap(one)(S, A, S2))

    return jax.value_and_grad(expected)(table)


def test_measure_loss_is_minimised_by_the_successor_measure_over_the_next_state_marginal(getkey):
    assert np.isclose(PROBS.sum(), 1.0)
    optimum = jnp.asarray(_successor_measure_over_rho(), jnp.float32)
    loss, grad = _expected_measure_loss(optimum, optimum)
    np.testing.assert_allclose(grad, 0.0, atol=2e-6)
    # With the target held at the optimum, any other table has a larger expected loss.
    for _ in range(4):
        other = optimum + 0.3 * jr.normal(getkey(), optimum.shape)
        assert float(_expected_measure_loss(other, optimum)[0]) > float(loss) + 1e-4
    # The successor measure of another policy or discount is not a fixed point.
    wrong = jnp.asarray(P / RHO[None, None], jnp.float32)  # gamma = 0's measure
    assert float(jnp.max(jnp.abs(_expected_measure_loss(wrong, wrong)[1]))) > 1e-2


# --------------------------------------------------------------------------- orthonormality, latents, task


def test_orthonormality_loss_is_minus_two_d_for_orthogonal_rows_and_grows_with_their_overlap():
    d = 4
    orthogonal = math.sqrt(d) * jnp.eye(d)
    same = jnp.full((2, d), 1.0)  # two equal rows of norm sqrt(d): C = d everywhere
    got = jax.jit(jax.vmap(fb_iql.orthonormality_loss))(jnp.stack([orthogonal[:2], same]))
    np.testing.assert_allclose(got[0], -2.0 * d, rtol=1e-6)
    np.testing.assert_allclose(got[1], d**2 - 2.0 * d, rtol=1e-6)


def _linear_backward(d):
    """A `B(s) = s` on `R^d`: an MLP of one linear layer with identity weights and zero bias."""
    mlp = infom.MLP(d, (d,), layer_norm=False, key=jr.key(0))
    return eqx.tree_at(lambda m: (m.layers[0].weight, m.layers[0].bias), mlp, (jnp.eye(d), jnp.zeros(d)))


def test_task_inference_recovers_the_direction_of_a_reward_linear_in_b():
    # States sqrt(d) e_k, each equally often: B(s) = s is on the sphere and E[B B^T] = I, so
    # mean r(s) B(s) = w for r(s) = B(s)^T w, and z_r = sqrt(d) w / |w|.
    d = 4
    observations = jnp.tile(math.sqrt(d) * jnp.eye(d), (3, 1))
    w = jnp.array([0.5, -1.0, 2.0, 0.0])
    z = jax.jit(fb_iql.infer_task)(_linear_backward(d), observations, observations @ w)
    np.testing.assert_allclose(z, math.sqrt(d) * w / jnp.linalg.norm(w), rtol=1e-5, atol=1e-6)


def test_latents_are_gaussian_directions_or_the_batchs_own_backward_values(networks, getkey):
    online, _ = networks
    s = jr.normal(getkey(), (64, OBS))
    sample = jax.jit(lambda key, p: fb_iql.sample_latents(online.backward, s, key=key, mix_prob=p))
    b = np.asarray(fb_iql.backward_values(online.backward, s))
    key = getkey()
    gaussian, own, mixed = sample(key, 1.0), sample(key, 0.0), sample(key, 0.5)
    for z in (gaussian, own, mixed):
        np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), math.sqrt(D), rtol=1e-5)
    # mix_prob = 0: a permutation of the batch's B(s) ...
    order = lambda x: x[np.lexsort(np.asarray(x).T)]
    np.testing.assert_allclose(order(np.asarray(own)), order(b), atol=1e-5)
    # ... mix_prob = 1: none of them; 1/2: each row is one or the other, with both present.
    is_b = lambda z: np.any(np.all(np.isclose(np.asarray(z)[:, None], b[None], atol=1e-5), axis=-1), axis=1)
    assert not np.any(is_b(gaussian))
    from_b = is_b(mixed)
    assert 0 < from_b.sum() < len(from_b)
    np.testing.assert_array_equal(np.asarray(mixed)[~from_b], np.asarray(gaussian)[~from_b])


# --------------------------------------------------------------------------- losses and gradients


def test_pretraining_trains_f_and_b_and_the_actor_reads_no_reward_and_touches_nothing_else(networks, getkey):
    online, target = networks
    batch = _batch(getkey(), rewards=jnp.full((B,), jnp.nan))
    loss, metrics, grads = _grads(fb_iql.pretrain_loss, online, target, batch, jnp.asarray(False))
    assert bool(jnp.isfinite(loss)) and all(jnp.shape(m) == () for m in metrics)
    np.testing.assert_allclose(
        loss, metrics.measure_loss + metrics.orthonormality_loss + metrics.actor_loss, rtol=1e-6
    )
    assert not any(is_zero(g) for g in (grads.forward, grads.backward, grads.actor))
    assert is_zero(grads.value) and is_zero(grads.critic) and is_zero(grads.task)
    # The actor learns on every pre-training update (no schedule), and its term alone moves it.
    _, with_actor, grads_on = _grads(fb_iql.pretrain_loss, online, target, batch, jnp.asarray(True))
    assert float(with_actor.loss) == float(metrics.loss) and bool(eqx.tree_equal(grads_on, grads))


def test_finetuning_trains_iql_on_the_task_and_leaves_the_representations_and_the_task_alone(
    networks, getkey
):
    online, target = networks
    online = eqx.tree_at(lambda n: n.task, online, jnp.array([2.0, 0.0, 0.0, 0.0]))
    batch = _batch(getkey())
    loss, metrics, grads = _grads(fb_iql.finetune_loss, online, target, batch, jnp.asarray(True))
    assert bool(jnp.isfinite(loss)) and isinstance(metrics, infom.agents.iql.IQLMetrics)
    assert not any(is_zero(g) for g in (grads.value, grads.critic, grads.actor))
    assert is_zero(grads.forward) and is_zero(grads.backward) and is_zero(grads.task)
    _, no_actor, no_actor_grads = _grads(fb_iql.finetune_loss, online, target, batch, jnp.asarray(False))
    assert float(no_actor.actor_loss) == 0.0 and is_zero(no_actor_grads.actor)
    # The networks are conditioned on the task: another z_r gives other values.
    other = eqx.tree_at(lambda n: n.task, online, jnp.array([0.0, 0.0, -2.0, 0.0]))
    _, other_metrics, _ = _grads(fb_iql.finetune_loss, other, target, batch, jnp.asarray(True))
    assert float(other_metrics.v_mean) != float(metrics.v_mean)


def test_start_finetuning_infers_the_task_that_acting_uses_and_training_never_moves(networks, getkey):
    online, target = networks
    assert fb_iql.AGENT.task_batch is fb_iql.task_batch and fb_iql.AGENT.name == "fb_iql"
    batch = _batch(getkey())
    with pytest.raises(ValueError, match="needs `batch=`"):
        fb_iql.start_finetuning(online, target, CONFIG)
    tuned, same_target = jax.jit(lambda o, t, b: fb_iql.start_finetuning(o, t, CONFIG, batch=b))(
        online, target, batch
    )
    assert same_target is not None and bool(eqx.tree_equal(same_target, target))
    want = fb_iql.infer_task(online.backward, batch.observations, batch.rewards)
    np.testing.assert_allclose(tuned.task, want, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(tuned.task), math.sqrt(D), rtol=1e-5)

    s = 100.0 * jr.normal(getkey(), (B, OBS))
    actions = fb_iql.act(tuned, s)
    zs = jnp.broadcast_to(tuned.task, (B, D))
    np.testing.assert_allclose(actions, jnp.clip(jax.vmap(tuned.actor)(jnp.concatenate([s, zs], 1)), -1, 1))

    # Adam never moves the task: a few fine-tuning updates leave it bit-identical.
    optim = infom.make_optimizer(CONFIG)
    normalizer = infom.fit_normalizer(np.asarray(batch.observations))
    opt_state = optim.init(eqx.filter(tuned, eqx.is_array))
    state = infom.TrainState(tuned, target, opt_state, normalizer, jnp.zeros((), jnp.int32))

    @eqx.filter_jit
    def steps(state, keys):
        for key in keys:
            state, _ = infom.train_step(
                fb_iql.AGENT, fb_iql.finetune_loss, state, batch, key=key, config=CONFIG, optim=optim
            )
        return state

    after = steps(state, tuple(jr.split(getkey(), 4)))
    np.testing.assert_array_equal(after.models.task, tuned.task)
    assert not bool(eqx.tree_equal(after.models.actor, tuned.actor))


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 1),
        ("hidden_dims", (0,)),
        ("latent_dim", 0),
        ("gamma", 1.0),
        ("tau", 2.0),
        ("expectile", 0.2),
        ("actor_freq", 0),
        ("forward_aggregation", "mean"),
        ("latent_mix_prob", 1.5),
        ("orthonorm_coeff", -1.0),
        ("alpha_repr", -1.0),
        ("alpha_awr", -1.0),
        ("num_task_samples", 0),
        ("fb_layer_norm", "yes"),
    ],
)
def test_fb_iql_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"FBIQLConfig.{field}"):
        fb_iql.FBIQLConfig(**{field: value})


@pytest.mark.parametrize("preset", sorted(infom.PRESETS))
def test_preset_config_takes_the_presets_networks_and_the_benchmarks_temperatures(preset):
    p = infom.get_preset(preset)
    config = fb_iql.preset_config(p)
    assert config.hidden_dims == p.infom.network.hidden_dims and config.latent_dim == config.hidden_dims[-1]
    assert (config.batch_size, config.learning_rate, config.gamma) == (
        p.infom.batch_size,
        p.infom.learning_rate,
        p.infom.gamma,
    )
    ogbench = p.benchmark == "ogbench"
    assert (config.alpha_repr, config.alpha_awr) == ((10.0, 1.0) if ogbench else (1.0, 1.0))
    assert dataclasses.replace(config, alpha_awr=3.0).iql().alpha == 3.0
