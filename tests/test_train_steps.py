"""The composed training steps: what each update touches, target EMA and reset, blocks and seeds."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import tree_allclose

import infom


OBS, ACT = 4, 2
CONFIG = infom.InFOMConfig(
    network=infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=3), batch_size=8, num_futures=4
)


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)
    n = 300
    obs = np.cumsum(rng.normal(size=(n, OBS)), axis=0).astype(np.float32) * 0.1
    actions = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    terminals = np.zeros(n, bool)
    terminals[99::100] = True
    rewards = -np.abs(obs[:, 0]).astype(np.float32)
    raw = infom.Dataset.from_arrays(obs, actions, terminals=terminals, rewards=rewards)
    normalizer = infom.fit_normalizer(raw.observations)
    return infom.normalize_dataset(raw, normalizer), normalizer


@pytest.fixture(scope="module")
def optim():
    return infom.make_optimizer(CONFIG)


@pytest.fixture(scope="module")
def state(dataset, optim):
    return infom.init_train_state(OBS, ACT, dataset[1], CONFIG, optim, key=jr.key(0))


def _batch(dataset, key):
    return infom.sample_batch(dataset[0], key, CONFIG.batch_size)


def _changed(a, b):
    return not tree_allclose(a, b, rtol=0, atol=0)


_pretrain_step = eqx.filter_jit(infom.pretrain_step)
_finetune_step = eqx.filter_jit(infom.finetune_step)


def test_pretraining_moves_encoder_field_actor_but_not_reward_or_critic(state, dataset, optim, getkey):
    new, metrics = _pretrain_step(state, _batch(dataset, getkey()), key=getkey(), config=CONFIG, optim=optim)
    m0, m1 = state.models, new.models
    assert _changed(m0.encoder, m1.encoder) and _changed(m0.field, m1.field) and _changed(m0.actor, m1.actor)
    assert not _changed(m0.reward, m1.reward) and not _changed(m0.critic, m1.critic)
    assert int(new.step) == 1
    np.testing.assert_allclose(
        metrics.loss, metrics.flow_loss + CONFIG.kl_weight * metrics.kl + metrics.bc_loss, rtol=1e-5
    )


def test_target_field_is_the_ema_of_the_online_field(state, dataset, optim, getkey):
    new, _ = _pretrain_step(state, _batch(dataset, getkey()), key=getkey(), config=CONFIG, optim=optim)
    expected = infom.ema_update(state.target, new.models.field, CONFIG.tau)
    assert tree_allclose(new.target, expected, rtol=1e-6, atol=1e-8)
    assert _changed(new.target, state.target)


def test_start_finetuning_resets_the_target_to_the_online_field(state, dataset, optim, getkey):
    new, _ = _pretrain_step(state, _batch(dataset, getkey()), key=getkey(), config=CONFIG, optim=optim)
    assert _changed(new.target, new.models.field)
    reset = infom.start_finetuning(new)
    assert tree_allclose(reset.target, reset.models.field, rtol=0, atol=0)
    assert tree_allclose(reset.models, new.models, rtol=0, atol=0)


def _finetune_grads(state, batch, key, update_actor, config=CONFIG):
    return _jit_finetune_grads(state, batch, key, jnp.asarray(update_actor), config)[1]


@eqx.filter_jit
def _jit_finetune_grads(state, batch, key, update_actor, config):
    """`((loss, metrics), gradients)` of the fine-tuning loss with respect to the online models."""
    return eqx.filter_value_and_grad(
        lambda m: infom.finetune_loss(
            m,
            state.target,
            batch,
            key=key,
            config=config,
            update_actor=update_actor,
            clip=(state.normalizer.lower, state.normalizer.upper),
        ),
        has_aux=True,
    )(state.models)


def _zero(tree):
    return all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(eqx.filter(tree, eqx.is_array)))


def test_finetuning_gradients_reach_every_network_and_the_actor_only_on_actor_steps(state, dataset, getkey):
    batch, key = _batch(dataset, getkey()), getkey()
    with_actor = _finetune_grads(state, batch, key, True)
    without_actor = _finetune_grads(state, batch, key, False)
    for name in ("encoder", "field", "reward", "critic", "actor"):
        assert not _zero(getattr(with_actor, name)), name
    assert _zero(without_actor.actor)
    for name in ("encoder", "field", "reward", "critic"):
        assert tree_allclose(getattr(with_actor, name), getattr(without_actor, name), rtol=1e-6, atol=1e-7), (
            name
        )


def test_critic_targets_carry_no_gradient_into_field_or_reward(state, dataset, getkey):
    """The field's gradient equals that of the occupancy loss alone; the reward's that of its regression."""
    batch, key = _batch(dataset, getkey()), getkey()
    grads = _finetune_grads(state, batch, key, False)
    flow_key = jr.split(key, 3)[0]
    flow_grad = eqx.filter_grad(
        lambda f: infom.sarsa_flow_loss(
            f,
            state.models.encoder,
            state.target,
            batch,
            key=flow_key,
            gamma=CONFIG.gamma,
            kl_weight=CONFIG.kl_weight,
            clip=(state.normalizer.lower, state.normalizer.upper),
        )[0]
    )(state.models.field)
    assert tree_allclose(grads.field, flow_grad, rtol=1e-4, atol=1e-6)
    reward_grad = eqx.filter_grad(lambda r: infom.reward_loss(r, batch.observations, batch.rewards)[0])(
        state.models.reward
    )
    assert tree_allclose(grads.reward, reward_grad, rtol=1e-4, atol=1e-6)


def test_actor_updates_every_actor_freq_steps_in_a_block(state, dataset, optim, getkey):
    s = infom.start_finetuning(state)
    s, metrics = infom.finetune_block(s, dataset[0], key=getkey(), num_updates=8, config=CONFIG, optim=optim)
    np.testing.assert_array_equal(np.asarray(metrics.actor_updated), (np.arange(1, 9) % 4) == 0)
    assert int(s.step) == 8 and metrics.loss.shape == (8,)


def test_block_equals_the_same_steps_taken_one_by_one(state, dataset, optim, getkey):
    key = getkey()
    block_state, block_metrics = infom.pretrain_block(
        state, dataset[0], key=key, num_updates=3, config=CONFIG, optim=optim
    )
    s, losses = state, []
    for k in jr.split(key, 3):
        batch_key, step_key = jr.split(k)
        s, m = _pretrain_step(s, _batch(dataset, batch_key), key=step_key, config=CONFIG, optim=optim)
        losses.append(float(m.loss))
    np.testing.assert_allclose(block_metrics.loss, losses, rtol=1e-5)
    assert tree_allclose(block_state.models, s.models, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # the default run checks the same for fine-tuning blocks (the next test)
def test_seeds_vmapped_in_one_program_equal_separate_runs(dataset, optim):
    keys = jr.split(jr.key(3), 2)
    init = lambda k: infom.init_train_state(OBS, ACT, dataset[1], CONFIG, optim, key=k)
    block = lambda s, k: infom.pretrain_block(s, dataset[0], key=k, num_updates=2, config=CONFIG, optim=optim)
    states, metrics = eqx.filter_vmap(block)(eqx.filter_vmap(init)(keys), keys)
    assert metrics.loss.shape == (2, 2)
    single, single_metrics = block(init(keys[1]), keys[1])
    np.testing.assert_allclose(metrics.loss[1], single_metrics.loss, rtol=1e-5)


def test_vmapped_seeds_keep_the_actor_update_a_branch_and_the_same_results(state, dataset, optim):
    """With an unbatched `first_step` the actor's `lax.cond` stays a `cond` under the seed vmap
    (a batched step counter turns it into a select that runs the actor loss on every update),
    and every seed's result equals its own run."""
    keys = jr.split(jr.key(4), 2)
    states = eqx.filter_vmap(lambda k: infom.init_train_state(OBS, ACT, dataset[1], CONFIG, optim, key=k))(
        keys
    )

    def block(states, keys, first_step):
        return eqx.filter_vmap(
            lambda s, k: infom.finetune_block(
                s, dataset[0], key=k, num_updates=4, config=CONFIG, optim=optim, first_step=first_step
            )
        )(states, keys)

    def primitives(first_step):
        jaxpr = eqx.filter_make_jaxpr(lambda s, k: block(s, k, first_step))(states, keys)[0]
        return str(jaxpr)

    # The batched counter turns the actor's branch into a select: fewer `cond`s in the program.
    assert primitives(jnp.int32(0)).count(" cond[") > primitives(None).count(" cond[")
    vmapped, metrics = block(states, keys, jnp.int32(0))
    np.testing.assert_array_equal(np.asarray(metrics.actor_updated[0]), (np.arange(1, 5) % 4) == 0)
    single_state = jax.tree.map(lambda x: x[1] if eqx.is_array(x) else x, states)
    single, single_metrics = infom.finetune_block(
        single_state, dataset[0], key=keys[1], num_updates=4, config=CONFIG, optim=optim
    )
    np.testing.assert_allclose(metrics.loss[1], single_metrics.loss, rtol=1e-5)


