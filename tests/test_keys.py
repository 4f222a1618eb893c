"""The key tree of a run: every key a run derives is distinct, and a seed's keys do not depend on its
neighbours."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import infom
from infom.training import _keys


def _bits(keys) -> list[bytes]:
    data = np.asarray(jr.key_data(keys)).reshape(-1, 2)
    return [row.tobytes() for row in data]


def test_split_equals_fold_in_here_which_is_why_the_tree_never_mixes_them():
    k = jr.key(7)
    assert _bits(jr.split(k, 3)[1:2]) == _bits(jr.fold_in(k, 1)[None])


def test_every_key_a_run_derives_is_distinct():
    seed, num_seeds, blocks, updates = 3, 3, 12, 4
    derived = []
    roots = _keys.seed_roots(seed, num_seeds)
    init = _keys.init_keys(seed, num_seeds)
    derived += _bits(roots) + _bits(init)
    derived += _bits(jax.vmap(lambda k: jr.split(k, 5))(init))  # init_models: one key per network
    for b in range(blocks):
        block = _keys.block_keys(seed, num_seeds, b)
        derived += _bits(block)
        update_keys = jax.vmap(lambda k: jr.split(k, updates))(block)  # the block's lax.scan
        derived += _bits(update_keys)
        derived += _bits(jax.vmap(jax.vmap(jr.split))(update_keys))  # (batch, loss) per update
    derived += _bits(
        jnp.stack([_keys.run_key(seed, s) for s in (_keys.DATA, _keys.EVALUATION, _keys.DIAGNOSTICS)])
    )
    assert len(derived) == len(set(derived))


def test_a_seeds_keys_do_not_depend_on_the_seeds_beside_it():
    together = _keys.block_keys(0, 3, block_index=5)
    alone = _keys.block_keys(2, 1, block_index=5)
    assert _bits(together[2:]) == _bits(alone)
    assert _bits(_keys.init_keys(0, 3)[1:2]) == _bits(_keys.init_keys(1, 1))


def test_posterior_intentions_per_future_draw_fresh_noise():
    """With posterior intentions per future, the per-future noise is not the encoder's own draw."""
    from infom.agents.infom import _critic_intentions

    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=(8,), latent_dim=3),
        num_futures=2,
        critic_intentions="encoder",
        intention_sharing="per_future",
    )
    models = infom.init_models(4, 2, config.network, key=jr.key(0))
    batch = infom.Batch(
        jnp.zeros((5, 4)), jnp.zeros((5, 2)), jnp.ones((5, 4)), jnp.ones((5, 2)), jnp.zeros(5), jnp.ones(5)
    )
    key = jr.key(1)
    z = _critic_intentions(models, batch, key, config)
    # Whatever key the encoder is given inside (the function's own key, as before the fix, or a
    # subkey of it), the per-future noise must be a different draw.
    for encoder_key in (key, jr.split(key)[0]):
        posterior = infom.encode(models.encoder, batch.next_observations, batch.next_actions, key=encoder_key)
        scale = jnp.exp(posterior.log_std)
        eps = (z - posterior.mean[None]) / scale[None]
        encoder_eps = (posterior.sample - posterior.mean) / scale
        assert not np.allclose(eps[0], encoder_eps, atol=1e-4)
        assert not np.allclose(eps[1], encoder_eps, atol=1e-4)
