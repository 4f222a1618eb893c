"""The networks: shapes, initialisation, and the exactness of the split first layer."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import infom


OBS, ACT, LATENT = 5, 2, 4
CONFIG = infom.NetworkConfig(hidden_dims=(32, 32, 32), latent_dim=LATENT)


@pytest.fixture(scope="module")
def models():
    return infom.init_models(OBS, ACT, CONFIG, key=jr.key(0))


def _unsplit_field(field, t, x, s, a, z):
    """The same field as one MLP on the concatenation `[x, t, s, a, z]`."""
    weight = jnp.concatenate([field.weight_x, field.weight_t[:, None], field.weight_cond], axis=1)
    h = jax.nn.gelu(weight @ jnp.concatenate([x, jnp.array([t]), s, a, z]) + field.bias)
    if field.first_norm:
        h = field.first_norm[0](h)
    return field.trunk(h)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_split_first_layer_equals_one_mlp_on_the_concatenation(layer_norm, getkey):
    field = infom.VectorField(OBS, ACT, LATENT, (32, 32), layer_norm=layer_norm, key=getkey())
    t, x, s, a, z = 0.3, *(jr.normal(getkey(), (d,)) for d in (OBS, OBS, ACT, LATENT))
    np.testing.assert_allclose(
        field(t, x, s, a, z), _unsplit_field(field, t, x, s, a, z), rtol=1e-5, atol=1e-6
    )
    cond = field.condition(s, a, z)
    np.testing.assert_array_equal(field.velocity(t, x, cond), field(t, x, s, a, z))


def test_shapes(models, getkey):
    s, a, z = jr.normal(getkey(), (OBS,)), jr.normal(getkey(), (ACT,)), jr.normal(getkey(), (LATENT,))
    mean, log_std = models.encoder(s, a)
    assert mean.shape == log_std.shape == (LATENT,)
    assert models.field(0.5, s, s, a, z).shape == (OBS,)
    assert models.reward(s).shape == ()
    assert models.critic(s, a).shape == (2,)
    assert models.actor(s).shape == (ACT,)


def test_variance_scaling_fan_avg_uniform_bounds(getkey):
    w = infom.MLP(300, (100,), layer_norm=False, key=getkey()).layers[0].weight
    limit = np.sqrt(3.0 / ((300 + 100) / 2))
    assert float(jnp.abs(w).max()) <= limit
    np.testing.assert_allclose(float(jnp.var(w)), limit**2 / 3, rtol=0.05)
    from infom._networks import variance_scaling_uniform

    assert variance_scaling_uniform(getkey(), 0, 5).shape == (0, 5)  # an intention of size 0 (FOM)


def test_vector_field_init_is_that_of_the_unsplit_layer(getkey):
    field = infom.VectorField(OBS, ACT, LATENT, (64,), key=getkey())
    fan_in = OBS + 1 + OBS + ACT + LATENT
    limit = np.sqrt(3.0 / ((fan_in + 64) / 2))
    weight = jnp.concatenate([field.weight_x, field.weight_t[:, None], field.weight_cond], axis=1)
    assert weight.shape == (64, fan_in)
    assert float(jnp.abs(weight).max()) <= limit and float(jnp.abs(weight).max()) > 0.9 * limit


def test_actor_mean_head_starts_small(models, getkey):
    s = jr.normal(getkey(), (64, OBS))
    assert float(jnp.abs(jax.vmap(models.actor)(s)).max()) < 0.1


def test_layer_norm_placement_follows_config(models):
    assert len(models.encoder.trunk.norms) == 3 and len(models.reward.mlp.norms) == 3
    assert models.field.first_norm == () and models.actor.trunk.norms == ()
    assert models.critic.heads.norms == ()


def test_critic_heads_are_independent(models):
    w = models.critic.heads.layers[0].weight
    assert w.shape[0] == 2 and not np.allclose(w[0], w[1])


def test_models_are_pytrees_of_arrays_only(models):
    leaves = jax.tree.leaves(models)
    assert all(eqx.is_array(x) for x in leaves)


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_dims", ()),
        ("hidden_dims", (0, 4)),
        ("latent_dim", -1),
        ("num_critic_heads", -1),
        ("actor_mean_init_scale", 0.0),
    ],
)
def test_network_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(infom.NetworkConfig(), **{field: value})


def test_network_config_is_frozen_with_paper_defaults():
    config = infom.NetworkConfig()
    assert config.hidden_dims == (512,) * 4 and config.latent_dim == 512
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 3  # type: ignore[misc]
