"""The CRL + IS baseline (`infom.agents.crl_is`): InfoNCE's optimum, the importance-weighted Q,
the future-goal sampler, gradient flow."""

import dataclasses
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _trees import is_zero

import infom
from infom._types import Batch
from infom.agents import crl_is
from infom.data._dataset import Dataset, batch_at


OBS, ACT, B = 3, 2, 8
CONFIG = crl_is.CRLISConfig(hidden_dims=(16, 16), latent_dim=8, batch_size=B)


def _goal_batch(key, rewards=None):
    s_key, a_key, next_s_key, next_a_key, r_key, value_key, actor_key = jr.split(key, 7)
    transitions = Batch(
        observations=jr.normal(s_key, (B, OBS)),
        actions=jr.uniform(a_key, (B, ACT), minval=-1, maxval=1),
        next_observations=jr.normal(next_s_key, (B, OBS)),
        next_actions=jr.uniform(next_a_key, (B, ACT), minval=-1, maxval=1),
        rewards=jr.normal(r_key, (B,)) if rewards is None else rewards,
        masks=jnp.ones((B,)),
    )
    return crl_is.GoalBatch(
        transitions=transitions,
        value_goals=jr.normal(value_key, (B, OBS)),
        actor_goals=jr.normal(actor_key, (B, OBS)),
    )


@eqx.filter_jit
def _finetune(online, batch, update_actor):
    """Loss, metrics and gradients of the fine-tuning loss (one compile for both schedules)."""
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: crl_is.finetune_loss(
            o, None, batch, key=jr.key(0), config=CONFIG, normalizer=None, update_actor=update_actor
        ),
        has_aux=True,
    )(online)
    return loss, metrics, grads


@eqx.filter_jit
def _pretrain(online, batch):
    (loss, metrics), grads = eqx.filter_value_and_grad(
        lambda o: crl_is.pretrain_loss(o, None, batch, key=jr.key(0), config=CONFIG), has_aux=True
    )(online)
    return loss, metrics, grads


class _Reference(eqx.Module):
    means: jax.Array
    q: jax.Array
    value_logits: jax.Array


@eqx.filter_jit
def _reference(networks, batch):
    """The actor's mean, its importance-weighted q and the critic's logits, computed by hand."""
    t = batch.transitions
    means = jax.vmap(networks.actor)(t.observations)
    logits = crl_is.critic_logits(networks.critic, t.observations, jnp.clip(means, -1, 1), batch.actor_goals)
    logits = jnp.min(jnp.maximum(logits, np.log(1e-6)), axis=-1)
    q = B * jnp.diagonal(jax.nn.softmax(logits, axis=1)) * jax.vmap(networks.reward)(batch.actor_goals)
    value_logits = crl_is.critic_logits(networks.critic, t.observations, t.actions, batch.value_goals)
    return _Reference(means, q, value_logits)


@pytest.fixture(scope="module")
def networks():
    online, target = eqx.filter_jit(crl_is.AGENT.init)(OBS, ACT, CONFIG, key=jr.key(0))
    assert target is None
    return online


# --------------------------------------------------------------------------- InfoNCE's optimum

# A tiny discrete problem: two state-action pairs x, three goals g, p(x) uniform, and p(g | x) below.
P_X = np.array([0.5, 0.5])
P_G_GIVEN_X = np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]])
P_G = P_X @ P_G_GIVEN_X  # (3/8, 1/4, 3/8)
LOG_RATIO = np.log(P_G_GIVEN_X / P_G[None])


def _batches(size):
    """Every batch of `size` i.i.d. pairs (x_i, g_i) ~ p(x) p(g | x) and its probability."""
    pairs = list(itertools.product(range(2), range(3)))
    configs = np.array(list(itertools.product(pairs, repeat=size)))  # [num, size, 2]
    probs = np.prod(P_X[configs[..., 0]] * P_G_GIVEN_X[configs[..., 0], configs[..., 1]], axis=-1)
    return jnp.asarray(configs[..., 0]), jnp.asarray(configs[..., 1]), jnp.asarray(probs, jnp.float32)


XS, GS, PROBS = _batches(3)