@pytest.mark.parametrize("seed_batch", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_seeds_one_at_a_time_or_in_groups_equal_all_seeds_vmapped(dataset, optim, seed_batch):
    """`seeds_block(seed_batch=k)` runs the seeds in groups of `k` one after another (3 seeds: a
    group of 2 plus the remaining 1; in the slow run also groups of 1): the same updates as all
    three vmapped, the actor's update still a branch, in the seeds' order. (Groups of 1 on a mesh
    are in the default run: `tests/test_sharding.py`.)"""
    agent = infom.AGENTS["infom"]
    keys = jr.split(jr.key(5), 3)
    states = eqx.filter_vmap(lambda k: infom.init_train_state(OBS, ACT, dataset[1], CONFIG, optim, key=k))(
        keys
    )

    def block(seed_batch):
        return infom.seeds_block(
            agent,
            agent.finetune_loss,
            states,
            dataset[0],
            keys=keys,
            num_updates=4,
            config=CONFIG,
            optim=optim,
            first_step=jnp.int32(0),
            seed_batch=seed_batch,
        )

    vmapped, vmapped_metrics = block(None)
    got, metrics = block(seed_batch)
    np.testing.assert_allclose(metrics.loss, vmapped_metrics.loss, rtol=1e-5)
    np.testing.assert_array_equal(metrics.actor_updated, vmapped_metrics.actor_updated)
    assert tree_allclose(got.models, vmapped.models, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(vmapped_metrics.actor_updated[2]), (np.arange(1, 5) % 4) == 0)
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="`seed_batch` must be a positive integer or None"):
            block(bad)


