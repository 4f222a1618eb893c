"""Model-based policy optimisation with ReBRAC (MBPO + ReBRAC), the InFOM paper's MBPO + ReBRAC baseline.

Follows the authors' `agents/mbpo_rebrac.py` in `chongyi-zheng/infom` and the rollouts of their
`main.py`. Line numbers below refer to commit f0356dd of that repository.

Pre-training learns, on reward-free data, a deterministic dynamics model of the state change,
`s' ~ s + T(s, a)`, and clones the actor:

    L_T  = mean_i |T(s_i, a_i) - (s'_i - s_i)|^2 / obs_dim
    L_BC = -mean_i log pi(a_i | s_i)                         (ReBRAC's tanh-Gaussian actor)

Fine-tuning keeps `L_T`, fits a reward model `L_r = mean_i (r(s_i) - r_i)^2`, and trains ReBRAC's
critic and actor (see `infom.agents.rebrac`) on short rollouts of the learned model: from the
first `num_model_rollouts` states of the batch, `num_model_rollout_steps` steps of
`a_t = clip(pi(s_t) + clip(sigma eps, -c, c), -1, 1)`, `s_{t+1} = s_t + T(s_t, a_t)`, with reward
`r(s_t)` and mask 1, all without gradient.
"""

import dataclasses
import typing
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar

from .._config import _check_hidden_dims, _check_positive, _check_positive_int, _check_range
from .._losses import frozen
from .._networks import MLP, RewardModel
from .._types import Batch
from ..data._dataset import Normalizer
from . import rebrac
from ._base import Agent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha_actor=0` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class MBPOReBRACConfig:
    """MBPO + ReBRAC's hyper-parameters: the authors' `get_config()` defaults
    (`agents/mbpo_rebrac.py:336-364`), with the rollouts of their OGBench cube-single command
    (`README.md:289`: 256 rollouts of 2 steps).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (mbpo_rebrac.py:340).
    batch_size: int = 256  # Transitions per update (mbpo_rebrac.py:341).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Every network's widths (mbpo_rebrac.py:342-345).
    model_layer_norm: bool = True  # Layer norm in T and r (mbpo_rebrac.py:346-347).
    actor_layer_norm: bool = False  # Layer norm in the actor (mbpo_rebrac.py:348).
    critic_layer_norm: bool = True  # Layer norm in the critic (mbpo_rebrac.py:349, `value_layer_norm`).
    num_critic_heads: int = 2  # Critic ensemble (mbpo_rebrac.py:299).
    gamma: float = 0.99  # Discount (mbpo_rebrac.py:350).
    tau: float = 0.005  # ReBRAC's target EMA rate, on actor updates (mbpo_rebrac.py:351).
    tanh_squash: bool = True  # Actions are tanh(mu(s)) (mbpo_rebrac.py:352).
    actor_mean_init_scale: float = 1e-2  # Actor mean head's init scale (mbpo_rebrac.py:353).
    num_model_rollouts: int = 256  # Rollouts per update (README.md:289; get_config: 256).
    num_model_rollout_steps: int = 2  # Their length (README.md:289; get_config: 1).
    alpha_actor: float = 0.0  # ReBRAC's actor BC weight (mbpo_rebrac.py:356; README.md:289 keeps it).
    alpha_critic: float = 0.0  # ReBRAC's next-action penalty (mbpo_rebrac.py:357; README.md:289 keeps it).
    actor_freq: int = 4  # Actor (and ReBRAC's targets) every `actor_freq` updates (mbpo_rebrac.py:358).
    actor_noise: float = 0.2  # Smoothing noise of the target policy and of the rollouts (mbpo_rebrac.py:359).
    actor_noise_clip: float = 0.5  # Its clip (mbpo_rebrac.py:360).
    action_clip_eps: float = 1e-5  # BC clips data actions to [-1 + eps, 1 - eps] (as ReBRAC).

    def __post_init__(self):
        owner = "MBPOReBRACConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        _check_hidden_dims(owner, self.hidden_dims)
        for name in ("model_layer_norm", "actor_layer_norm", "critic_layer_norm", "tanh_squash"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_positive_int(owner, "num_model_rollouts", self.num_model_rollouts)
        if self.num_model_rollouts > self.batch_size:
            raise ValueError(
                f"{owner}.num_model_rollouts must be at most batch_size ({self.batch_size}): the rollouts "
                f"start from the batch's states, got {self.num_model_rollouts!r}"
            )
        _check_positive_int(owner, "num_model_rollout_steps", self.num_model_rollout_steps)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        for name in ("alpha_actor", "alpha_critic", "actor_noise", "actor_noise_clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{owner}.{name} must be non-negative, got {getattr(self, name)!r}")
        _check_positive(owner, "actor_mean_init_scale", self.actor_mean_init_scale)
        _check_range(owner, "action_clip_eps", self.action_clip_eps, 0.0, 1.0, high_open=True)

    def rebrac(self) -> rebrac.ReBRACConfig:
        """The [`ReBRACConfig`][infom.agents.rebrac.ReBRACConfig] of the actor and critic."""
        return rebrac.config_from(self)


class DynamicsModel(eqx.Module):
    """The dynamics model `T(s, a)`, an MLP over `[s, a]` predicting the state change `s' - s`
    (the authors' `transition` network, mbpo_rebrac.py:26-41, 285-290)."""

    mlp: MLP

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        *,
        layer_norm: bool,
        key: PRNGKeyArray,
    ):
        self.mlp = MLP(obs_dim + action_dim, (*hidden_dims, obs_dim), layer_norm=layer_norm, key=key)

    def __call__(
        self, observation: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]
    ) -> Float[Array, " obs_dim"]:
        """The predicted next state `s + T(s, a)`."""
        return observation + self.mlp(jnp.concatenate([observation, action]))


