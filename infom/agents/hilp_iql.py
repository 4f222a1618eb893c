"""Hilbert foundation policies with IQL (HILP + IQL), the InFOM paper's HILP + IQL baseline.

Follows the authors' `agents/hilp.py` in `chongyi-zheng/infom` (after `seohongpark/HILP`), with the
goal sampling of their `GCDataset` (`utils/datasets.py`) and the task inference of their `main.py`.
Line numbers below refer to commit f0356dd of that repository.

Pre-training learns, on reward-free data, a Hilbert representation `phi(s)` in `R^d` whose distances
are temporal distances: a goal-conditioned value `V_e(s, g) = -|phi_e(s) - phi_e(g)|` (an ensemble
`e = 1, 2`) fitted by expectile regression of the goal-reaching reward `r_g = -1(s != g)` (implicit
value learning, IVL):

    q_e   = r_g + gamma m_g Vbar_e(s', g),          q = r_g + gamma m_g min_e Vbar_e(s', g)
    adv   = q - mean_e Vbar_e(s, g)
    L_phi = sum_e mean_i |mu - 1(adv_i < 0)| (q_e,i - V_e(s_i, g_i))^2

(`m_g = 1(s != g)`, `Vbar` the EMA target, `mu` the expectile). Directions `z` on the sphere of
radius `sqrt(d)` are skills with the intrinsic reward `r_z(s, s') = (phi(s') - phi(s))^T z`
(`phi = phi_1`, without gradient), and a skill-conditioned IQL (value `V(s, z)`, two-head critic
`Q(s, a, z)`, AWR actor `pi(a | s, z)`, see `infom.agents.iql`) learns to follow them.

Between the phases the task is the skill whose reward best explains the observed one, by least
squares on `num_task_samples` reward-labelled transitions,
`z_r = sqrt(d) normalise(argmin_z sum_i ((phi(s'_i) - phi(s_i))^T z - r_i)^2)`, and fine-tuning is the
same IQL on the task's rewards with `z = z_r` fixed.
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
from .._networks import MLP, Actor, Critic
from .._types import Batch
from ..data._dataset import Dataset, Normalizer, batch_at, episode_bounds, sample_batch
from . import iql
from ._base import Agent
from .fb_iql import normalize_latent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha=1` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class HILPIQLConfig:
    """HILP + IQL's hyper-parameters: the authors' `get_config()` defaults (`agents/hilp.py:353-386`),
    with the AWR temperature of their OGBench cube-single command (`README.md:313`: `alpha = 1`).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (hilp.py:358).
    batch_size: int = 256  # Transitions per update (hilp.py:359).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Widths of every network (hilp.py:360-361).
    latent_dim: int = 512  # Size d of phi(s) and of the skills (hilp.py:362).
    actor_layer_norm: bool = False  # Layer norm in the skill actor (hilp.py:363).
    value_layer_norm: bool = True  # Layer norm in phi and the skill value and critic (hilp.py:364).
    num_phi_heads: int = 2  # Ensemble of phi (hilp.py:305, num_ensembles=2).
    num_critic_heads: int = 2  # Skill critic ensemble (hilp.py:317).
    gamma: float = 0.99  # Discount of both values and of the goal offsets (hilp.py:365).
    tau: float = 0.005  # EMA rate of phi's and the skill critic's targets, every update (hilp.py:366).
    expectile: float = 0.9  # mu of both expectile regressions (hilp.py:367).
    actor_freq: int = 4  # The actor is updated every `actor_freq` fine-tuning updates (hilp.py:368).
    alpha: float = 1.0  # AWR temperature (README.md:313 cube-single; get_config: 10, hilp.py:369).
    value_p_trajgoal: float = 0.625  # P(value goal from the row's future), else random (hilp.py:376-377).
    num_task_samples: int = 10_000  # Reward-labelled transitions z_r is fitted on (hilp.py:371).
    max_weight: float = 100.0  # Clip of the AWR weight exp(alpha * adv) (hilp.py:107).
    actor_mean_init_scale: float = 1e-2  # Init scale of the actor's mean head (utils/networks.py, Actor).

    def __post_init__(self):
        owner = "HILPIQLConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        _check_hidden_dims(owner, self.hidden_dims)
        _check_positive_int(owner, "latent_dim", self.latent_dim)
        for name in ("actor_layer_norm", "value_layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_phi_heads", self.num_phi_heads)
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_range(owner, "expectile", self.expectile, 0.5, 1.0, high_open=True)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        if not self.alpha >= 0:
            raise ValueError(f"{owner}.alpha must be non-negative, got {self.alpha!r}")
        _check_range(owner, "value_p_trajgoal", self.value_p_trajgoal, 0.0, 1.0, high_open=False)
        _check_positive_int(owner, "num_task_samples", self.num_task_samples)
        _check_positive(owner, "max_weight", self.max_weight)
        _check_positive(owner, "actor_mean_init_scale", self.actor_mean_init_scale)

    def iql(self) -> iql.IQLConfig:
        """The [`IQLConfig`][infom.agents.iql.IQLConfig] of the skill policy (both phases)."""
        return iql.config_from(self)