@eqx.filter_jit
def _expected_infonce(table, symmetric=False):
    """The exact expectation over batches of 3 of the mean InfoNCE with tabular logits
    `f(x_i, g_j) = table[x_i, g_j]`, and its gradient with respect to the table."""

    def expected(table):
        def one(xs, gs):
            logits = table[xs][:, gs]
            return jnp.mean(crl_is.infonce(logits, logsumexp_penalty=0.0, symmetric=symmetric))

        return jnp.sum(PROBS * jax.vmap(one)(XS, GS))

    return jax.value_and_grad(expected)(table)


def test_infonce_is_minimised_by_the_log_density_ratio_up_to_a_constant_per_state_action(getkey):
    assert np.isclose(PROBS.sum(), 1.0)
    optimum = jnp.asarray(LOG_RATIO, jnp.float32)
    loss, grad = _expected_infonce(optimum)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    # A constant per state-action pair changes nothing (the softmax is over each row's goals) ...
    shifted = optimum + jnp.array([[3.0], [-1.5]])
    shifted_loss, shifted_grad = _expected_infonce(shifted)
    np.testing.assert_allclose(shifted_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(shifted_grad, 0.0, atol=1e-6)
    # ... and any other perturbation raises the expected loss.
    for _ in range(5):
        delta = jr.normal(getkey(), (2, 3))
        delta = delta - jnp.mean(delta, axis=1, keepdims=True)  # not a constant per row
        assert float(_expected_infonce(optimum + 0.3 * delta)[0]) > float(loss) + 1e-5
    # The symmetric form is minimised there too (its columns by the same ratio).
    _, grad = _expected_infonce(optimum, symmetric=True)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_forward_infonce_is_cross_entropy_plus_the_squared_logsumexp_penalty(getkey):
    logits = np.asarray(jr.normal(getkey(), (4, 4)), np.float64)
    lse = np.log(np.sum(np.exp(logits), axis=1))
    want = lse - np.diagonal(logits) + 0.5 * lse**2
    shifted = logits + np.arange(4.0)[:, None]
    got, plain, moved = jax.jit(
        lambda x, y: (crl_is.infonce(x, logsumexp_penalty=0.5), crl_is.infonce(x), crl_is.infonce(y))
    )(jnp.asarray(logits, jnp.float32), jnp.asarray(shifted, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Without the penalty, a constant per row changes nothing.
    np.testing.assert_allclose(moved, plain, atol=1e-5)


# --------------------------------------------------------------------------- the importance-weighted Q


def test_importance_weighted_q_is_the_expected_reward_of_future_goals_for_the_exact_ratio():
    # A batch of 8 goals drawn exactly in the marginal's proportions (3/8, 2/8, 3/8) and every
    # row at the same state-action x: with f = log p(g | x) / p(g) + b (any b), the batch mean of
    # q_i = B softmax_j(f)_i r(g_i) is sum_g p(g | x) r(g).
    goals = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    r = np.array([1.0, -2.0, 3.0])
    cases = [(x, offset) for x in (0, 1) for offset in (0.0, 7.0)]
    logits = np.stack([np.broadcast_to(LOG_RATIO[x][goals] + offset, (8, 8)) for x, offset in cases])
    q = jax.jit(jax.vmap(crl_is.importance_weighted_q, in_axes=(0, None)))(
        jnp.asarray(logits, jnp.float32), jnp.asarray(r[goals], jnp.float32)
    )
    for (x, _), q_x in zip(cases, np.asarray(q), strict=True):
        np.testing.assert_allclose(np.mean(q_x), P_G_GIVEN_X[x] @ r, rtol=1e-5)
        # Each q_i is the exact ratio times the goal's reward (the batch's ratios average to 1).
        np.testing.assert_allclose(q_x, (P_G_GIVEN_X[x] / P_G)[goals] * r[goals], rtol=1e-5)


def test_actor_q_is_the_importance_weighted_reward_of_the_actor_goals_and_bc_is_weighted_by_alpha(
    networks, getkey
):
    batch = _goal_batch(getkey())
    _, metrics, _ = _finetune(networks, batch, jnp.asarray(True))

    ref = _reference(networks, batch)
    means, q = ref.means, ref.q
    np.testing.assert_allclose(metrics.q_mean, q.mean(), rtol=1e-4)
    np.testing.assert_allclose(metrics.q_loss, -q.mean() / jnp.abs(q).mean(), rtol=1e-4)
    log_prob = jax.scipy.stats.norm.logpdf(batch.transitions.actions, means, 1.0).sum(-1)
    np.testing.assert_allclose(metrics.bc_loss, -CONFIG.alpha * log_prob.mean(), rtol=1e-4)
    np.testing.assert_allclose(metrics.actor_loss, metrics.q_loss + metrics.bc_loss, rtol=1e-5)


def test_critic_logits_are_the_scaled_bilinear_products_of_every_pair(networks, getkey):
    s, a, g = jr.normal(getkey(), (4, OBS)), jr.uniform(getkey(), (4, ACT)), jr.normal(getkey(), (5, OBS))
    logits, pair = eqx.filter_jit(lambda c: (crl_is.critic_logits(c, s, a, g), c(s[2], a[2], g[3])))(
        networks.critic
    )
    assert logits.shape == (4, 5, CONFIG.num_critic_heads)
    np.testing.assert_allclose(logits[2, 3], pair, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the goal sampler


def test_goal_sampler_draws_same_episode_futures_geometric_for_the_critic_uniform_for_the_actor(getkey):
    lengths = (2, 7, 60)
    episode = np.concatenate([np.full(n, e) for e, n in enumerate(lengths)])
    rows = np.arange(len(episode))
    terminals = np.concatenate([np.arange(n) == n - 1 for n in lengths])
    data = Dataset.from_arrays(
        np.stack([rows, episode, np.zeros_like(rows)], axis=1).astype(np.float32),
        np.zeros((len(rows), ACT), np.float32),
        terminals=terminals,
    )
    starts = np.cumsum((0,) + lengths)[:-1]
    ends = np.concatenate([np.full(n, start + n - 1) for start, n in zip(starts, lengths, strict=True)])
    config = dataclasses.replace(CONFIG, batch_size=4096, gamma=0.5)
    sample = jax.jit(lambda key: crl_is.sample_goal_batch(data, key, config))
    key = getkey()
    batch = sample(key)
    i = np.asarray(batch.transitions.observations[:, 0]).astype(int)
    assert tree_equal(batch.transitions, batch_at(data, jnp.asarray(i, jnp.int32)))
    for goals in (batch.value_goals, batch.actor_goals):
        g = np.asarray(goals[:, 0]).astype(int)
        assert np.all(episode[g] == episode[i]) and np.all(g > i) and np.all(g <= ends[i])
    # The critic's offsets k = g - i are geometric, P(k) = (1 - gamma) gamma^(k - 1), truncated at the end.
    far = ends[i] - i >= 12
    k = np.asarray(batch.value_goals[:, 0]).astype(int)[far] - i[far]
    np.testing.assert_allclose(np.mean(k == 1), 0.5, atol=0.04)
    np.testing.assert_allclose(np.mean(k == 2), 0.25, atol=0.04)
    np.testing.assert_allclose(np.mean(k), 2.0, atol=0.1)
    # The actor's goals are uniform over the rest of the episode.
    span = ends[i] - i - 1
    u = (np.asarray(batch.actor_goals[:, 0]).astype(int) - i - 1)[span > 0] / span[span > 0]
    np.testing.assert_allclose(np.mean(u), 0.5, atol=0.03)
    np.testing.assert_allclose(np.mean(u < 0.5), 0.5, atol=0.05)
    # The draws come from the key.
    assert tree_equal(sample(key), batch) and not tree_equal(sample(getkey()).value_goals, batch.value_goals)


def tree_equal(a, b):
    return bool(eqx.tree_equal(a, b))


# --------------------------------------------------------------------------- losses and gradients


def test_pretraining_is_infonce_plus_bc_reads_no_reward_and_trains_critic_and_actor(networks, getkey):
    batch = _goal_batch(getkey(), rewards=jnp.full((B,), jnp.nan))
    loss, metrics, grads = _pretrain(networks, batch)
    assert bool(jnp.isfinite(loss)) and metrics._fields[0] == "loss"
    assert all(jnp.shape(m) == () for m in metrics)
    np.testing.assert_allclose(loss, metrics.contrastive_loss + metrics.bc_loss, rtol=1e-6)
    assert is_zero(grads.reward) and not is_zero(grads.critic) and not is_zero(grads.actor)
    # The InfoNCE term is that of `infonce` on every head's logits of the value goals.
    logits = np.asarray(_reference(networks, batch).value_logits, np.float64)
    lse = np.log(np.sum(np.exp(logits), axis=1))  # [rows, heads]
    want = np.mean(lse - np.diagonal(logits).T + 0.01 * lse**2)
    np.testing.assert_allclose(metrics.contrastive_loss, want, rtol=1e-5)


def test_finetuning_gradients_flow_only_into_each_terms_own_network(networks, getkey):
    batch = _goal_batch(getkey())
    loss, metrics, grads = _finetune(networks, batch, jnp.asarray(True))
    assert bool(jnp.isfinite(loss)) and metrics._fields[0] == "loss"
    assert all(jnp.shape(m) == () for m in metrics)
    np.testing.assert_allclose(
        loss, metrics.reward_loss + metrics.contrastive_loss + metrics.actor_loss, rtol=1e-6
    )
    assert not any(is_zero(g) for g in (grads.critic, grads.reward, grads.actor))

    no_actor_loss, no_actor, no_actor_grads = _finetune(networks, batch, jnp.asarray(False))
    assert float(no_actor.actor_loss) == float(no_actor.q_loss) == float(no_actor.bc_loss) == 0.0
    np.testing.assert_allclose(no_actor_loss, no_actor.reward_loss + no_actor.contrastive_loss, rtol=1e-6)
    assert is_zero(no_actor_grads.actor)
    # The actor's term gives the critic and the reward model no gradient (both frozen in it).
    assert tree_equal(grads.critic, no_actor_grads.critic) and tree_equal(grads.reward, no_actor_grads.reward)

    # The actor goals enter the actor's term only; the value goals do not enter it.
    other_actor_goals = dataclasses.replace(batch, actor_goals=batch.actor_goals + 1.0)
    _, m, _ = _finetune(networks, other_actor_goals, jnp.asarray(True))
    assert float(m.contrastive_loss) == float(metrics.contrastive_loss)
    assert float(m.q_mean) != float(metrics.q_mean)
    other_value_goals = dataclasses.replace(batch, value_goals=batch.value_goals + 1.0)
    _, m, _ = _finetune(networks, other_value_goals, jnp.asarray(True))
    assert float(m.q_mean) == float(metrics.q_mean)
    assert float(m.contrastive_loss) != float(metrics.contrastive_loss)


def test_act_is_the_clipped_mean_and_the_agent_has_no_targets(networks, getkey):
    s = 100.0 * jr.normal(getkey(), (B, OBS))
    actions = crl_is.AGENT.act(networks, s)
    assert actions.shape == (B, ACT) and float(jnp.max(jnp.abs(actions))) <= 1.0
    np.testing.assert_allclose(actions, jnp.clip(jax.vmap(networks.actor)(s), -1, 1))
    assert crl_is.AGENT.name == "crl_is" and crl_is.AGENT.config_type is crl_is.CRLISConfig
    assert crl_is.AGENT.update_target(None, networks, CONFIG) is None
    assert crl_is.AGENT.start_finetuning(networks, None, CONFIG) == (networks, None)
    assert crl_is.AGENT.sample_batch is crl_is.sample_goal_batch


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 0),
        ("hidden_dims", (0,)),
        ("latent_dim", 0),
        ("gamma", 1.0),
        ("tau", 2.0),
        ("actor_freq", 0),
        ("alpha", -1.0),
        ("logsumexp_penalty", -0.1),
        ("contrastive_loss", "backward_infonce"),
        ("num_critic_heads", 0),
        ("normalize_q_loss", "yes"),
        ("actor_mean_init_scale", 0.0),
    ],
)
def test_crl_is_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"CRLISConfig.{field}"):
        crl_is.CRLISConfig(**{field: value})


def test_defaults_are_the_authors_with_cube_singles_alpha():
    config = crl_is.CRLISConfig()
    assert (config.alpha, config.logsumexp_penalty, config.latent_dim, config.batch_size) == (
        30.0,
        0.01,
        512,
        256,
    )


@pytest.mark.parametrize("preset", sorted(infom.PRESETS))
def test_preset_config_takes_the_presets_networks_and_the_benchmarks_alpha(preset):
    p = infom.get_preset(preset)
    config = crl_is.preset_config(p)
    assert isinstance(config, crl_is.CRLISConfig)
    assert config.hidden_dims == p.infom.network.hidden_dims and config.latent_dim == config.hidden_dims[-1]
    assert (config.batch_size, config.learning_rate, config.gamma) == (
        p.infom.batch_size,
        p.infom.learning_rate,
        p.infom.gamma,
    )
    assert config.alpha == (30.0 if p.benchmark == "ogbench" else 0.03)
