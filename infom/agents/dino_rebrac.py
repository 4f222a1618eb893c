"""Self-distillation representations with ReBRAC (DINO + ReBRAC), the InFOM paper's DINO + ReBRAC baseline.

Follows the authors' `agents/dino_rebrac.py` in `chongyi-zheng/infom` (after DINO, Caron et al.,
2021, `facebookresearch/dino`). Line numbers below refer to commit f0356dd of that repository.

Pre-training learns, on reward-free data, a state encoder `E(s)` in `R^d` by self-distillation: a
student `E` matches the sharpened, centred output of its EMA teacher `Ebar` on noisy copies of the
state, and the actor is cloned on the (frozen) representation. For a batch of states `s_i` and two
augmentations `x^v_i = s_i + clip(sigma eps^v_i, -c, c)` (`v = 1, 2`):

    p^v_i  = softmax((Ebar(x^v_i) - C) / tau_t),         C = mean_{v, i} Ebar(x^v_i)   (centring)
    L_DINO = 1/2 sum_v mean_i H(p^v_i, softmax(E(x^v_i) / tau_s))
    L_BC   = -mean_i log pi(a_i | sg[E(s_i)])              (ReBRAC's tanh-Gaussian actor)

Fine-tuning is ReBRAC (see `infom.agents.rebrac`) on the frozen representation: the critic
`Q(E(s), a)` and the actor `pi(. | E(s))` read `sg[E(s)]`, the backup reads `Ebar(s')`.
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
from .._losses import ema_update, frozen, reset_target
from .._networks import MLP
from .._types import Batch
from ..data._dataset import Normalizer
from . import rebrac
from ._base import Agent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha_actor=0` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class DINOReBRACConfig:
    """DINO + ReBRAC's hyper-parameters: the authors' `get_config()` defaults
    (`agents/dino_rebrac.py:369-397`, their `mlp` encoder of `utils/encoders.py`), with the student
    temperature of their OGBench cube-single command (`README.md:282`: `repr_temp = 0.04`).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (dino_rebrac.py:373).
    batch_size: int = 256  # Transitions per update (dino_rebrac.py:374).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Actor and critic widths (dino_rebrac.py:375-376).
    encoder_dims: tuple[int, ...] = (512, 512, 512, 512)  # E's widths; the last is d (encoders.py `mlp`).
    encoder_layer_norm: bool = True  # Layer norm in E (encoders.py `mlp`).
    actor_layer_norm: bool = False  # Layer norm in the actor (dino_rebrac.py:377).
    critic_layer_norm: bool = True  # Layer norm in the critic (dino_rebrac.py:378, `value_layer_norm`).
    num_critic_heads: int = 2  # Critic ensemble (dino_rebrac.py:328).
    gamma: float = 0.99  # Discount (dino_rebrac.py:379).
    tau: float = 0.005  # EMA rate of the teacher Ebar and of ReBRAC's targets (dino_rebrac.py:380).
    tanh_squash: bool = True  # Actions are tanh(mu(E(s))) (dino_rebrac.py:381).
    actor_mean_init_scale: float = 1e-2  # Actor mean head's init scale (dino_rebrac.py:382).
    alpha_actor: float = 0.0  # ReBRAC's actor BC weight (dino_rebrac.py:383; README.md:282 keeps it).
    alpha_critic: float = 0.0  # ReBRAC's next-action penalty (dino_rebrac.py:384; README.md:282 keeps it).
    actor_freq: int = 4  # Actor (and ReBRAC's targets) every `actor_freq` updates (dino_rebrac.py:385).
    actor_noise: float = 0.2  # Target policy smoothing noise (dino_rebrac.py:387).
    actor_noise_clip: float = 0.5  # Its clip (dino_rebrac.py:388).
    repr_noise: float = 0.5  # sigma of the state augmentation (dino_rebrac.py:389).
    repr_noise_clip: float = 1.0  # c, its clip (dino_rebrac.py:390).
    repr_temp: float = 0.04  # tau_s, the student's temperature (README.md:282; get_config: 0.1).
    target_repr_temp: float = 0.04  # tau_t, the teacher's temperature (dino_rebrac.py:393).
    action_clip_eps: float = 1e-5  # BC clips data actions to [-1 + eps, 1 - eps] (as ReBRAC).

    def __post_init__(self):
        owner = "DINOReBRACConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        _check_hidden_dims(owner, self.hidden_dims)
        if (
            not isinstance(self.encoder_dims, tuple)
            or not self.encoder_dims
            or not all(isinstance(w, int) and w > 0 for w in self.encoder_dims)
        ):
            raise ValueError(
                f"{owner}.encoder_dims must be a non-empty tuple of positive ints, got {self.encoder_dims!r}"
            )
        for name in ("encoder_layer_norm", "actor_layer_norm", "critic_layer_norm", "tanh_squash"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        for name in (
            "alpha_actor",
            "alpha_critic",
            "actor_noise",
            "actor_noise_clip",
            "repr_noise",
            "repr_noise_clip",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{owner}.{name} must be non-negative, got {getattr(self, name)!r}")
        for name in ("repr_temp", "target_repr_temp", "actor_mean_init_scale"):
            _check_positive(owner, name, getattr(self, name))
        _check_range(owner, "action_clip_eps", self.action_clip_eps, 0.0, 1.0, high_open=True)

    def rebrac(self) -> rebrac.ReBRACConfig:
        """The [`ReBRACConfig`][infom.agents.rebrac.ReBRACConfig] of the actor and critic."""
        return rebrac.config_from(self)


class DINOReBRACNetworks(eqx.Module):
    """DINO + ReBRAC's trained networks: the encoder `E(s)` and ReBRAC's critic and actor on `E(s)`."""

    encoder: MLP
    policy: rebrac.ReBRACNetworks


class DINOReBRACTargets(eqx.Module):
    """The teacher `Ebar` (an EMA of `E`) and ReBRAC's targets."""

    encoder: MLP
    policy: rebrac.ReBRACTargets


class DINOReBRACPretrainMetrics(NamedTuple):
    """Pre-training metrics (batch means): `teacher_entropy` is the entropy of the batch-mean teacher
    distribution `mean_i p_i` (`log d` when the teacher spreads over every dimension, 0 when it
    has collapsed onto one)."""

    loss: Scalar
    dino_loss: Scalar
    bc_loss: Scalar
    action_mse: Scalar
    teacher_entropy: Scalar


def init(
    obs_dim: int, action_dim: int, config: DINOReBRACConfig, *, key: PRNGKeyArray
) -> tuple[DINOReBRACNetworks, DINOReBRACTargets]:
    """Fresh DINO + ReBRAC networks (dino_rebrac.py:298-366); the targets start as copies.

    `key` is split into `(encoder, policy)`; the policy's networks are
    `infom.agents.rebrac.init` on the representation's size.
    """
    encoder_key, policy_key = jr.split(key)
    encoder = MLP(obs_dim, config.encoder_dims, layer_norm=config.encoder_layer_norm, key=encoder_key)
    policy, policy_target = rebrac.init(config.encoder_dims[-1], action_dim, config.rebrac(), key=policy_key)
    return (
        DINOReBRACNetworks(encoder=encoder, policy=policy),
        DINOReBRACTargets(encoder=reset_target(encoder), policy=policy_target),
    )


def augment(
    observations: Float[Array, "batch obs_dim"],
    *,
    key: PRNGKeyArray,
    noise: ScalarLike,
    noise_clip: ScalarLike,
) -> Float[Array, "batch obs_dim"]:
    """`s + clip(sigma eps, -c, c)`, `eps ~ N(0, I)`: the authors' augmentation of states
    (dino_rebrac.py:69-106)."""
    eps = jr.normal(key, observations.shape, dtype=observations.dtype)
    return observations + jnp.clip(noise * eps, -noise_clip, noise_clip)


def dino_loss(
    student: Float[Array, "batch d"],
    teacher: Float[Array, "batch d"],
    center: Float[Array, " d"],
    *,
    student_temp: ScalarLike,
    teacher_temp: ScalarLike,
) -> Scalar:
    """DINO's distillation loss (dino_rebrac.py:25-35): the mean over rows of the cross-entropy
    `H(p_i, q_i) = -sum_k p_ik log q_ik` from the centred, sharpened teacher
    `p_i = softmax((sg[teacher_i] - center) / teacher_temp)` to the student
    `q_i = softmax(student_i / student_temp)`.

    For each row it is minimised, with zero gradient, by `student_i / student_temp = log p_i + const`.
    """
    targets = jax.nn.softmax((jax.lax.stop_gradient(teacher) - center[None]) / teacher_temp, axis=-1)
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(student / student_temp, axis=-1), axis=-1))