class HilbertValue(eqx.Module):
    """`V_e(s, g) = -|phi_e(s) - phi_e(g)|` for an ensemble of representations `phi_e`, MLPs with `d`
    outputs stacked along a leading head axis (the authors' `GCMetricValue`, utils/networks.py)."""

    phi: MLP

    def __init__(
        self,
        obs_dim: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
        *,
        num_heads: int = 2,
        layer_norm: bool = True,
        key: PRNGKeyArray,
    ):
        make = lambda k: MLP(obs_dim, (*hidden_dims, latent_dim), layer_norm=layer_norm, key=k)
        self.phi = eqx.filter_vmap(make)(jr.split(key, num_heads))

    def representations(self, observation: Float[Array, " obs_dim"]) -> Float[Array, "num_heads latent_dim"]:
        """`phi_e(s)` for every head."""
        return eqx.filter_vmap(lambda head: head(observation))(self.phi)

    def __call__(
        self, observation: Float[Array, " obs_dim"], goal: Float[Array, " obs_dim"]
    ) -> Float[Array, " num_heads"]:
        return hilbert_value(self.representations(observation), self.representations(goal))


def hilbert_value(
    phi_s: Float[Array, "*batch latent_dim"], phi_g: Float[Array, "*batch latent_dim"]
) -> Float[Array, "*batch"]:
    """`-|phi_s - phi_g|`, with the squared distance floored at `1e-12` so that the gradient at
    `s = g` is finite (utils/networks.py, `GCMetricValue`)."""
    squared = jnp.sum(jnp.square(phi_s - phi_g), axis=-1)
    return -jnp.sqrt(jnp.maximum(squared, 1e-12))


class GoalBatch(eqx.Module):
    """A [`Batch`][] with one value goal per transition (see
    [`sample_goal_batch`][infom.agents.hilp_iql.sample_goal_batch]) and its goal-reaching reward
    `goal_rewards = -1(s != g)` and mask `goal_masks = 1(s != g)` (`s == g`: the goal is the row
    itself)."""

    transitions: Batch
    goals: Float[Array, "batch obs_dim"]
    goal_rewards: Float[Array, " batch"]
    goal_masks: Float[Array, " batch"]


class HILPIQLNetworks(eqx.Module):
    """HILP + IQL's trained networks, and the task.

    - `value`: the [`HilbertValue`][infom.agents.hilp_iql.HilbertValue] of `phi`;
    - `skill_value`: `V([s, z])`; `skill_critic`: `Q_i([s, z], a)`; `skill_actor`: `pi(a | s, z)`;
    - `task`: the skill `z_r` the policy follows after pre-training; zeros until
      [`start_finetuning`][infom.agents.hilp_iql.start_finetuning] infers it. No loss lets a
      gradient reach it, so the optimiser never moves it (as FB + IQL's `task`).
    """

    value: HilbertValue
    skill_value: MLP
    skill_critic: Critic
    skill_actor: Actor
    task: Float[Array, " latent_dim"]


class HILPIQLTargets(eqx.Module):
    """HILP + IQL's EMA targets: `Vbar` (of `phi`) and the skill critic's `Q_bar`."""

    value: HilbertValue
    skill_critic: Critic


class HILPIQLPretrainMetrics(NamedTuple):
    """Pre-training metrics (batch means): the representation's IVL loss and value, the skill
    rewards, and the skill policy's IQL terms (`skill_*`, the fields of `IQLMetrics`)."""

    loss: Scalar
    phi_loss: Scalar
    phi_value_mean: Scalar
    skill_reward_mean: Scalar
    skill_loss: Scalar
    skill_value_loss: Scalar
    skill_critic_loss: Scalar
    skill_actor_loss: Scalar
    skill_q_mean: Scalar
    skill_v_mean: Scalar
    skill_adv_mean: Scalar
    skill_weight_mean: Scalar