class MBPOReBRACNetworks(eqx.Module):
    """MBPO + ReBRAC's trained networks: the dynamics model, the reward model `r(s)` and ReBRAC's
    critic and actor."""

    dynamics: DynamicsModel
    reward: RewardModel
    policy: rebrac.ReBRACNetworks


class MBPOReBRACPretrainMetrics(NamedTuple):
    """Pre-training metrics (batch means)."""

    loss: Scalar
    dynamics_loss: Scalar
    bc_loss: Scalar
    action_mse: Scalar


class MBPOReBRACMetrics(NamedTuple):
    """Fine-tuning metrics (batch means): the models' losses, ReBRAC's on the rollouts, and the mean
    predicted reward of the rollouts."""

    loss: Scalar
    dynamics_loss: Scalar
    reward_loss: Scalar
    critic_loss: Scalar
    actor_loss: Scalar
    q_mean: Scalar
    rollout_reward_mean: Scalar


def init(
    obs_dim: int, action_dim: int, config: MBPOReBRACConfig, *, key: PRNGKeyArray
) -> tuple[MBPOReBRACNetworks, rebrac.ReBRACTargets]:
    """Fresh MBPO + ReBRAC networks (mbpo_rebrac.py:254-334); the targets are ReBRAC's (copies of
    its critic and actor). `key` is split into `(dynamics, reward, policy)`."""
    dynamics_key, reward_key, policy_key = jr.split(key, 3)
    policy, target = rebrac.init(obs_dim, action_dim, config.rebrac(), key=policy_key)
    online = MBPOReBRACNetworks(
        dynamics=DynamicsModel(
            obs_dim, action_dim, config.hidden_dims, layer_norm=config.model_layer_norm, key=dynamics_key
        ),
        reward=RewardModel(obs_dim, config.hidden_dims, layer_norm=config.model_layer_norm, key=reward_key),
        policy=policy,
    )
    return online, target


def dynamics_loss(dynamics: DynamicsModel, batch: Batch) -> Scalar:
    """`L_T = mean_{i, j} (T(s_i, a_i) - (s'_i - s_i))_j^2` (mbpo_rebrac.py:26-41): zero exactly when
    the model predicts every next state of the batch."""
    predicted = jax.vmap(dynamics)(batch.observations, batch.actions)
    return jnp.mean(jnp.square(predicted - batch.next_observations))


def rollout(
    networks: MBPOReBRACNetworks,
    starts: Float[Array, "num_rollouts obs_dim"],
    *,
    key: PRNGKeyArray,
    num_steps: int,
    noise: float,
    noise_clip: float,
) -> Batch:
    """`num_steps` steps of the learned model from `starts` (main.py:186-206), as a [`Batch`][] of
    `num_steps * num_rollouts` transitions `(s_t, a_t, r(s_t), s_{t+1}, a_{t+1}, mask = 1)`, step by
    step: `a_t = clip(pi(s_t) + clip(noise eps_t, -noise_clip, noise_clip), -1, 1)` (the authors'
    `sample_actions` at temperature 1), `s_{t+1} = s_t + T(s_t, a_t)`. No gradient flows through it.
    `key` is split into one key per action draw (`num_steps + 1`)."""
    networks = frozen(networks)
    keys = jr.split(key, num_steps + 1)

    def noisy_actions(states, k):
        actions = rebrac.policy_actions(networks.policy.actor, states, networks.policy.tanh_squash)
        eps = jnp.clip(noise * jr.normal(k, actions.shape, dtype=actions.dtype), -noise_clip, noise_clip)
        return jnp.clip(actions + eps, -1.0, 1.0)

    states, actions = [starts], [noisy_actions(starts, keys[0])]
    for t in range(num_steps):
        states.append(jax.vmap(networks.dynamics)(states[t], actions[t]))
        actions.append(noisy_actions(states[t + 1], keys[t + 1]))
    observations = jnp.concatenate(states[:-1])
    return jax.lax.stop_gradient(
        Batch(
            observations=observations,
            actions=jnp.concatenate(actions[:-1]),
            next_observations=jnp.concatenate(states[1:]),
            next_actions=jnp.concatenate(actions[1:]),
            rewards=jax.vmap(networks.reward)(observations),
            masks=jnp.ones(observations.shape[:1], observations.dtype),
        )
    )