def batch_center(teacher: Float[Array, "*views batch d"]) -> Float[Array, " d"]:
    """The centre `C = sg[mean over views and rows of the teacher's outputs]`: subtracting it from
    every teacher output makes the targets unchanged by any vector added to all of them, so a
    teacher cannot collapse by sending every state to one dimension."""
    return jax.lax.stop_gradient(jnp.mean(teacher.reshape(-1, teacher.shape[-1]), axis=0))


def encode(encoder: MLP, observations: Float[Array, "batch obs_dim"]) -> Float[Array, "batch d"]:
    """`E(s)` for a batch of observations."""
    return jax.vmap(encoder)(observations)


def pretrain_loss(
    online: DINOReBRACNetworks,
    target: DINOReBRACTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: DINOReBRACConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, DINOReBRACPretrainMetrics]:
    """`L_DINO + L_BC` on reward-free data (dino_rebrac.py:160-175), as in the module's docstring;
    `key` is split into the two augmentations' noise.

    The encoder learns from `L_DINO` only (the teacher is frozen), the actor from `L_BC` only (on
    `sg[E(s)]`); the critic and `target` get no gradient. `batch.rewards`, `normalizer` and
    `update_actor` are unused (behaviour cloning on every pre-training update, as the authors').

    !!! note

        The authors' centre is a parameter updated (as an EMA of rate 0.1 of the teacher's
        per-row mean over the two views) only on fine-tuning's actor updates, where no loss reads
        it; during their pre-training it stays at its initial 0, so their teacher is sharpened but
        never centred. We centre every pre-training update, as DINO does, with the current batch's
        mean (`batch_center`) rather than an EMA of batch means: the interface's `update_target`
        sees no batch, and an EMA of rate 0.1 averages about ten batches. As the authors, the
        student and the teacher see the same augmented view (DINO pairs different views).
    """
    del normalizer, update_actor
    key1, key2 = jr.split(key)
    s = batch.observations
    views = jnp.stack(
        [augment(s, key=k, noise=config.repr_noise, noise_clip=config.repr_noise_clip) for k in (key1, key2)]
    )
    teacher = jax.vmap(lambda x: encode(frozen(target.encoder), x))(views)
    student = jax.vmap(lambda x: encode(online.encoder, x))(views)
    center = batch_center(teacher)
    distill = jnp.mean(
        jax.vmap(
            lambda st, te: dino_loss(
                st, te, center, student_temp=config.repr_temp, teacher_temp=config.target_repr_temp
            )
        )(student, teacher)
    )
    bc_loss, bc_metrics = rebrac.pretrain_loss(
        online.policy,
        target.policy,
        jax.lax.stop_gradient(
            dataclasses.replace(
                batch,
                observations=encode(online.encoder, s),
                next_observations=encode(online.encoder, batch.next_observations),
            )
        ),
        key=key,
        config=config.rebrac(),
    )
    probs = jnp.mean(
        jax.nn.softmax((teacher - center[None, None]) / config.target_repr_temp, axis=-1), axis=(0, 1)
    )
    entropy = -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-30)))
    loss = distill + bc_loss
    return loss, DINOReBRACPretrainMetrics(loss, distill, bc_loss, bc_metrics.action_mse, entropy)


