"""Revisited behaviour-regularised actor-critic (ReBRAC; Tarasov et al., 2023), the InFOM
paper's ReBRAC baseline.

Follows the authors' `agents/rebrac.py` in `chongyi-zheng/infom` (the same agent as
`seohongpark/fql`): TD3+BC with layer norm in the critic, a deterministic tanh-squashed actor and
separate behaviour penalties in the actor and in the critic's target; pre-training (reward-free
data) is behaviour cloning of the actor, as in the authors' `pretraining_loss`. Line numbers
below refer to commit f0356dd of that repository.

The whole fine-tuning loss, for a batch `(s, a, r, s', a', mask)`, with `pi(s) = tanh(mu(s))`:

    a~    = clip(pi_bar(s') + clip(sigma * eps, -c, c), -1, 1),        eps ~ N(0, I)
    y     = r + gamma * mask * (min_i Q_bar_i(s', a~) - alpha_critic * ||a~ - a'||^2)
    L_Q   = mean_{batch, i} (Q_i(s, a) - y)^2
    L_pi  = -mean Q(s, pi(s)) / sg[mean |Q(s, pi(s))|] + alpha_actor * mean ||pi(s) - a||^2

with `Q = min_i Q_i` frozen in `L_pi`, `pi_bar`, `Q_bar` the EMA targets and `L_pi` taken on
actor steps only.
"""

import dataclasses
import typing
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar

