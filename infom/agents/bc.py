"""Behaviour cloning: the Gaussian actor `pi(a | s) = N(mu(s), I)` fitted to the data's actions.

Pre-trained on the reward-free data and fine-tuned on the reward-labelled data with the same
loss (the rewards are not used): the baseline that asks how much of a method's score the data's
actions alone explain. It is InFOM's pre-trained actor promoted to an agent of its own.
"""

import dataclasses
import typing
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._config import _check_hidden_dims, _check_positive, _check_positive_int
from .._losses import bc_loss
from .._networks import Actor
from ._base import Agent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `learning_rate=1` is accepted.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning's settings (the defaults of the InFOM authors' shared setup).

    **Fields:**

    - `hidden_dims`: the actor's hidden widths (4 x 512).
    - `learning_rate`: Adam's (3e-4). `batch_size`: 256.
    - `actor_layer_norm`: layer norm in the actor (off, as InFOM's actor).
    - `actor_mean_init_scale`: the mean head's initial scale (1e-2, as InFOM's actor).
    - `actor_freq`, `tau`: read by the training layer; BC updates its actor on every update and
      has no target networks.
    """

    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    learning_rate: float = 3e-4
    batch_size: int = 256
    actor_layer_norm: bool = False
    actor_mean_init_scale: float = 1e-2
    actor_freq: int = 1
    tau: float = 0.005

    def __post_init__(self):
        owner = "BCConfig"
        _check_hidden_dims(owner, self.hidden_dims)
        _check_positive(owner, "learning_rate", self.learning_rate)
        for name in ("batch_size", "actor_freq"):
            _check_positive_int(owner, name, getattr(self, name))


class BCNetworks(eqx.Module):
    """BC's only network."""

    actor: Actor


class BCMetrics(NamedTuple):
    """Per-update BC metrics (batch means)."""

    loss: Scalar
    action_mse: Scalar


def init(obs_dim: int, action_dim: int, config: BCConfig, *, key: PRNGKeyArray) -> tuple[BCNetworks, None]:
    """A fresh actor; BC has no target networks."""
    actor = Actor(
        obs_dim,
        action_dim,
        config.hidden_dims,
        layer_norm=config.actor_layer_norm,
        mean_init_scale=config.actor_mean_init_scale,
        key=key,
    )
    return BCNetworks(actor), None


def loss(online: BCNetworks, target: None, batch, *, key, config, normalizer, update_actor):
    """`-mean_batch log pi(a | s)`; the same on both datasets (rewards, `key` and the actor
    schedule are not used: BC has nothing else to update)."""
    del target, key, config, normalizer, update_actor
    value, _ = bc_loss(online.actor, batch.observations, batch.actions)
    means = jax.vmap(online.actor)(batch.observations)
    return value, BCMetrics(value, jnp.mean(jnp.square(means - batch.actions)))


def act(online: BCNetworks, observations: Float[Array, "batch obs_dim"]) -> Float[Array, "batch action_dim"]:
    """`clip(mu(s), -1, 1)`."""
    return jnp.clip(jax.vmap(online.actor)(observations), -1.0, 1.0)


def preset_config(preset) -> BCConfig:
    """The preset's network widths, batch size and learning rate (BC has no other setting)."""
    return BCConfig(
        hidden_dims=preset.infom.network.hidden_dims,
        learning_rate=preset.infom.learning_rate,
        batch_size=preset.infom.batch_size,
    )


AGENT = Agent(
    name="bc",
    config_type=BCConfig,
    init=init,
    pretrain_loss=loss,
    finetune_loss=loss,
    update_target=lambda target, online, config: target,
    start_finetuning=lambda online, target, config, *, batch=None: (online, target),
    act=act,
    preset_config=preset_config,
)
"""Behaviour cloning on the common training layer."""
