"""Implicit Q-learning (IQL; Kostrikov et al., 2022), the InFOM paper's IQL baseline.

Follows the authors' `agents/iql.py` in `chongyi-zheng/infom` (the same agent as
`seohongpark/fql`): an expectile value `V(s)` fitted to the target critic, a two-head critic
`Q(s, a)` regressed on `r + gamma * mask * V(s')`, and an AWR actor; pre-training (reward-free
data) is behaviour cloning of the actor, as in the authors' `pretraining_loss`. Line numbers
below refer to commit f0356dd of that repository.

The whole fine-tuning loss, for a batch `(s, a, r, s', mask)`:

    L_V   = mean L_2^mu(min_i Q_bar_i(s, a) - V(s))                  (expectile mu)
    L_Q   = mean sum_i (r + gamma * mask * sg[V(s')] - Q_i(s, a))^2
    L_pi  = -mean min(exp(alpha * sg[min_i Q_i(s, a) - V(s)]), w_max) * log pi(a | s)

with `Q_bar` the EMA target critic, `sg` the stop-gradient and `L_pi` taken on actor steps only.
"""

import dataclasses
import typing
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar, ScalarLike

from .._config import _check_hidden_dims, _check_positive, _check_positive_int, _check_range
from .._losses import (
    bc_loss,
    critic_values,
    ema_update,
    expectile_loss,
    frozen,
    gaussian_log_prob,
    reset_target,
)
from .._networks import MLP, Actor, Critic
from .._types import Batch
from ..data._dataset import Normalizer
from ._base import Agent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha=3` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """IQL's hyper-parameters: the authors' `get_config()` defaults (`agents/iql.py:287-307`),
    with the AWR temperature of their OGBench cube-single command (`README.md:270`).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (iql.py:291).
    batch_size: int = 256  # Transitions per update (iql.py:292).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Widths of actor, critic and value (iql.py:293-294).
    actor_layer_norm: bool = False  # Layer norm in the actor (iql.py:295).
    value_layer_norm: bool = True  # Layer norm in the critic and the value (iql.py:296).
    num_critic_heads: int = 2  # Critic ensemble size; min over heads (iql.py:255, num_ensembles=2).
    gamma: float = 0.99  # Discount (iql.py:297, `discount`).
    tau: float = 0.005  # Target-critic EMA rate, every update (iql.py:298).
    actor_freq: int = 4  # The actor is updated every `actor_freq` updates (iql.py:299; main.py:184).
    expectile: float = 0.9  # Expectile mu of the value loss (iql.py:300).
    alpha: float = 1.0  # AWR temperature (README.md:270 cube-single; get_config's default is 10, iql.py:302).
    max_weight: float = 100.0  # Clip of the AWR weight exp(alpha * adv) (iql.py:84).
    actor_mean_init_scale: float = 1e-2  # Init scale of the actor's mean head (utils/networks.py, Actor).

    def __post_init__(self):
        owner = "IQLConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        _check_hidden_dims(owner, self.hidden_dims)
        for name in ("actor_layer_norm", "value_layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        _check_range(owner, "expectile", self.expectile, 0.5, 1.0, high_open=True)
        if not self.alpha >= 0:
            raise ValueError(f"{owner}.alpha must be non-negative, got {self.alpha!r}")
        _check_positive(owner, "max_weight", self.max_weight)
        _check_positive(owner, "actor_mean_init_scale", self.actor_mean_init_scale)


def config_from(config, **fields) -> IQLConfig:
    """The [`IQLConfig`][infom.agents.iql.IQLConfig] of an agent that runs IQL on its own networks
    (FB + IQL, HILP + IQL): every IQL field that `config` has, by name, then `fields`."""
    shared = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(IQLConfig) if hasattr(config, f.name)
    }
    return IQLConfig(**(shared | fields))


class IQLNetworks(eqx.Module):
    """IQL's trained networks: critic `Q_i(s, a)`, value `V(s)` (an MLP with one output) and
    actor `pi(a | s) = N(mu(s), I)`."""

    critic: Critic
    value: MLP
    actor: Actor


class IQLTargets(eqx.Module):
    """IQL's only target network: the EMA critic `Q_bar` (the value and actor have none)."""

    critic: Critic


class IQLPretrainMetrics(NamedTuple):
    """Behaviour-cloning metrics (batch means)."""

    loss: Scalar
    action_mse: Scalar


class IQLMetrics(NamedTuple):
    """Fine-tuning metrics (batch means); the actor's terms are 0 on updates without the actor."""

    loss: Scalar
    value_loss: Scalar
    critic_loss: Scalar
    actor_loss: Scalar
    q_mean: Scalar
    v_mean: Scalar
    adv_mean: Scalar
    weight_mean: Scalar


def init(
    obs_dim: int, action_dim: int, config: IQLConfig, *, key: PRNGKeyArray
) -> tuple[IQLNetworks, IQLTargets]:
    """Fresh IQL networks; the target critic starts as a copy of the critic (iql.py:282).

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of an observation and an action.
    - `config`: an [`IQLConfig`][].
    - `key`: a JAX PRNG key, split into `(critic, value, actor)` subkeys.

    **Returns:** `(IQLNetworks(critic, value, actor), IQLTargets(critic))`.
    """
    critic_key, value_key, actor_key = jr.split(key, 3)
    online = IQLNetworks(
        critic=Critic(
            obs_dim,
            action_dim,
            config.hidden_dims,
            num_heads=config.num_critic_heads,
            layer_norm=config.value_layer_norm,
            key=critic_key,
        ),
        value=MLP(obs_dim, (*config.hidden_dims, 1), layer_norm=config.value_layer_norm, key=value_key),
        actor=Actor(
            obs_dim,
            action_dim,
            config.hidden_dims,
            layer_norm=config.actor_layer_norm,
            mean_init_scale=config.actor_mean_init_scale,
            key=actor_key,
        ),
    )
    return online, IQLTargets(critic=reset_target(online.critic))


def state_values(value: MLP, observations: Float[Array, "batch obs_dim"]) -> Float[Array, " batch"]:
    """`V(s)` for a batch of observations."""
    return jax.vmap(lambda s: value(s)[0])(observations)


def pretrain_loss(
    online: IQLNetworks,
    target: IQLTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: IQLConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, IQLPretrainMetrics]:
    """Behaviour cloning on reward-free data: `-mean_batch log N(a; mu(s), I)` (iql.py:58-72, 131-140).

    Only the actor gets a gradient. `batch.rewards`, `target`, `key`, `normalizer` and
    `update_actor` are unused (the authors clone the behaviour policy on every pre-training update).

    **Arguments:**

    - `online`: the [`IQLNetworks`][] (trained).
    - `target`: the [`IQLTargets`][] (unused).
    - `batch`: a [`Batch`][]; only `observations` and `actions` are read.
    - `key`, `config`, `normalizer`, `update_actor`: the interface's arguments.

    **Returns:** `(loss, IQLPretrainMetrics(loss, action_mse))`, with `action_mse` the mean
    squared error between `mu(s)` and `a` over all action entries.
    """
    del target, key, normalizer, update_actor
    loss, _ = bc_loss(online.actor, batch.observations, batch.actions)
    means = jax.vmap(online.actor)(batch.observations)
    return loss, IQLPretrainMetrics(loss, jnp.mean(jnp.square(means - batch.actions)))


def conditioned(batch: Batch, latents: Float[Array, "batch latent_dim"]) -> Batch:
    """The batch with every state replaced by `[s, z]` (and `s'` by `[s', z]`), row by row: IQL on
    networks conditioned on a latent (FB's and HILP's task or skill). Actions, rewards and masks
    are kept."""
    return Batch(
        observations=jnp.concatenate([batch.observations, latents], axis=-1),
        actions=batch.actions,
        next_observations=jnp.concatenate([batch.next_observations, latents], axis=-1),
        next_actions=batch.next_actions,
        rewards=batch.rewards,
        masks=batch.masks,
    )


def awr_weights(
    advantages: Float[Array, " batch"], alpha: ScalarLike, max_weight: ScalarLike
) -> Float[Array, " batch"]:
    """The AWR weights `min(exp(alpha * sg[adv]), max_weight)` (iql.py:83-84).

    The advantage is stop-gradient, so the weights carry no gradient into the critic or the value.
    """
    return jnp.minimum(jnp.exp(alpha * jax.lax.stop_gradient(advantages)), max_weight)


def finetune_loss(
    online: IQLNetworks,
    target: IQLTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: IQLConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, IQLMetrics]:
    """IQL's loss `L_V + L_Q + 1(update_actor) L_pi` on a reward-labelled batch (iql.py:143-167).

    - value (iql.py:29-41): `L_V = mean L_2^mu(min_i Q_bar_i(s, a) - V(s))`, the target critic
      frozen; `V` is trained.
    - critic (iql.py:43-56): `L_Q = mean_batch sum_i (r + gamma * mask * sg[V(s')] - Q_i(s, a))^2`
      (summed over heads, as the authors' `(q1 - q)**2 + (q2 - q)**2`).
    - actor, only when `update_actor` (a `lax.cond`; iql.py:76-99):
      `L_pi = -mean w * log N(a; mu(s), I)` with `w = min(exp(alpha (min_i Q_i(s, a) - V(s))), w_max)`,
      the online critic and value stop-gradient (see [`awr_weights`][]).

    Each network gets gradients from its own term only; `target` gets none (it is a later
    argument and is frozen here as well).

    **Arguments:**

    - `online`: the [`IQLNetworks`][] (trained).
    - `target`: the [`IQLTargets`][] (frozen).
    - `batch`: a [`Batch`][]; `next_actions` is unused.
    - `key`: unused (every term is deterministic: the actor has a constant std and AWR
      evaluates the data's actions).
    - `config`: an [`IQLConfig`][].
    - `normalizer`: unused.
    - `update_actor`: whether this update includes the actor's term.

    **Returns:** `(loss, IQLMetrics(...))`; `q_mean` is the online critic's mean over heads and batch.
    """
    del key, normalizer
    target = frozen(target)
    s, a = batch.observations, batch.actions

    q_target = jnp.min(critic_values(target.critic, s, a), axis=-1)
    v = state_values(online.value, s)
    value_loss = jnp.mean(expectile_loss(q_target - v, config.expectile))

    next_v = jax.lax.stop_gradient(state_values(online.value, batch.next_observations))
    backup = batch.rewards + config.gamma * batch.masks * next_v
    qs = critic_values(online.critic, s, a)
    critic_loss = jnp.mean(jnp.sum(jnp.square(qs - backup[:, None]), axis=-1))

    advantages = jax.lax.stop_gradient(jnp.min(qs, axis=-1) - v)
    weights = awr_weights(advantages, config.alpha, config.max_weight)

    def with_actor(actor: Actor) -> Scalar:
        return -jnp.mean(weights * gaussian_log_prob(jax.vmap(actor)(s), a))

    def without_actor(actor: Actor) -> Scalar:
        return jnp.zeros((), dtype=value_loss.dtype)

    actor_loss = jax.lax.cond(jnp.asarray(update_actor), with_actor, without_actor, online.actor)
    loss = value_loss + critic_loss + actor_loss
    metrics = IQLMetrics(
        loss=loss,
        value_loss=value_loss,
        critic_loss=critic_loss,
        actor_loss=actor_loss,
        q_mean=jnp.mean(qs),
        v_mean=jnp.mean(v),
        adv_mean=jnp.mean(advantages),
        weight_mean=jnp.mean(weights),
    )
    return loss, metrics


def update_target(target: IQLTargets, online: IQLNetworks, config: IQLConfig) -> IQLTargets:
    """`Q_bar <- tau * Q + (1 - tau) * Q_bar` after every update (iql.py:169-176, 199).

    !!! note

        The authors average the critic's parameters from *before* the update (their
        `self.network`); the interface hands the updated ones, a one-update lag that we drop.
        In pre-training the critic does not change (its gradient is zero and Adam's step from
        zero moments is zero), so the EMA there is a no-op, as the authors' absent update.
    """
    return IQLTargets(critic=ema_update(target.critic, online.critic, config.tau))


def start_finetuning(
    online: IQLNetworks, target: IQLTargets, config: IQLConfig, *, batch: Batch | None = None
) -> tuple[IQLNetworks, IQLTargets]:
    """Nothing happens between the phases for IQL (the authors reset targets only for InFOM,
    DINO, TD InfoNCE and HILP: `main.py:148-150`)."""
    return online, target


def act(online: IQLNetworks, observations: Float[Array, "batch obs_dim"]) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(mu(s), -1, 1)`: the authors evaluate at temperature 0
    (utils/evaluation.py) and clip (iql.py:213)."""
    return jnp.clip(jax.vmap(online.actor)(observations), -1.0, 1.0)


def preset_config(preset) -> IQLConfig:
    """IQL for a named preset: the preset's network widths, batch size, learning rate and
    discount, and the authors' AWR temperature for its domain. The authors give IQL's settings
    for two domains only (README: `--agent.alpha=1` for OGBench cube-single and for ExORL
    cheetah); the other domains take the same `alpha = 1` and the default expectile 0.9."""
    return IQLConfig(
        hidden_dims=preset.infom.network.hidden_dims,
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        alpha=1.0,
    )


AGENT = Agent(
    name="iql",
    config_type=IQLConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
)
