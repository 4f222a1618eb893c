"""Contrastive RL with InfoNCE and importance sampling (CRL + IS), the InFOM paper's CRL + IS baseline.

Follows the authors' `agents/crl_infonce.py` in `chongyi-zheng/infom`, with the goal sampling of
their `GCDataset` (`utils/datasets.py`) and the schedule of `main.py`. Line numbers below refer
to commit f0356dd of that repository.

A contrastive critic of future states, an ensemble of bilinear heads

    f_e(s, a, g) = phi_e(s, a)^T psi_e(g) / sqrt(d),                     e = 1, 2

is trained with InfoNCE over the batch: row `i` pairs `(s_i, a_i)` with its own goal `g_i`, a
future state of the same episode (offset `k >= 1` drawn from the truncated geometric
distribution `P(k) = (1 - gamma) gamma^(k - 1)`), and the other rows' goals are its negatives:

    L_NCE = mean_{i, e} [ -f_e(s_i, a_i, g_i) + lse_j f_e(s_i, a_i, g_j)
                          + c * (lse_j f_e(s_i, a_i, g_j))^2 ]           (c = logsumexp_penalty)

Its minimiser is the log density ratio `log p(g | s, a) / p(g)` up to a constant per `(s, a)`.
Pre-training (reward-free data) adds behaviour cloning of the actor. Fine-tuning keeps the
InfoNCE term and adds a reward model `r(s)` and a DDPG + BC actor whose Q is the importance-weighted
reward of the batch's goals:

    L_r   = mean (r(s) - r)^2
    w_i   = B * softmax_j( min_e f_e(s_i, pi(s_i), g_j) )_i              (the ratio, `B` = batch size)
    q_i   = w_i * r(g_i)
    L_pi  = -mean q / sg[mean |q|] - alpha * mean log pi(a | s)

with `pi(s) = clip(mu(s), -1, 1)`, the critic and the reward model frozen in `L_pi`, and `L_pi`
taken on actor steps only.
"""

import dataclasses
import math
import typing
from typing import Literal, NamedTuple, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar, ScalarLike

from .._config import _check_hidden_dims, _check_positive, _check_positive_int, _check_range
from .._losses import frozen, gaussian_log_prob
from .._networks import MLP, Actor, RewardModel
from .._types import Batch
from ..data._dataset import Dataset, Normalizer, batch_at, episode_bounds
from ._base import Agent


ContrastiveLoss = Literal["forward_infonce", "symmetric_infonce"]