def init(
    obs_dim: int, action_dim: int, config: HILPIQLConfig, *, key: PRNGKeyArray
) -> tuple[HILPIQLNetworks, HILPIQLTargets]:
    """Fresh HILP + IQL networks (hilp.py:271-351); the targets start as copies.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of an observation and an action.
    - `config`: a [`HILPIQLConfig`][infom.agents.hilp_iql.HILPIQLConfig].
    - `key`: a JAX PRNG key, split into `(value, skill value, skill critic, skill actor)` subkeys.

    **Returns:** `(HILPIQLNetworks(...), HILPIQLTargets(...))`, with `task` zeros.
    """
    value_key, skill_value_key, critic_key, actor_key = jr.split(key, 4)
    d = config.latent_dim
    conditioned = obs_dim + d
    online = HILPIQLNetworks(
        value=HilbertValue(
            obs_dim,
            config.hidden_dims,
            d,
            num_heads=config.num_phi_heads,
            layer_norm=config.value_layer_norm,
            key=value_key,
        ),
        skill_value=MLP(
            conditioned, (*config.hidden_dims, 1), layer_norm=config.value_layer_norm, key=skill_value_key
        ),
        skill_critic=Critic(
            conditioned,
            action_dim,
            config.hidden_dims,
            num_heads=config.num_critic_heads,
            layer_norm=config.value_layer_norm,
            key=critic_key,
        ),
        skill_actor=Actor(
            conditioned,
            action_dim,
            config.hidden_dims,
            layer_norm=config.actor_layer_norm,
            mean_init_scale=config.actor_mean_init_scale,
            key=actor_key,
        ),
        task=jnp.zeros((d,), dtype=jnp.float32),
    )
    return online, HILPIQLTargets(
        value=reset_target(online.value), skill_critic=reset_target(online.skill_critic)
    )


def sample_goal_batch(dataset: Dataset, key: PRNGKeyArray, config: HILPIQLConfig) -> GoalBatch:
    """Transitions with value goals, the authors' `GCDataset.sample` with HILP's settings
    (`utils/datasets.py:353-435`; hilp.py:373-385).

    For a transition at row `i` of an episode whose last row is `T`: with probability
    `value_p_trajgoal` the goal is row `min(i + k, T)`, `k >= 1` geometric with
    `P(k) = (1 - gamma) gamma^(k - 1)` (a truncated geometric), else a row of the whole dataset
    drawn uniformly. The goal reward is `-1(g != i)` and the mask `1(g != i)`, comparing rows as the
    authors do (`idxs == value_goal_idxs`).

    Pure and traceable, like [`sample_batch`][]. `key` is split into `(rows, offsets, random, choice)`.

    **Returns:** a [`GoalBatch`][infom.agents.hilp_iql.GoalBatch] of `config.batch_size` transitions.
    """
    rows_key, offset_key, random_key, choice_key = jr.split(key, 4)
    n = config.batch_size
    rows = dataset.valid_indices[jr.randint(rows_key, (n,), 0, dataset.valid_indices.shape[0])]
    _, ends = episode_bounds(dataset)
    future = jnp.minimum(rows + jr.geometric(offset_key, 1.0 - config.gamma, (n,)), ends[rows])
    anywhere = jr.randint(random_key, (n,), 0, dataset.observations.shape[0])
    goals = jnp.where(jr.uniform(choice_key, (n,)) < config.value_p_trajgoal, future, anywhere)
    success = (goals == rows).astype(jnp.float32)
    return GoalBatch(
        transitions=batch_at(dataset, rows),
        goals=dataset.observations[goals],
        goal_rewards=success - 1.0,
        goal_masks=1.0 - success,
    )