@pytest.mark.parametrize(
    "overrides",
    [
        {"policy_extraction": "standard_gpi", "num_gpi_intentions": 2},
        {"policy_extraction": "one_step"},
        {"critic_intentions": "encoder", "intention_sharing": "per_future"},
        {"target_form": "td2", "clip_futures": False},
    ],
    ids=["standard-gpi", "one-step", "encoder-per-future", "td2-noclip"],
)
def test_ablations_run_and_give_finite_losses(state, dataset, getkey, overrides):
    config = dataclasses.replace(CONFIG, **overrides)
    (loss, metrics), grads = _jit_finetune_grads(
        infom.start_finetuning(state), _batch(dataset, getkey()), getkey(), jnp.asarray(True), config
    )
    assert bool(jnp.isfinite(loss))
    for name, value in metrics._asdict().items():
        if value is not None:
            assert bool(jnp.all(jnp.isfinite(value))), name
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array)))
    assert not _zero(grads.actor)
    if overrides.get("policy_extraction") == "standard_gpi":
        assert _zero(grads.critic)  # no critic: the actor differentiates through the ODE


def test_fom_without_intentions(dataset, getkey):
    config = dataclasses.replace(
        CONFIG, network=dataclasses.replace(CONFIG.network, latent_dim=0), policy_extraction="one_step"
    )
    optim = infom.make_optimizer(config)
    s = infom.init_train_state(OBS, ACT, dataset[1], config, optim, key=getkey())
    s, m = infom.pretrain_block(s, dataset[0], key=getkey(), num_updates=2, config=config, optim=optim)
    assert float(m.kl[-1]) == 0.0 and bool(jnp.all(jnp.isfinite(m.loss)))


def test_policy_actions_normalise_raw_observations_and_clip(state, dataset):
    raw = jnp.asarray(np.random.default_rng(1).normal(size=(5, OBS)), dtype=jnp.float32)
    actions = infom.policy_actions(state, raw)
    want = jnp.clip(jax.vmap(state.models.actor)(state.normalizer.normalize(raw)), -1, 1)
    np.testing.assert_allclose(actions, want, rtol=1e-6)


@pytest.mark.parametrize(
    "field, value",
    [
        ("gamma", 1.0),
        ("expectile", 0.4),
        ("tau", 1.5),
        ("batch_size", 0),
        ("policy_extraction", "max"),
        ("kl_weight", -1.0),
        ("learning_rate", 0.0),
        ("critic_solver", "rk4"),
        ("q_aggregation", "min"),
        ("critic_flow_steps", -1),
        ("critic_flow_steps", 0),
        ("antithetic_futures", True),
    ],
)
def test_infom_config_rejects_bad_values_naming_the_field(field, value):
    base = infom.InFOMConfig(num_futures=15)  # odd, so that antithetic_futures is rejected
    with pytest.raises((ValueError, TypeError), match=field):
        dataclasses.replace(base, **{field: value})