from .._config import _check_hidden_dims, _check_positive, _check_positive_int, _check_range
from .._losses import critic_values, ema_update, frozen, gaussian_log_prob, reset_target
from .._networks import Actor, Critic
from .._types import Batch
from ..data._dataset import Normalizer
from ._base import Agent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha_actor=1` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class ReBRACConfig:
    """ReBRAC's hyper-parameters: the authors' `get_config()` defaults (`agents/rebrac.py:261-283`),
    with the penalty weights of their OGBench cube-single command (`README.md:275`).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (rebrac.py:265).
    batch_size: int = 256  # Transitions per update (rebrac.py:266).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Widths of actor and critic (rebrac.py:267-268).
    actor_layer_norm: bool = False  # Layer norm in the actor (rebrac.py:269).
    critic_layer_norm: bool = True  # Layer norm in the critic (rebrac.py:270, `value_layer_norm`).
    num_critic_heads: int = 2  # Critic ensemble size; min over heads (rebrac.py:226, num_ensembles=2).
    gamma: float = 0.99  # Discount (rebrac.py:271, `discount`).
    tau: float = 0.005  # Target EMA rate, applied on actor updates only (rebrac.py:272, 168-171).
    tanh_squash: bool = True  # Actions are tanh(mu(s)) (rebrac.py:273).
    actor_mean_init_scale: float = 1e-2  # Actor mean head's init scale (rebrac.py:274, `actor_fc_scale`).
    alpha_actor: float = 1.0  # Actor's BC weight (README.md:275 cube-single; get_config: 0.0, rebrac.py:275).
    alpha_critic: float = 1.0  # Critic's next-action penalty (README.md:275; get_config: 0.0, rebrac.py:276).
    actor_freq: int = 4  # The actor (and the targets) update every `actor_freq` updates (rebrac.py:277).
    actor_noise: float = 0.2  # Std of the target policy's smoothing noise (rebrac.py:278).
    actor_noise_clip: float = 0.5  # Clip of that noise (rebrac.py:279).
    action_clip_eps: float = 1e-5  # BC clips data actions to [-1 + eps, 1 - eps] (envs/env_utils.py:131).

    def __post_init__(self):
        owner = "ReBRACConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        _check_hidden_dims(owner, self.hidden_dims)
        for name in ("actor_layer_norm", "critic_layer_norm", "tanh_squash"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        for name in ("alpha_actor", "alpha_critic", "actor_noise", "actor_noise_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{owner}.{name} must be non-negative, got {getattr(self, name)!r}")
        _check_positive(owner, "actor_mean_init_scale", self.actor_mean_init_scale)
        _check_range(owner, "action_clip_eps", self.action_clip_eps, 0.0, 1.0, high_open=True)


def config_from(config, **fields) -> ReBRACConfig:
    """The [`ReBRACConfig`][infom.agents.rebrac.ReBRACConfig] of an agent that runs ReBRAC on its own
    networks (DINO + ReBRAC, MBPO + ReBRAC): every ReBRAC field that `config` has, by name, then
    `fields`."""
    shared = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(ReBRACConfig) if hasattr(config, f.name)
    }
    return ReBRACConfig(**(shared | fields))


class ReBRACNetworks(eqx.Module):
    """ReBRAC's trained networks: the critic `Q_i(s, a)` and the actor's mean `mu(s)`; the
    structural flag `tanh_squash` says whether the policy is `tanh(mu(s))` (so that
    [`act`][infom.agents.rebrac.act], which gets no config, knows it)."""

    critic: Critic
    actor: Actor
    tanh_squash: bool = eqx.field(static=True)


class ReBRACTargets(eqx.Module):
    """ReBRAC's target networks (EMA copies of both) and the count of `update_target` calls,
    which decides on which updates the EMA moves (see
    [`update_target`][infom.agents.rebrac.update_target])."""

    critic: Critic
    actor: Actor
    num_updates: Int[Array, ""]


class ReBRACPretrainMetrics(NamedTuple):
    """Behaviour-cloning metrics (batch means)."""

    loss: Scalar
    action_mse: Scalar


class ReBRACMetrics(NamedTuple):
    """Fine-tuning metrics (batch means); the actor's terms are 0 on updates without the actor."""

    loss: Scalar
    critic_loss: Scalar
    actor_loss: Scalar
    q_loss: Scalar
    bc_loss: Scalar
    q_mean: Scalar
    target_mean: Scalar
    next_action_penalty: Scalar


def init(
    obs_dim: int, action_dim: int, config: ReBRACConfig, *, key: PRNGKeyArray
) -> tuple[ReBRACNetworks, ReBRACTargets]:
    """Fresh ReBRAC networks; the targets start as copies of the online networks (rebrac.py:254-256).

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of an observation and an action.
    - `config`: a [`ReBRACConfig`][].
    - `key`: a JAX PRNG key, split into `(critic, actor)` subkeys.

    **Returns:** `(ReBRACNetworks(critic, actor), ReBRACTargets(critic, actor, num_updates=0))`.
    """
    critic_key, actor_key = jr.split(key)
    online = ReBRACNetworks(
        critic=Critic(
            obs_dim,
            action_dim,
            config.hidden_dims,
            num_heads=config.num_critic_heads,
            layer_norm=config.critic_layer_norm,
            key=critic_key,
        ),
        actor=Actor(
            obs_dim,
            action_dim,
            config.hidden_dims,
            layer_norm=config.actor_layer_norm,
            mean_init_scale=config.actor_mean_init_scale,
            key=actor_key,
        ),
        tanh_squash=config.tanh_squash,
    )
    target = ReBRACTargets(
        critic=reset_target(online.critic),
        actor=reset_target(online.actor),
        num_updates=jnp.zeros((), dtype=jnp.int32),
    )
    return online, target


def policy_actions(
    actor: Actor, observations: Float[Array, "batch obs_dim"], tanh_squash: bool
) -> Float[Array, "batch action_dim"]:
    """The deterministic policy `pi(s) = tanh(mu(s))` (`mu(s)` if not `tanh_squash`): the mode
    of the authors' tanh-squashed Gaussian."""
    means = jax.vmap(actor)(observations)
    return jnp.tanh(means) if tanh_squash else means


def policy_log_prob(
    means: Float[Array, "batch action_dim"],
    actions: Float[Array, "batch action_dim"],
    *,
    tanh_squash: bool,
    action_clip_eps: float,
) -> Float[Array, " batch"]:
    """`log pi(a | s)` of the unit-std Gaussian `N(mu(s), I)`, squashed by tanh if `tanh_squash`.

    With tanh: `log pi(a | s) = log N(atanh(a); mu(s), I) - sum_j log(1 - a_j^2)`, with `a` first
    clipped to `[-1 + eps, 1 - eps]`, `eps = action_clip_eps` (distrax's tanh bijector has no such
    clip; the authors clip the datasets' actions instead, `envs/env_utils.py:192-201`).
    """
    if not tanh_squash:
        return gaussian_log_prob(means, actions)
    bound = 1.0 - action_clip_eps
    actions = jnp.clip(actions, -bound, bound)
    log_det = jnp.sum(jnp.log1p(-jnp.square(actions)), axis=-1)
    return gaussian_log_prob(means, jnp.arctanh(actions)) - log_det


def pretrain_loss(
    online: ReBRACNetworks,
    target: ReBRACTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: ReBRACConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, ReBRACPretrainMetrics]:
    """Behaviour cloning on reward-free data: `-mean_batch log pi(a | s)` (rebrac.py:56-69, 103-112),
    with the tanh-squashed Gaussian of [`policy_log_prob`][].

    Only the actor gets a gradient. `batch.rewards`, `target`, `key`, `normalizer` and
    `update_actor` are unused (the authors clone the behaviour policy on every pre-training update).

    **Arguments:**

    - `online`: the [`ReBRACNetworks`][] (trained).
    - `target`: the [`ReBRACTargets`][] (unused).
    - `batch`: a [`Batch`][]; only `observations` and `actions` are read.
    - `key`, `config`, `normalizer`, `update_actor`: the interface's arguments.

    **Returns:** `(loss, ReBRACPretrainMetrics(loss, action_mse))`, with `action_mse` the mean
    squared error between `pi(s)` and `a` over all action entries.
    """
    del target, key, normalizer, update_actor
    means = jax.vmap(online.actor)(batch.observations)
    log_prob = policy_log_prob(
        means, batch.actions, tanh_squash=online.tanh_squash, action_clip_eps=config.action_clip_eps
    )
    loss = -jnp.mean(log_prob)
    actions = jnp.tanh(means) if online.tanh_squash else means
    return loss, ReBRACPretrainMetrics(loss, jnp.mean(jnp.square(actions - batch.actions)))


def finetune_loss(
    online: ReBRACNetworks,
    target: ReBRACTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: ReBRACConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, ReBRACMetrics]:
    """ReBRAC's loss `L_Q + 1(update_actor) L_pi` on a reward-labelled batch (rebrac.py:114-136).

    - critic (rebrac.py:26-54): the target action `a~ = clip(pi_bar(s') + clip(sigma eps, -c, c), -1, 1)`,
      the backup `y = r + gamma * mask * (min_i Q_bar_i(s', a~) - alpha_critic * ||a~ - a'||^2)`
      from the frozen targets, and `L_Q = mean_{batch, heads} (Q_i(s, a) - y)^2` (a mean over
      heads, as the authors').
    - actor, only when `update_actor` (a `lax.cond`; rebrac.py:71-101): with `q = min_i Q_i(s, pi(s))`
      and the critic frozen, `L_pi = -mean q / sg[mean |q|] + alpha_actor * mean_batch ||pi(s) - a||^2`.

    Gradients: the critic learns from `L_Q` only and the actor from `L_pi` only (through its
    action); `target` gets none (it is a later argument and is frozen here as well).

    **Arguments:**

    - `online`: the [`ReBRACNetworks`][] (trained).
    - `target`: the [`ReBRACTargets`][] (frozen).
    - `batch`: a [`Batch`][] with `next_actions` (the data's `a'`).
    - `key`: PRNG key of the target-policy noise `eps`, the only random draw.
    - `config`: a [`ReBRACConfig`][].
    - `normalizer`: unused.
    - `update_actor`: whether this update includes the actor's term.

    **Returns:** `(loss, ReBRACMetrics(...))`; `q_mean` is the online critic's mean over heads
    and batch, `target_mean` the backup's mean.

    !!! note

        As the authors', the scale `mean |q|` has no epsilon (it is 0 only if every `q` is);
        the actor's other random key of the authors' loss is unused there and is not drawn here.
    """
    del normalizer
    noise_key = key
    target = frozen(target)
    s, a = batch.observations, batch.actions

    next_actions = policy_actions(target.actor, batch.next_observations, online.tanh_squash)
    noise = config.actor_noise * jr.normal(noise_key, next_actions.shape, dtype=next_actions.dtype)
    noise = jnp.clip(noise, -config.actor_noise_clip, config.actor_noise_clip)
    next_actions = jnp.clip(next_actions + noise, -1.0, 1.0)
    next_q = jnp.min(critic_values(target.critic, batch.next_observations, next_actions), axis=-1)
    penalty = jnp.sum(jnp.square(next_actions - batch.next_actions), axis=-1)
    backup = batch.rewards + config.gamma * batch.masks * (next_q - config.alpha_critic * penalty)
    qs = critic_values(online.critic, s, a)
    critic_loss = jnp.mean(jnp.square(qs - backup[:, None]))

    critic = frozen(online.critic)

    def with_actor(actor: Actor) -> tuple[Scalar, Scalar, Scalar]:
        actions = policy_actions(actor, s, online.tanh_squash)
        q = jnp.min(critic_values(critic, s, actions), axis=-1)
        q_loss = -jnp.mean(q) / jax.lax.stop_gradient(jnp.mean(jnp.abs(q)))
        bc = config.alpha_actor * jnp.mean(jnp.sum(jnp.square(actions - a), axis=-1))
        return q_loss + bc, q_loss, bc

    def without_actor(actor: Actor) -> tuple[Scalar, Scalar, Scalar]:
        zero = jnp.zeros((), dtype=critic_loss.dtype)
        return zero, zero, zero

    actor_loss, q_loss, bc = jax.lax.cond(jnp.asarray(update_actor), with_actor, without_actor, online.actor)
    loss = critic_loss + actor_loss
    metrics = ReBRACMetrics(
        loss=loss,
        critic_loss=critic_loss,
        actor_loss=actor_loss,
        q_loss=q_loss,
        bc_loss=bc,
        q_mean=jnp.mean(qs),
        target_mean=jnp.mean(backup),
        next_action_penalty=jnp.mean(penalty),
    )
    return loss, metrics


def update_target(target: ReBRACTargets, online: ReBRACNetworks, config: ReBRACConfig) -> ReBRACTargets:
    """EMA of both targets, `theta_bar <- tau * theta + (1 - tau) * theta_bar`, on every
    `actor_freq`-th call only (rebrac.py:168-171: the authors move the targets on actor updates).

    The `n`-th call (counting from 1) moves the targets iff `n % actor_freq == 0`: with the
    training layer calling this after every update and updating the actor when
    `(step + 1) % actor_freq == 0`, that is exactly after the actor's updates. Other calls
    leave the networks unchanged (an EMA rate of 0) and only count.

    !!! note

        Two departures from the authors. They average the parameters from *before* the update
        (their `self.network`); the interface hands the updated ones, a one-update lag that we
        drop. And they do not move the targets during pre-training, so their target actor
        starts fine-tuning at its random initialisation; here the counter runs in both phases,
        so the target actor follows the behaviour-cloned actor (at the same rate).
    """
    num_updates = target.num_updates + 1
    rate = jnp.where(num_updates % config.actor_freq == 0, config.tau, 0.0)
    critic, actor = ema_update((target.critic, target.actor), (online.critic, online.actor), rate)
    return ReBRACTargets(critic=critic, actor=actor, num_updates=num_updates)


def start_finetuning(
    online: ReBRACNetworks, target: ReBRACTargets, config: ReBRACConfig, *, batch: Batch | None = None
) -> tuple[ReBRACNetworks, ReBRACTargets]:
    """Nothing happens between the phases for ReBRAC (the authors reset targets only for InFOM,
    DINO, TD InfoNCE and HILP: `main.py:148-150`)."""
    return online, target


def act(
    online: ReBRACNetworks, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(tanh(mu(s)), -1, 1)`: the authors evaluate at temperature 0,
    which removes the exploration noise of their `sample_actions` (rebrac.py:176-192)."""
    return jnp.clip(policy_actions(online.actor, observations, online.tanh_squash), -1.0, 1.0)


def preset_config(preset) -> ReBRACConfig:
    """ReBRAC for a named preset: the preset's network widths, batch size, learning rate and
    discount, and the authors' penalty weights for its benchmark. The authors give them for
    OGBench cube-single (`alpha_actor = alpha_critic = 1`) and ExORL cheetah (0.1 and 0.1); the
    other OGBench domains take cube-single's and the other ExORL domains cheetah's."""
    alpha = 1.0 if preset.benchmark == "ogbench" else 0.1
    return ReBRACConfig(
        hidden_dims=preset.infom.network.hidden_dims,
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        alpha_actor=alpha,
        alpha_critic=alpha,
    )


AGENT = Agent(
    name="rebrac",
    config_type=ReBRACConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
)