def representation_loss(
    value: HilbertValue, target: HilbertValue, batch: GoalBatch, *, gamma: ScalarLike, expectile: ScalarLike
) -> tuple[Scalar, Scalar]:
    """HILP's IVL loss of `phi` (hilp.py:29-60), `L_phi` of the module's docstring: each head's
    squared error to its own target-network backup, weighted by the expectile of the shared
    advantage `adv = q - mean_e Vbar_e(s, g)` (the target decides the weight, the online head the
    error, as double DQN does). `target` is frozen. Returns `(L_phi, mean_e,i V_e(s_i, g_i))`."""
    target = frozen(target)
    t = batch.transitions
    next_v = jax.vmap(target)(t.next_observations, batch.goals)  # [n, heads]
    backup = batch.goal_rewards[:, None] + gamma * batch.goal_masks[:, None] * next_v
    adv = jnp.min(backup, axis=-1) - jnp.mean(jax.vmap(target)(t.observations, batch.goals), axis=-1)
    v = jax.vmap(value)(t.observations, batch.goals)
    weight = jnp.where(adv >= 0, expectile, 1.0 - expectile)[:, None]
    return jnp.sum(jnp.mean(weight * jnp.square(backup - v), axis=0)), jnp.mean(v)


def representation(
    value: HilbertValue, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch latent_dim"]:
    """`phi(s) = phi_1(s)`, the first head, as the skills and the task use it (hilp.py:262-269)."""
    return jax.vmap(lambda s: value.representations(s)[0])(observations)


def skill_rewards(
    value: HilbertValue,
    observations: Float[Array, "batch obs_dim"],
    next_observations: Float[Array, "batch obs_dim"],
    skills: Float[Array, "batch latent_dim"],
) -> Float[Array, " batch"]:
    """The intrinsic reward `r_z(s, s') = (phi(s') - phi(s))^T z` of each row's skill (hilp.py:232-244).
    Along a trajectory the rewards telescope: their sum is `(phi(s_T) - phi(s_0))^T z`."""
    moves = representation(value, next_observations) - representation(value, observations)
    return jnp.sum(moves * skills, axis=-1)


def _skill_iql(online: HILPIQLNetworks, target: HILPIQLTargets, batch: Batch, skills, config, update_actor):
    return iql.finetune_loss(
        iql.IQLNetworks(critic=online.skill_critic, value=online.skill_value, actor=online.skill_actor),
        iql.IQLTargets(critic=target.skill_critic),
        iql.conditioned(batch, skills),
        key=jr.key(0),  # unused: IQL's loss is deterministic
        config=config.iql(),
        update_actor=update_actor,
    )


def pretrain_loss(
    online: HILPIQLNetworks,
    target: HILPIQLTargets,
    batch: GoalBatch,
    *,
    key: PRNGKeyArray,
    config: HILPIQLConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, HILPIQLPretrainMetrics]:
    """`L_phi + L_skill` on reward-free data (hilp.py:126-155).

    - `L_phi`: [`representation_loss`][infom.agents.hilp_iql.representation_loss] on the batch's goals;
    - skills `z_i = sqrt(d) u_i / |u_i|`, `u_i ~ N(0, I)` from `key`, one per row, and
      their rewards [`skill_rewards`][infom.agents.hilp_iql.skill_rewards] with `phi` frozen;
    - `L_skill`: IQL's loss (`infom.agents.iql.finetune_loss`) of the skill value, critic and actor on
      `[s, z_i]` with the rewards `r_z` and the batch's masks, the actor on every pre-training update
      (the authors' pre-training has no actor schedule).

    `phi` learns from `L_phi` only and the skill networks from `L_skill` only; the task and `target`
    get no gradient. `batch.transitions.rewards`, `normalizer` and `update_actor` are unused.

    **Returns:** `(loss, HILPIQLPretrainMetrics(...))`.
    """
    del normalizer, update_actor
    t = batch.transitions
    phi_loss, phi_value = representation_loss(
        online.value, target.value, batch, gamma=config.gamma, expectile=config.expectile
    )
    skills = normalize_latent(
        jr.normal(key, (t.observations.shape[0], config.latent_dim), t.observations.dtype)
    )
    rewards = skill_rewards(frozen(online.value), t.observations, t.next_observations, skills)
    skill_batch = dataclasses.replace(t, rewards=rewards)
    skill_loss, skill_metrics = _skill_iql(online, target, skill_batch, skills, config, True)
    loss = phi_loss + skill_loss
    return loss, HILPIQLPretrainMetrics(loss, phi_loss, phi_value, jnp.mean(rewards), *skill_metrics)


def finetune_loss(
    online: HILPIQLNetworks,
    target: HILPIQLTargets,
    batch: GoalBatch,
    *,
    key: PRNGKeyArray,
    config: HILPIQLConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, iql.IQLMetrics]:
    """IQL's loss on the task's rewards with every state replaced by `[s, sg[z_r]]` (hilp.py:157-181;
    main.py sets the batch's skills to the inferred `z_r`). The goals are unused.

    The skill networks get IQL's gradients; `phi`, the task and `target` get none. `key` and
    `normalizer` are unused.

    **Returns:** `(loss, IQLMetrics(...))`.
    """
    del key, normalizer
    t = batch.transitions
    z = jax.lax.stop_gradient(online.task)
    return _skill_iql(
        online, target, t, jnp.broadcast_to(z, t.observations.shape[:1] + z.shape), config, update_actor
    )


def update_target(target: HILPIQLTargets, online: HILPIQLNetworks, config: HILPIQLConfig) -> HILPIQLTargets:
    """`xbar <- tau x + (1 - tau) xbar` for `phi` and the skill critic after every update.

    !!! note

        The authors average `phi` only while pre-training (hilp.py:205-206, 219); `phi` gets no
        gradient while fine-tuning and `Vbar` is not read then, so averaging it changes nothing a
        loss reads.
    """
    return HILPIQLTargets(
        value=ema_update(target.value, online.value, config.tau),
        skill_critic=ema_update(target.skill_critic, online.skill_critic, config.tau),
    )


def infer_task(
    value: HilbertValue,
    observations: Float[Array, "batch obs_dim"],
    next_observations: Float[Array, "batch obs_dim"],
    rewards: Float[Array, " batch"],
) -> Float[Array, " latent_dim"]:
    """The task `z_r = sqrt(d) normalise(argmin_z |(phi(s') - phi(s)) z - r|^2)`, the least-squares
    skill of the observed rewards (hilp.py:224-230)."""
    moves = representation(value, next_observations) - representation(value, observations)
    return normalize_latent(jnp.linalg.lstsq(moves, rewards)[0])


def task_batch(dataset: Dataset, key: PRNGKeyArray, config: HILPIQLConfig) -> Batch:
    """`config.num_task_samples` reward-labelled transitions drawn uniformly (with replacement) from
    the fine-tuning data, as the authors' loop of `sample(batch_size)` calls (main.py:153-165)."""
    return sample_batch(dataset, key, config.num_task_samples)


def start_finetuning(
    online: HILPIQLNetworks, target: HILPIQLTargets, config: HILPIQLConfig, *, batch: Batch | None = None
) -> tuple[HILPIQLNetworks, HILPIQLTargets]:
    """Infers the task from the reward-labelled `batch`
    ([`infer_task`][infom.agents.hilp_iql.infer_task]) and resets the skill critic's target to the
    skill critic (the authors' `target_reset` for HILP, hilp.py:183-185; main.py:149-150)."""
    if batch is None:
        raise ValueError("HILP + IQL infers its task between the phases: start_finetuning needs `batch=`")
    task = infer_task(online.value, batch.observations, batch.next_observations, batch.rewards)
    online = eqx.tree_at(lambda n: n.task, online, task)
    return online, HILPIQLTargets(value=target.value, skill_critic=reset_target(online.skill_critic))


def act(
    online: HILPIQLNetworks, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(mu(s, z_r), -1, 1)` with the inferred task (hilp.py:246-260 at
    temperature 0)."""
    zs = jnp.broadcast_to(online.task, observations.shape[:1] + online.task.shape)
    return jnp.clip(jax.vmap(online.skill_actor)(jnp.concatenate([observations, zs], axis=-1)), -1.0, 1.0)


def preset_config(preset) -> HILPIQLConfig:
    """HILP + IQL for a named preset: the preset's network widths, batch size, learning rate and
    discount, `d` equal to the last hidden width (the authors' 512 for the paper's 4 x 512
    networks), and `alpha = 1`, the authors' AWR temperature for both benchmarks they give it for
    (OGBench cube-single, README.md:313, and ExORL cheetah, README.md:311)."""
    hidden_dims = preset.infom.network.hidden_dims
    return HILPIQLConfig(
        hidden_dims=hidden_dims,
        latent_dim=hidden_dims[-1],
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        alpha=1.0,
    )


AGENT = Agent(
    name="hilp_iql",
    config_type=HILPIQLConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
    sample_batch=sample_goal_batch,
    task_batch=task_batch,
)