def test_infom_config_rejects_antithetic_and_latin_hypercube_futures_together():
    with pytest.raises(ValueError, match="latin_hypercube_futures"):
        infom.InFOMConfig(antithetic_futures=True, latin_hypercube_futures=True)


def test_critic_sampling_options_equal_sample_future_with_that_solver(state, dataset, getkey):
    """`critic_solver` / `critic_flow_steps` / `antithetic_futures` / `latin_hypercube_futures` reach the
    critic's futures: `mc_q_targets` equals `mc_q` of `sample_future` called with those options directly."""
    import diffrax

    config = dataclasses.replace(
        CONFIG,
        critic_solver=diffrax.Midpoint(),
        critic_flow_steps=3,
        antithetic_futures=True,
        critic_intentions="encoder",
    )
    batch, key = _batch(dataset, getkey()), getkey()
    models = state.models
    got = infom.mc_q_targets(models, batch, key=key, config=config)
    z_key, future_key = jr.split(key)
    encode_key, _ = jr.split(z_key)  # (encoder, per-future noise) in `_critic_intentions`
    z = infom.encode(models.encoder, batch.next_observations, batch.next_actions, key=encode_key).sample
    futures = infom.sample_future(
        models.field,
        batch.observations,
        batch.actions,
        z,
        key=future_key,
        shape=(CONFIG.num_futures, CONFIG.batch_size),
        num_steps=3,
        solver=diffrax.Midpoint(),
        noise=infom.AntitheticNoise(0),
    )
    want = infom.mc_q(models.reward, futures, gamma=config.gamma)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    default = infom.mc_q_targets(
        models,
        batch,
        key=key,
        config=dataclasses.replace(
            config, critic_solver=diffrax.Euler(), critic_flow_steps=None, antithetic_futures=False
        ),
    )
    assert not np.allclose(got, default)
    # Latin hypercube noise over the futures axis, likewise.
    config = dataclasses.replace(config, antithetic_futures=False, latin_hypercube_futures=True)
    got = infom.mc_q_targets(models, batch, key=key, config=config)
    futures = infom.sample_future(
        models.field,
        batch.observations,
        batch.actions,
        z,
        key=future_key,
        shape=(CONFIG.num_futures, CONFIG.batch_size),
        num_steps=3,
        solver=diffrax.Midpoint(),
        noise=infom.LatinHypercubeNoise(0),
    )
    want = infom.mc_q(models.reward, futures, gamma=config.gamma)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_config_future_intention_gradient_reaches_the_encoder_only_through_the_flow(state, dataset, getkey):
    """`InFOMConfig.future_intention_gradient` is passed to `sarsa_flow_loss`: it changes the encoder's
    gradient and leaves the other networks' gradients unchanged."""
    batch, key = _batch(dataset, getkey()), getkey()
    target = state.target

    def grads(flag):
        config = dataclasses.replace(CONFIG, kl_weight=0.0, future_intention_gradient=flag)
        loss = lambda models: infom.pretrain_loss(models, target, batch, key=key, config=config)[0]
        return eqx.filter_grad(loss)(state.models)

    off, on = grads(False), grads(True)
    assert not tree_allclose(off.encoder, on.encoder, rtol=1e-3, atol=1e-7)
    assert tree_allclose(off.field, on.field, rtol=1e-6, atol=1e-8)
    assert tree_allclose(off.actor, on.actor, rtol=0, atol=0)


def test_an_episode_context_reaches_the_loss_through_the_agents_sampler(state, dataset, optim):
    """With `intention_context="episode"` a training block draws its batches with
    `sample_batch_with_context` (the agent's `sample_batch`): it equals the same updates taken one
    by one on such batches, and differs from the next-pair default."""
    config = dataclasses.replace(
        CONFIG, intention_context="episode", context_window=5, future_intention_gradient=True
    )
    key = jr.key(7)
    block = eqx.filter_jit(infom.pretrain_block)
    got, _ = block(state, dataset[0], key=key, num_updates=3, config=config, optim=optim)
    want = state
    for update_key in jr.split(key, 3):
        batch_key, step_key = jr.split(update_key)
        batch = infom.sample_batch_with_context(dataset[0], batch_key, config.batch_size, window=5)
        want, _ = _pretrain_step(want, batch, key=step_key, config=config, optim=optim)
    assert tree_allclose(got.models, want.models, rtol=1e-5, atol=1e-6)
    plain_config = dataclasses.replace(config, intention_context="next_pair")
    plain, _ = block(state, dataset[0], key=key, num_updates=3, config=plain_config, optim=optim)
    assert _changed(plain.models.encoder, got.models.encoder)