def pretrain_loss(
    online: MBPOReBRACNetworks,
    target: rebrac.ReBRACTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: MBPOReBRACConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, MBPOReBRACPretrainMetrics]:
    """`L_T + L_BC` on reward-free data (mbpo_rebrac.py:135-148): the dynamics model learns from
    `L_T`, the actor from ReBRAC's behaviour cloning; the reward model and the critic get no
    gradient. `batch.rewards`, `key`, `normalizer` and `update_actor` are unused."""
    del normalizer, update_actor
    model_loss = dynamics_loss(online.dynamics, batch)
    bc_loss, bc = rebrac.pretrain_loss(online.policy, target, batch, key=key, config=config.rebrac())
    loss = model_loss + bc_loss
    return loss, MBPOReBRACPretrainMetrics(loss, model_loss, bc_loss, bc.action_mse)


def finetune_loss(
    online: MBPOReBRACNetworks,
    target: rebrac.ReBRACTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: MBPOReBRACConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, MBPOReBRACMetrics]:
    """`L_r + L_T + L_ReBRAC(rollouts)` on reward-labelled data (mbpo_rebrac.py:150-183): the models
    learn from the batch, ReBRAC's critic and actor (`infom.agents.rebrac.finetune_loss`) from
    [`rollout`][infom.agents.mbpo_rebrac.rollout]s of the current models and actor that start from
    the batch's first `num_model_rollouts` states. `key` is split into `(rollout, ReBRAC)`.

    The models and the policy get gradients from their own terms only (the rollouts carry none);
    `target` gets none.

    !!! note

        The authors add each update's rollouts to a replay buffer and train the critic and the
        actor on a batch from it once it holds more than `batch_size` transitions (main.py:169-206).
        Their buffer holds 100 transitions (main.py:90), so that never happens: their critic and
        actor train on the data batch only, and the model's rollouts are never used. We train them
        on this update's rollouts, which is what the method describes. Their rollouts also never
        advance: each of their `num_model_rollout_steps` steps starts again from the sampled states
        (their loop does not assign the predicted next states); ours follow the model. And theirs
        start from a separate sample of the data, ours from the batch's first rows (the same law).
    """
    del normalizer
    rollout_key, rebrac_key = jr.split(key)
    dynamics_term = dynamics_loss(online.dynamics, batch)
    reward_term = jnp.mean(jnp.square(jax.vmap(online.reward)(batch.observations) - batch.rewards))
    model_batch = rollout(
        online,
        batch.observations[: config.num_model_rollouts],
        key=rollout_key,
        num_steps=config.num_model_rollout_steps,
        noise=config.actor_noise,
        noise_clip=config.actor_noise_clip,
    )
    policy_loss, policy = rebrac.finetune_loss(
        online.policy, target, model_batch, key=rebrac_key, config=config.rebrac(), update_actor=update_actor
    )
    loss = reward_term + dynamics_term + policy_loss
    return loss, MBPOReBRACMetrics(
        loss=loss,
        dynamics_loss=dynamics_term,
        reward_loss=reward_term,
        critic_loss=policy.critic_loss,
        actor_loss=policy.actor_loss,
        q_mean=policy.q_mean,
        rollout_reward_mean=jnp.mean(model_batch.rewards),
    )


def update_target(
    target: rebrac.ReBRACTargets, online: MBPOReBRACNetworks, config: MBPOReBRACConfig
) -> rebrac.ReBRACTargets:
    """ReBRAC's target update (`infom.agents.rebrac.update_target`: on actor updates, as
    mbpo_rebrac.py:217-218)."""
    return rebrac.update_target(target, online.policy, config.rebrac())


def start_finetuning(
    online: MBPOReBRACNetworks,
    target: rebrac.ReBRACTargets,
    config: MBPOReBRACConfig,
    *,
    batch: Batch | None = None,
) -> tuple[MBPOReBRACNetworks, rebrac.ReBRACTargets]:
    """Nothing happens between the phases (the authors reset no target for MBPO, main.py:149-150)."""
    return online, target


def act(
    online: MBPOReBRACNetworks, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(tanh(mu(s)), -1, 1)` (mbpo_rebrac.py:236-252 at temperature 0)."""
    return rebrac.act(online.policy, observations)


def preset_config(preset) -> MBPOReBRACConfig:
    """MBPO + ReBRAC for a named preset: the preset's widths, batch size, learning rate and discount,
    and the authors' rollouts for its benchmark: 256 of 2 steps for OGBench cube-single
    (README.md:289), 128 of 1 step for ExORL cheetah (README.md:287); the other domains take their
    benchmark's (at most the batch size)."""
    ogbench = preset.benchmark == "ogbench"
    return MBPOReBRACConfig(
        hidden_dims=preset.infom.network.hidden_dims,
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        num_model_rollouts=min(256 if ogbench else 128, preset.infom.batch_size),
        num_model_rollout_steps=2 if ogbench else 1,
    )


AGENT = Agent(
    name="mbpo_rebrac",
    config_type=MBPOReBRACConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
)