# The actor's logits are `log(max(exp(f), 1e-6))` (crl_infonce.py:113-114, `value_transform`).
_LOG_RATIO_FLOOR = math.log(1e-6)


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha=30` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class CRLISConfig:
    """CRL + IS's hyper-parameters: the authors' `get_config()` defaults
    (`agents/crl_infonce.py:306-343`), with the BC weight of their OGBench cube-single command
    (`README.md:294`).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (crl_infonce.py:311).
    batch_size: int = 256  # Transitions per update; also the InfoNCE's classes (crl_infonce.py:312).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Actor, critic and reward widths (:313-315).
    latent_dim: int = 512  # Size d of phi(s, a) and psi(g) (crl_infonce.py:316).
    actor_layer_norm: bool = False  # Layer norm in the actor (crl_infonce.py:317).
    critic_layer_norm: bool = True  # Layer norm in phi and psi (crl_infonce.py:318, `value_layer_norm`).
    reward_layer_norm: bool = True  # Layer norm in the reward model (crl_infonce.py:319).
    num_critic_heads: int = 2  # Bilinear critic ensemble; min over heads in the actor (crl_infonce.py:275).
    gamma: float = 0.99  # Discount of the geometric goal offsets (crl_infonce.py:320; datasets.py:415).
    actor_freq: int = 4  # The actor is updated every `actor_freq` fine-tuning updates (:321; main.py:184).
    contrastive_loss: ContrastiveLoss = "forward_infonce"  # InfoNCE's form (crl_infonce.py:322).
    logsumexp_penalty: float = 0.01  # Weight c of (lse_j f)^2 in forward InfoNCE (crl_infonce.py:323).
    normalize_q_loss: bool = True  # Divide the actor's Q term by sg[mean |q|] (crl_infonce.py:324).
    alpha: float = 30.0  # BC weight in DDPG + BC (README.md:294 cube-single; get_config: 0.1, :325).
    actor_mean_init_scale: float = 1e-2  # Init scale of the actor's mean head (utils/networks.py, Actor).
    tau: float = 0.005  # Unused: CRL + IS has no target networks (read by the interface only).

    def __post_init__(self):
        owner = "CRLISConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        _check_hidden_dims(owner, self.hidden_dims)
        _check_positive_int(owner, "latent_dim", self.latent_dim)
        for name in ("actor_layer_norm", "critic_layer_norm", "reward_layer_norm", "normalize_q_loss"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        if self.contrastive_loss not in get_args(ContrastiveLoss):
            raise ValueError(
                f"{owner}.contrastive_loss must be one of {get_args(ContrastiveLoss)}, "
                f"got {self.contrastive_loss!r}"
            )
        for name in ("logsumexp_penalty", "alpha"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{owner}.{name} must be non-negative, got {getattr(self, name)!r}")
        _check_positive(owner, "actor_mean_init_scale", self.actor_mean_init_scale)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)


class ContrastiveCritic(eqx.Module):
    """The bilinear critic `f_e(s, a, g) = phi_e(s, a)^T psi_e(g) / sqrt(d)`: an ensemble of
    state-action encoders `phi_e` over `[s, a]` and goal encoders `psi_e` over `g`, MLPs with
    `d` outputs whose parameters are stacked along a leading head axis (as in the authors'
    `GCBilinearValue`, `utils/networks.py:461-533`)."""

    phi: MLP
    psi: MLP

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
        *,
        num_heads: int = 2,
        layer_norm: bool = True,
        key: PRNGKeyArray,
    ):
        phi_key, psi_key = jr.split(key)
        widths = (*hidden_dims, latent_dim)
        make_phi = lambda k: MLP(obs_dim + action_dim, widths, layer_norm=layer_norm, key=k)
        make_psi = lambda k: MLP(obs_dim, widths, layer_norm=layer_norm, key=k)
        self.phi = eqx.filter_vmap(make_phi)(jr.split(phi_key, num_heads))
        self.psi = eqx.filter_vmap(make_psi)(jr.split(psi_key, num_heads))

    def state_action_features(
        self, observation: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]
    ) -> Float[Array, "num_heads latent_dim"]:
        """`phi_e(s, a)` for every head."""
        x = jnp.concatenate([observation, action])
        return eqx.filter_vmap(lambda head: head(x))(self.phi)

    def goal_features(self, goal: Float[Array, " obs_dim"]) -> Float[Array, "num_heads latent_dim"]:
        """`psi_e(g)` for every head."""
        return eqx.filter_vmap(lambda head: head(goal))(self.psi)

    def __call__(
        self,
        observation: Float[Array, " obs_dim"],
        action: Float[Array, " action_dim"],
        goal: Float[Array, " obs_dim"],
    ) -> Float[Array, " num_heads"]:
        """`f_e(s, a, g)` for every head."""
        phi = self.state_action_features(observation, action)
        psi = self.goal_features(goal)
        return jnp.sum(phi * psi, axis=-1) / math.sqrt(phi.shape[-1])


class GoalBatch(eqx.Module):
    """A [`Batch`][] of transitions with two goals per transition, future observations of the
    same episode (see [`sample_goal_batch`][infom.agents.crl_is.sample_goal_batch]):
    `value_goals` for the InfoNCE critic and `actor_goals` for the actor's importance weights."""

    transitions: Batch
    value_goals: Float[Array, "batch obs_dim"]
    actor_goals: Float[Array, "batch obs_dim"]


class CRLISNetworks(eqx.Module):
    """CRL + IS's trained networks: the contrastive critic, the reward model `r(s)` and the
    actor `pi(a | s) = N(mu(s), I)`. There are no target networks."""

    critic: ContrastiveCritic
    reward: RewardModel
    actor: Actor


class CRLISPretrainMetrics(NamedTuple):
    """Pre-training metrics (batch means); `logits_pos`/`logits_neg` are the mean over heads
    of `f` on the diagonal / off the diagonal, `accuracy` the fraction of rows whose largest
    logit (mean over heads) is their own goal."""

    loss: Scalar
    contrastive_loss: Scalar
    bc_loss: Scalar
    action_mse: Scalar
    logits_pos: Scalar
    logits_neg: Scalar
    accuracy: Scalar


class CRLISMetrics(NamedTuple):
    """Fine-tuning metrics (batch means); the actor's terms are 0 on updates without the actor."""

    loss: Scalar
    reward_loss: Scalar
    contrastive_loss: Scalar
    actor_loss: Scalar
    q_loss: Scalar
    bc_loss: Scalar
    q_mean: Scalar
    logits_pos: Scalar
    logits_neg: Scalar
    accuracy: Scalar


def init(
    obs_dim: int, action_dim: int, config: CRLISConfig, *, key: PRNGKeyArray
) -> tuple[CRLISNetworks, None]:
    """Fresh CRL + IS networks (crl_infonce.py:264-301); there are no target networks.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of an observation and an action.
    - `config`: a [`CRLISConfig`][].
    - `key`: a JAX PRNG key, split into `(critic, reward, actor)` subkeys.

    **Returns:** `(CRLISNetworks(critic, reward, actor), None)`.
    """
    critic_key, reward_key, actor_key = jr.split(key, 3)
    online = CRLISNetworks(
        critic=ContrastiveCritic(
            obs_dim,
            action_dim,
            config.hidden_dims,
            config.latent_dim,
            num_heads=config.num_critic_heads,
            layer_norm=config.critic_layer_norm,
            key=critic_key,
        ),
        reward=RewardModel(obs_dim, config.hidden_dims, layer_norm=config.reward_layer_norm, key=reward_key),
        actor=Actor(
            obs_dim,
            action_dim,
            config.hidden_dims,
            layer_norm=config.actor_layer_norm,
            mean_init_scale=config.actor_mean_init_scale,
            key=actor_key,
        ),
    )
    return online, None


def sample_goal_batch(dataset: Dataset, key: PRNGKeyArray, config: CRLISConfig) -> GoalBatch:
    """Transitions with future goals of the same episode, the authors' `GCDataset.sample` with
    their defaults (`utils/datasets.py:353-435`; crl_infonce.py:329-339).

    For a transition at row `i` of an episode whose last row is `T` (`i < T`, a valid row):

    - value goal: row `min(i + k, T)` with `k >= 1` geometric, `P(k) = (1 - gamma) gamma^(k - 1)`
      (a truncated geometric: the mass beyond `T` falls on `T`);
    - actor goal: row `i + 1 + round((T - i - 1) u)`, `u ~ U[0, 1)`: uniform over `i + 1 .. T`
      (the two end rows with half the weight, from the rounding).

    Pure and traceable, like [`sample_batch`][]. `key` is split into `(rows, value, actor)`.

    **Arguments:**

    - `dataset`: a [`Dataset`][].
    - `key`: PRNG key of the rows and of both goals.
    - `config`: a [`CRLISConfig`][] (`batch_size`, `gamma`).

    **Returns:** a [`GoalBatch`][infom.agents.crl_is.GoalBatch] of `config.batch_size` transitions.

    !!! note

        The authors' call passes `value_geom_start_offset = 0` as the `num_goals` argument of
        `sample_goals` (datasets.py:369-384, 403), so their geometric support starts at 1
        (NumPy's `geometric`) whatever that option says: we draw `k >= 1`, as their code does.
        Their rows are drawn from the whole dataset, the last row of an episode included (whose
        goal is then itself); ours from the valid rows, as every other sampler here.
    """
    rows_key, value_key, actor_key = jr.split(key, 3)
    num_valid = dataset.valid_indices.shape[0]
    rows = dataset.valid_indices[jr.randint(rows_key, (config.batch_size,), 0, num_valid)]
    _, ends = episode_bounds(dataset)
    last = ends[rows]
    offsets = jr.geometric(value_key, 1.0 - config.gamma, (config.batch_size,))
    value_rows = jnp.minimum(rows + offsets, last)
    span = (last - rows - 1).astype(jnp.float32)
    u = jr.uniform(actor_key, (config.batch_size,))
    actor_rows = jnp.minimum(rows + 1 + jnp.round(span * u).astype(jnp.int32), last)
    return GoalBatch(
        transitions=batch_at(dataset, rows),
        value_goals=dataset.observations[value_rows],
        actor_goals=dataset.observations[actor_rows],
    )


def critic_logits(
    critic: ContrastiveCritic,
    observations: Float[Array, "batch obs_dim"],
    actions: Float[Array, "batch action_dim"],
    goals: Float[Array, "num_goals obs_dim"],
) -> Float[Array, "batch num_goals num_heads"]:
    """All pairs `logits[i, j, e] = f_e(s_i, a_i, g_j) = phi_e(s_i, a_i)^T psi_e(g_j) / sqrt(d)`
    (crl_infonce.py:40-50)."""
    phi = jax.vmap(critic.state_action_features)(observations, actions)  # [batch, heads, d]
    psi = jax.vmap(critic.goal_features)(goals)  # [num_goals, heads, d]
    return jnp.einsum("ied,jed->ije", phi, psi) / math.sqrt(phi.shape[-1])


def infonce(
    logits: Float[Array, "batch batch"], *, logsumexp_penalty: ScalarLike = 0.0, symmetric: bool = False
) -> Float[Array, " batch"]:
    """Per-row InfoNCE losses for one head's logits `l[i, j] = f(s_i, a_i, g_j)`, the positive
    pairs on the diagonal (crl_infonce.py:52-72). The caller reduces.

    - forward (`symmetric=False`): `-l[i, i] + lse_j l[i, j] + c (lse_j l[i, j])^2`,
      `c = logsumexp_penalty`. Its expectation over batches of independent pairs is minimised by
      `l = log p(g | s, a) / p(g) + b(s, a)` for any `b` when `c = 0`; `c > 0` picks the `b`
      with `lse_j l[i, j]` near 0.
    - symmetric: `(-l[i, i] + lse_j l[i, j]) + (-l[i, i] + lse_j l[j, i])` (the authors add no
      penalty to it).
    """
    diagonal = jnp.diagonal(logits)
    rows = jax.nn.logsumexp(logits, axis=1)
    if symmetric:
        return (rows - diagonal) + (jax.nn.logsumexp(logits, axis=0) - diagonal)
    return rows - diagonal + logsumexp_penalty * jnp.square(rows)


def importance_weighted_q(
    logits: Float[Array, "batch batch"], goal_rewards: Float[Array, " batch"]
) -> Float[Array, " batch"]:
    """The authors' importance-sampled Q (crl_infonce.py:127-130):
    `q_i = exp(l[i, i] - lse_j l[i, j] + log B) r(g_i) = B softmax_j(l[i, :])_i r(g_i)`.

    With `l = log p(g | s, a) / p(g) + b(s, a)`, `B softmax_j(l[i, :])_i` estimates the ratio
    `w(s_i, a_i, g_i) = p(g_i | s_i, a_i) / p(g_i)` (its denominator `(1 / B) sum_j w(s_i, a_i, g_j)`
    is a Monte-Carlo estimate of `E_{p(g)}[w] = 1`), so for goals drawn from the marginal `p(g)`,
    `E[q_i] ~ E_{g ~ p(g)}[w(s_i, a_i, g) r(g)] = E_{g ~ p(g | s_i, a_i)}[r(g)]`.
    """
    batch = logits.shape[0]
    log_ratios = jnp.diagonal(logits) - jax.nn.logsumexp(logits, axis=-1) + math.log(batch)
    return jnp.exp(log_ratios) * goal_rewards


class _ContrastiveTerms(NamedTuple):
    loss: Scalar
    logits_pos: Scalar
    logits_neg: Scalar
    accuracy: Scalar


def _contrastive(critic: ContrastiveCritic, batch: GoalBatch, config: CRLISConfig) -> _ContrastiveTerms:
    """`L_NCE` averaged over rows and heads, and its logit statistics (crl_infonce.py:36-93)."""
    t = batch.transitions
    logits = critic_logits(critic, t.observations, t.actions, batch.value_goals)
    per_head = jax.vmap(
        lambda head: infonce(
            head,
            logsumexp_penalty=config.logsumexp_penalty,
            symmetric=config.contrastive_loss == "symmetric_infonce",
        ),
        in_axes=-1,
        out_axes=-1,
    )(logits)
    mean_logits = jnp.mean(logits, axis=-1)
    size = mean_logits.shape[0]
    on_diagonal = jnp.eye(size, dtype=mean_logits.dtype)
    logits_pos = jnp.sum(mean_logits * on_diagonal) / size
    logits_neg = jnp.sum(mean_logits * (1.0 - on_diagonal)) / max(size * (size - 1), 1)
    accuracy = jnp.mean((jnp.argmax(mean_logits, axis=1) == jnp.arange(size)).astype(mean_logits.dtype))
    return _ContrastiveTerms(jnp.mean(per_head), logits_pos, logits_neg, accuracy)


def pretrain_loss(
    online: CRLISNetworks,
    target: None,
    batch: GoalBatch,
    *,
    key: PRNGKeyArray,
    config: CRLISConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, CRLISPretrainMetrics]:
    """`L_NCE + L_BC` on reward-free data (crl_infonce.py:155-167).

    - critic: `L_NCE`, [`infonce`][infom.agents.crl_is.infonce] of every head on the value
      goals, averaged over rows and heads.
    - actor: behaviour cloning `L_BC = -mean log N(a; mu(s), I)` (crl_infonce.py:95-109), on
      every update (the authors' pre-training has no actor schedule).

    The critic and the actor get gradients from their own terms; the reward model gets none.
    `batch.transitions.rewards`, `target`, `key`, `normalizer` and `update_actor` are unused.

    **Arguments:**

    - `online`: the [`CRLISNetworks`][] (trained).
    - `target`: `None` (no target networks).
    - `batch`: a [`GoalBatch`][infom.agents.crl_is.GoalBatch]; the transitions' `observations` and
      `actions` and the `value_goals` are read.
    - `key`, `config`, `normalizer`, `update_actor`: the interface's arguments.

    **Returns:** `(loss, CRLISPretrainMetrics(...))`; `action_mse` is the mean squared error
    between `mu(s)` and `a` over all action entries.
    """
    del target, key, normalizer, update_actor
    t = batch.transitions
    contrastive = _contrastive(online.critic, batch, config)
    means = jax.vmap(online.actor)(t.observations)
    bc = -jnp.mean(gaussian_log_prob(means, t.actions))
    loss = contrastive.loss + bc
    metrics = CRLISPretrainMetrics(
        loss=loss,
        contrastive_loss=contrastive.loss,
        bc_loss=bc,
        action_mse=jnp.mean(jnp.square(means - t.actions)),
        logits_pos=contrastive.logits_pos,
        logits_neg=contrastive.logits_neg,
        accuracy=contrastive.accuracy,
    )
    return loss, metrics


def finetune_loss(
    online: CRLISNetworks,
    target: None,
    batch: GoalBatch,
    *,
    key: PRNGKeyArray,
    config: CRLISConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, CRLISMetrics]:
    """`L_r + L_NCE + 1(update_actor) L_pi` on reward-labelled data (crl_infonce.py:169-194).

    - reward (crl_infonce.py:22-34): `L_r = mean (r(s) - r)^2`.
    - critic: `L_NCE` as in [`pretrain_loss`][infom.agents.crl_is.pretrain_loss].
    - actor, only when `update_actor` (a `lax.cond`; crl_infonce.py:111-152): with
      `pi(s) = clip(mu(s), -1, 1)`, the logits `l[i, j] = min_e max(f_e(s_i, pi(s_i), g_j), log 1e-6)`
      over the actor goals `g_j`, and `q` of
      [`importance_weighted_q`][infom.agents.crl_is.importance_weighted_q] with the predicted
      rewards `r(g_i)`:
      `L_pi = -mean q / sg[mean |q|] - alpha * mean log N(a; mu(s), I)` (without the division
      if not `normalize_q_loss`).

    Gradients: the reward model learns from `L_r` only, the critic from `L_NCE` only and the
    actor from `L_pi` only (through its action in `q` and its mean in the BC term): the
    critic and the reward model are frozen in `L_pi`, as the authors' (they are evaluated
    there without `grad_params`).

    **Arguments:**

    - `online`: the [`CRLISNetworks`][] (trained).
    - `target`: `None` (no target networks).
    - `batch`: a [`GoalBatch`][infom.agents.crl_is.GoalBatch]; the transitions' `next_*` and `masks`
      are unused.
    - `key`: unused (the actor's Q is taken at its mode, as the authors' `const_std` actor).
    - `config`: a [`CRLISConfig`][].
    - `normalizer`: unused.
    - `update_actor`: whether this update includes the actor's term.

    **Returns:** `(loss, CRLISMetrics(...))`; `q_mean` is the mean of `q` (0 without the actor).

    !!! note

        The authors draw the actor's goals uniformly from the future of each row's own episode
        (`actor_p_trajgoal = 1`, `actor_geom_sample = False`, crl_infonce.py:336-338), not from
        the marginal `p(g)` under which `q` is an importance-sampling estimate of
        `E_{p(g | s, a)}[r(g)]`; we do as they do. As theirs, the scale `mean |q|` has no epsilon.
        Their `log(max(exp(f), 1e-6))` is computed here as `max(f, log 1e-6)`, which is the same
        without the overflow of `exp`.
    """
    del target, key, normalizer
    t = batch.transitions
    s = t.observations
    predictions = jax.vmap(online.reward)(s)
    reward_loss = jnp.mean(jnp.square(predictions - t.rewards))
    contrastive = _contrastive(online.critic, batch, config)

    critic, reward = frozen(online.critic), frozen(online.reward)
    goals = batch.actor_goals

    def with_actor(actor: Actor) -> tuple[Scalar, Scalar, Scalar, Scalar]:
        means = jax.vmap(actor)(s)
        logits = critic_logits(critic, s, jnp.clip(means, -1.0, 1.0), goals)
        logits = jnp.min(jnp.maximum(logits, _LOG_RATIO_FLOOR), axis=-1)
        q = importance_weighted_q(logits, jax.vmap(reward)(goals))
        q_loss = -jnp.mean(q)
        if config.normalize_q_loss:
            q_loss = q_loss / jax.lax.stop_gradient(jnp.mean(jnp.abs(q)))
        bc = -config.alpha * jnp.mean(gaussian_log_prob(means, t.actions))
        return q_loss + bc, q_loss, bc, jnp.mean(q)

    def without_actor(actor: Actor) -> tuple[Scalar, Scalar, Scalar, Scalar]:
        zero = jnp.zeros((), dtype=reward_loss.dtype)
        return zero, zero, zero, zero

    actor_loss, q_loss, bc, q_mean = jax.lax.cond(
        jnp.asarray(update_actor), with_actor, without_actor, online.actor
    )
    loss = reward_loss + contrastive.loss + actor_loss
    metrics = CRLISMetrics(
        loss=loss,
        reward_loss=reward_loss,
        contrastive_loss=contrastive.loss,
        actor_loss=actor_loss,
        q_loss=q_loss,
        bc_loss=bc,
        q_mean=q_mean,
        logits_pos=contrastive.logits_pos,
        logits_neg=contrastive.logits_neg,
        accuracy=contrastive.accuracy,
    )
    return loss, metrics


def update_target(target: None, online: CRLISNetworks, config: CRLISConfig) -> None:
    """No target networks: nothing to update."""
    return target


def start_finetuning(
    online: CRLISNetworks, target: None, config: CRLISConfig, *, batch: Batch | None = None
) -> tuple[CRLISNetworks, None]:
    """Nothing happens between the phases for CRL + IS (the authors reset targets only for
    InFOM, DINO, TD InfoNCE and HILP: `main.py:148-150`)."""
    return online, target


def act(
    online: CRLISNetworks, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(mu(s), -1, 1)`: the authors evaluate at temperature 0
    (utils/evaluation.py) and clip (crl_infonce.py:220-231)."""
    return jnp.clip(jax.vmap(online.actor)(observations), -1.0, 1.0)


def preset_config(preset) -> CRLISConfig:
    """CRL + IS for a named preset: the preset's network widths, batch size, learning rate and
    discount, a representation size `d` equal to the last hidden width (the authors' 512 for the
    paper's 4 x 512 networks), and the authors' BC weight for its benchmark. They give it for
    OGBench cube-single (`alpha = 30`, README.md:294) and ExORL cheetah (`alpha = 0.03`,
    README.md:292); the other OGBench domains take cube-single's and the other ExORL domains
    cheetah's."""
    hidden_dims = preset.infom.network.hidden_dims
    return CRLISConfig(
        hidden_dims=hidden_dims,
        latent_dim=hidden_dims[-1],
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        alpha=30.0 if preset.benchmark == "ogbench" else 0.03,
    )


AGENT = Agent(
    name="crl_is",
    config_type=CRLISConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
    sample_batch=sample_goal_batch,
)