def finetune_loss(
    online: DINOReBRACNetworks,
    target: DINOReBRACTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: DINOReBRACConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, rebrac.ReBRACMetrics]:
    """ReBRAC's loss (`infom.agents.rebrac.finetune_loss`) on the representation (dino_rebrac.py:177-198):
    states `s` become `sg[E(s)]` and next states `s'` become `Ebar(s')`. `key` is ReBRAC's.

    The critic and the actor get ReBRAC's gradients; the encoder and `target` get none.

    **Returns:** `(loss, ReBRACMetrics(...))`.
    """
    represented = dataclasses.replace(
        batch,
        observations=jax.lax.stop_gradient(encode(online.encoder, batch.observations)),
        next_observations=encode(frozen(target.encoder), batch.next_observations),
    )
    return rebrac.finetune_loss(
        online.policy,
        target.policy,
        represented,
        key=key,
        config=config.rebrac(),
        normalizer=normalizer,
        update_actor=update_actor,
    )


def update_target(
    target: DINOReBRACTargets, online: DINOReBRACNetworks, config: DINOReBRACConfig
) -> DINOReBRACTargets:
    """The teacher `Ebar <- tau E + (1 - tau) Ebar` after every update, and ReBRAC's targets by
    `infom.agents.rebrac.update_target` (on actor updates).

    !!! note

        The authors move the teacher after every pre-training update and on fine-tuning's actor
        updates (dino_rebrac.py:256, 270); fine-tuning starts by setting the teacher to `E`, which
        no longer changes, so when the teacher moves in fine-tuning does not matter.
    """
    return DINOReBRACTargets(
        encoder=ema_update(target.encoder, online.encoder, config.tau),
        policy=rebrac.update_target(target.policy, online.policy, config.rebrac()),
    )


def start_finetuning(
    online: DINOReBRACNetworks,
    target: DINOReBRACTargets,
    config: DINOReBRACConfig,
    *,
    batch: Batch | None = None,
) -> tuple[DINOReBRACNetworks, DINOReBRACTargets]:
    """Resets the teacher to the encoder (the authors' `target_reset` for DINO, dino_rebrac.py:200-202;
    main.py:149-150), so the backup reads the same representation as the critic."""
    return online, DINOReBRACTargets(encoder=reset_target(online.encoder), policy=target.policy)


def act(
    online: DINOReBRACNetworks, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(tanh(mu(E(s))), -1, 1)` (dino_rebrac.py:279-296 at temperature 0)."""
    return rebrac.act(online.policy, encode(online.encoder, observations))


def preset_config(preset) -> DINOReBRACConfig:
    """DINO + ReBRAC for a named preset: the preset's widths for the encoder, the actor and the
    critic, its batch size, learning rate and discount, and the authors' student temperature for
    its benchmark: 0.04 for OGBench cube-single (README.md:282), 0.1 for ExORL cheetah
    (README.md:280); the other domains take their benchmark's. The authors' commands keep
    ReBRAC's penalties at their defaults, 0."""
    hidden_dims = preset.infom.network.hidden_dims
    return DINOReBRACConfig(
        hidden_dims=hidden_dims,
        encoder_dims=hidden_dims,
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        repr_temp=0.04 if preset.benchmark == "ogbench" else 0.1,
    )


AGENT = Agent(
    name="dino_rebrac",
    config_type=DINOReBRACConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
)
