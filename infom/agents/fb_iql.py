"""Forward-backward representations with IQL (FB + IQL), the InFOM paper's FB + IQL baseline.

Follows the authors' `agents/fb_repr.py` in `chongyi-zheng/infom` (itself after
`enjeeneer/zero-shot-rl`) and the task inference of their `main.py`. Line numbers below refer
to commit f0356dd of that repository.

Pre-training learns, on reward-free data, a factorisation of the successor measure of a family of
policies `pi(a | s, z)` indexed by a latent `z` (Touati & Ollivier, 2021):

    M^{pi_z}(s, a, ds+) ~ F_e(s, a, z)^T B(s+) rho(ds+),          e = 1, 2 (an ensemble of F)

with `B(s)` rescaled to norm `sqrt(d)` everywhere it is used. For a batch `(s_i, a_i, s'_i)`, each row
with its own `z_i`, let `M_e[i, j] = F_e(s_i, a_i, z_i)^T B(s'_j)` and, from the EMA targets,
`Mbar[i, j] = agg_e Fbar_e(s'_i, a'_i, z_i)^T Bbar(s'_j)` with `a'_i = clip(mu(s'_i, z_i), -1, 1)`:

    L_M     = mean_{e, i} [ -M_e[i, i] + 1 / (2 (n - 1)) sum_{j != i} (M_e[i, j] - gamma Mbar[i, j])^2 ]
    L_ortho = lambda mean_i [ -2 C[i, i] + 1 / (n - 1) sum_{j != i} C[i, j]^2 ],   C = B(s') B(s')^T
    L_pi    = -mean_i q_i - alpha_repr mean_i log pi(a_i | s_i, z_i),
              q_i = min_e F_e(s_i, clip(mu(s_i, z_i), -1, 1), z_i)^T z_i

(`L_M` is the measure loss, whose minimiser is `M^{pi_z}(s, a, s+) / rho(s+)`; `L_pi` is the
DDPG + BC actor of `Q_z = F^T z`.) The latents are `sqrt(d) u / |u|`, `u ~ N(0, I)`, with
probability `latent_mix_prob`, else `sg[B(s_k)]` of a random other row `k` of the batch.

Between the phases the task is inferred from `num_task_samples` reward-labelled transitions,
`z_r = sqrt(d) normalise(mean_i r_i B(s_i))`, and fine-tuning is IQL (see `infom.agents.iql`) on
networks conditioned on the fixed `z_r`: a value `V(s, z_r)`, a two-head critic `Q(s, a, z_r)` with
an EMA target, and the same actor `pi(a | s, z_r)` the pre-training trained, now by AWR with
temperature `alpha_awr`.
"""

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, Scalar, ScalarLike

from .._config import _check_hidden_dims, _check_positive, _check_positive_int, _check_range
from .._heads import mean_heads
from .._losses import ema_update, frozen, gaussian_log_prob, reset_target
from .._networks import MLP, Actor, Critic
from .._types import Batch
from ..data._dataset import Dataset, Normalizer, sample_batch
from . import iql
from ._base import Agent


# Like the project's other configs, this one validates itself and is exempt from the import
# hook's type checks (`typing.no_type_check`), so that e.g. `alpha_repr=10` is accepted for a float.
@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class FBIQLConfig:
    """FB + IQL's hyper-parameters: the authors' `get_config()` defaults (`agents/fb_repr.py:430-458`),
    with the temperatures of their OGBench cube-single command (`README.md:306`: `alpha_repr = 10`,
    `alpha_awr = 1`).

    Every field is checked in `__post_init__` (a `ValueError` naming the field).
    """

    learning_rate: float = 3e-4  # Adam learning rate (fb_repr.py:434).
    batch_size: int = 256  # Transitions per update; also the measure loss's n (fb_repr.py:435).
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # Widths of every network (fb_repr.py:436-439).
    latent_dim: int = 512  # Size d of z, F and B (fb_repr.py:443).
    actor_layer_norm: bool = False  # Layer norm in the actor (fb_repr.py:440).
    value_layer_norm: bool = True  # Layer norm in the critic and the value (fb_repr.py:441).
    fb_layer_norm: bool = True  # Layer norm in F and B (fb_repr.py:442, `fb_repr_layer_norm`).
    num_forward_heads: int = 2  # Ensemble of F (fb_repr.py:386, num_ensembles=2).
    num_critic_heads: int = 2  # IQL critic ensemble (fb_repr.py:379).
    gamma: float = 0.99  # Discount (fb_repr.py:444).
    tau: float = 0.005  # EMA rate of F, B and the critic's targets, every update (fb_repr.py:445).
    expectile: float = 0.9  # IQL's expectile (fb_repr.py:446).
    actor_freq: int = 4  # The actor is updated every `actor_freq` fine-tuning updates (fb_repr.py:447).
    forward_aggregation: Callable = mean_heads  # How Fbar's heads combine in the target (`repr_agg`, :448).
    orthonorm_coeff: float = 1.0  # lambda of L_ortho (fb_repr.py:449).
    latent_mix_prob: float = 0.5  # Probability of a Gaussian latent rather than a B(s) (fb_repr.py:450).
    alpha_repr: float = 10.0  # BC weight of the pre-training actor (README.md:306; get_config: 10).
    alpha_awr: float = 1.0  # AWR temperature of fine-tuning (README.md:306 cube-single; get_config: 10).
    normalize_q_loss: bool = False  # Divide the actor's Q term by sg[mean |q|] (fb_repr.py:454).
    num_task_samples: int = 10_000  # Reward-labelled transitions z_r is inferred from (fb_repr.py:455).
    max_weight: float = 100.0  # Clip of the AWR weight exp(alpha_awr * adv) (fb_repr.py:78).
    actor_mean_init_scale: float = 1e-2  # Init scale of the actor's mean head (utils/networks.py, Actor).

    def __post_init__(self):
        owner = "FBIQLConfig"
        _check_positive(owner, "learning_rate", self.learning_rate)
        _check_positive_int(owner, "batch_size", self.batch_size)
        if self.batch_size < 2:
            raise ValueError(
                f"{owner}.batch_size must be at least 2 (the measure loss pairs rows), "
                f"got {self.batch_size!r}"
            )
        _check_hidden_dims(owner, self.hidden_dims)
        _check_positive_int(owner, "latent_dim", self.latent_dim)
        for name in ("actor_layer_norm", "value_layer_norm", "fb_layer_norm", "normalize_q_loss"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_forward_heads", self.num_forward_heads)
        _check_positive_int(owner, "num_critic_heads", self.num_critic_heads)
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_range(owner, "expectile", self.expectile, 0.5, 1.0, high_open=True)
        _check_positive_int(owner, "actor_freq", self.actor_freq)
        if not callable(self.forward_aggregation):
            raise ValueError(
                f"{owner}.forward_aggregation must be a function of the heads (e.g. infom.mean_heads), "
                f"got {self.forward_aggregation!r}"
            )
        _check_range(owner, "latent_mix_prob", self.latent_mix_prob, 0.0, 1.0, high_open=False)
        for name in ("orthonorm_coeff", "alpha_repr", "alpha_awr"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{owner}.{name} must be non-negative, got {getattr(self, name)!r}")
        _check_positive_int(owner, "num_task_samples", self.num_task_samples)
        _check_positive(owner, "max_weight", self.max_weight)
        _check_positive(owner, "actor_mean_init_scale", self.actor_mean_init_scale)

    def iql(self) -> iql.IQLConfig:
        """The [`IQLConfig`][infom.agents.iql.IQLConfig] of fine-tuning (AWR temperature `alpha_awr`)."""
        return iql.config_from(self, alpha=self.alpha_awr)


class ForwardRepresentation(eqx.Module):
    """The forward representation `F_e(s, a, z)`: an ensemble of MLPs over `[s, a, z]` with `d`
    outputs, their parameters stacked along a leading head axis (the authors' `GCValue` with
    `value_dim = latent_dim`, `utils/networks.py`)."""

    heads: MLP

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
        make = lambda k: MLP(
            obs_dim + action_dim + latent_dim, (*hidden_dims, latent_dim), layer_norm=layer_norm, key=k
        )
        self.heads = eqx.filter_vmap(make)(jr.split(key, num_heads))

    def __call__(
        self,
        observation: Float[Array, " obs_dim"],
        action: Float[Array, " action_dim"],
        latent: Float[Array, " latent_dim"],
    ) -> Float[Array, "num_heads latent_dim"]:
        x = jnp.concatenate([observation, action, latent])
        return eqx.filter_vmap(lambda head: head(x))(self.heads)


def normalize_latent(x: Float[Array, "*batch latent_dim"]) -> Float[Array, "*batch latent_dim"]:
    """`sqrt(d) x / |x|`: the sphere of radius `sqrt(d)` on which FB's `B(s)` and `z` live
    (`sample_latents`, `infer_latent` and the measure loss in fb_repr.py)."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True) * math.sqrt(x.shape[-1])


def _condition(
    observations: Float[Array, "batch obs_dim"], latents: Float[Array, "batch latent_dim"]
) -> Float[Array, "batch obs_dim+latent_dim"]:
    """`[s, z]`, the input of every z-conditioned network (value, critic, actor)."""
    return jnp.concatenate([observations, latents], axis=-1)


class FBIQLNetworks(eqx.Module):
    """FB + IQL's trained networks, and the task.

    - `forward`: `F_e(s, a, z)`; `backward`: `B(s)` (an MLP with `d` outputs, normalised by
      [`normalize_latent`][infom.agents.fb_iql.normalize_latent] where used);
    - `actor`: `pi(a | s, z) = N(mu([s, z]), I)`; `value`: `V([s, z])`; `critic`: `Q_i([s, z], a)`;
    - `task`: the latent `z_r` the fine-tuned networks are conditioned on and the policy acts
      with; zeros until [`start_finetuning`][infom.agents.fb_iql.start_finetuning] infers it.
      It is an array of this pytree so that `act` sees it, but no loss lets a gradient reach it
      (it enters every loss through `stop_gradient`), so the optimiser never moves it: Adam's
      step for a leaf whose gradients are all zero is exactly zero.
    """

    forward: ForwardRepresentation
    backward: MLP
    actor: Actor
    value: MLP
    critic: Critic
    task: Float[Array, " latent_dim"]


class FBIQLTargets(eqx.Module):
    """FB + IQL's EMA targets: `Fbar`, `Bbar` (pre-training) and the critic's `Q_bar` (fine-tuning)."""

    forward: ForwardRepresentation
    backward: MLP
    critic: Critic


class FBIQLPretrainMetrics(NamedTuple):
    """Pre-training metrics (batch means); `m_diagonal` / `m_off_diagonal` are the mean of `M`
    on / off the diagonal."""

    loss: Scalar
    measure_loss: Scalar
    orthonormality_loss: Scalar
    actor_loss: Scalar
    q_mean: Scalar
    action_mse: Scalar
    m_diagonal: Scalar
    m_off_diagonal: Scalar


def init(
    obs_dim: int, action_dim: int, config: FBIQLConfig, *, key: PRNGKeyArray
) -> tuple[FBIQLNetworks, FBIQLTargets]:
    """Fresh FB + IQL networks (fb_repr.py:337-427); the targets start as copies.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of an observation and an action.
    - `config`: an [`FBIQLConfig`][infom.agents.fb_iql.FBIQLConfig].
    - `key`: a JAX PRNG key, split into `(forward, backward, actor, value, critic)` subkeys.

    **Returns:** `(FBIQLNetworks(...), FBIQLTargets(...))`, with `task` zeros.
    """
    forward_key, backward_key, actor_key, value_key, critic_key = jr.split(key, 5)
    d = config.latent_dim
    conditioned = obs_dim + d
    online = FBIQLNetworks(
        forward=ForwardRepresentation(
            obs_dim,
            action_dim,
            config.hidden_dims,
            d,
            num_heads=config.num_forward_heads,
            layer_norm=config.fb_layer_norm,
            key=forward_key,
        ),
        backward=MLP(obs_dim, (*config.hidden_dims, d), layer_norm=config.fb_layer_norm, key=backward_key),
        actor=Actor(
            conditioned,
            action_dim,
            config.hidden_dims,
            layer_norm=config.actor_layer_norm,
            mean_init_scale=config.actor_mean_init_scale,
            key=actor_key,
        ),
        value=MLP(conditioned, (*config.hidden_dims, 1), layer_norm=config.value_layer_norm, key=value_key),
        critic=Critic(
            conditioned,
            action_dim,
            config.hidden_dims,
            num_heads=config.num_critic_heads,
            layer_norm=config.value_layer_norm,
            key=critic_key,
        ),
        task=jnp.zeros((d,), dtype=jnp.float32),
    )
    targets = FBIQLTargets(
        forward=reset_target(online.forward),
        backward=reset_target(online.backward),
        critic=reset_target(online.critic),
    )
    return online, targets


def backward_values(
    backward: MLP, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch latent_dim"]:
    """`B(s)` on the sphere of radius `sqrt(d)`, for a batch of observations."""
    return normalize_latent(jax.vmap(backward)(observations))


def sample_latents(
    backward: MLP, observations: Float[Array, "batch obs_dim"], *, key: PRNGKeyArray, mix_prob: ScalarLike
) -> Float[Array, "batch latent_dim"]:
    """Pre-training latents (fb_repr.py:300-320): row `i` gets `sqrt(d) u / |u|`, `u ~ N(0, I)`,
    with probability `mix_prob`, else `sg[B(s_pi(i))]` for a random permutation `pi` of the
    batch. `key` is split into `(gaussian, permutation, mix)`."""
    gaussian_key, perm_key, mix_key = jr.split(key, 3)
    batch = observations.shape[0]
    d = backward.layers[-1].out_features
    gaussian = normalize_latent(jr.normal(gaussian_key, (batch, d), dtype=observations.dtype))
    permuted = jax.lax.stop_gradient(backward_values(backward, observations[jr.permutation(perm_key, batch)]))
    return jnp.where(jr.uniform(mix_key, (batch, 1)) < mix_prob, gaussian, permuted)


def measure_loss(
    m: Float[Array, "num_heads batch batch"], m_target: Float[Array, "batch batch"], gamma: ScalarLike
) -> Float[Array, "num_heads batch"]:
    """FB's measure loss per head and row (fb_repr.py:96-165); the caller reduces.

    `m[e, i, j] = F_e(s_i, a_i, z_i)^T B(s'_j)` and `m_target[i, j] = Mbar(s'_i, a'_i, s'_j)`:

        l[e, i] = -m[e, i, i] + 1 / (2 (n - 1)) sum_{j != i} (m[e, i, j] - gamma m_target[i, j])^2

    Its expectation, with the pairs `j != i` independent draws of `s+ ~ rho` (the next-state
    marginal), is minimised over tables `M(s, a, s+)` at the fixed point
    `M(s, a, s+) = P(s+ | s, a) / rho(s+) + gamma E_{s' ~ P(. | s, a)} Mbar(s', pi(s'), s+)`: with
    `Mbar = M`, the successor measure `sum_{t >= 0} gamma^t P(s_{t+1} = s+ | s, a)` over `rho(s+)`.
    """
    n = m.shape[-1]
    off = 1.0 - jnp.eye(n, dtype=m.dtype)
    squares = jnp.square((m - gamma * m_target[None]) * off[None])
    return -jnp.diagonal(m, axis1=-2, axis2=-1) + 0.5 * jnp.sum(squares, axis=-1) / (n - 1)


def orthonormality_loss(b: Float[Array, "batch latent_dim"]) -> Scalar:
    """FB's orthonormality regulariser of `B` (fb_repr.py:96-165), with `C = b b^T`:

        mean_i [ -2 C[i, i] + 1 / (n - 1) sum_{j != i} C[i, j]^2 ]

    an estimate of `|E_rho[B B^T] - I|_F^2` up to a constant. With `b`'s rows on the sphere of
    radius `sqrt(d)` the diagonal is the constant `d`, so only the off-diagonal term moves `B`."""
    n = b.shape[0]
    covariance = b @ b.T
    off = 1.0 - jnp.eye(n, dtype=b.dtype)
    return jnp.mean(
        -2.0 * jnp.diagonal(covariance) + jnp.sum(jnp.square(covariance * off), axis=-1) / (n - 1)
    )


def _actor_means(actor: Actor, observations: Array, latents: Array) -> Array:
    return jax.vmap(actor)(_condition(observations, latents))


def pretrain_loss(
    online: FBIQLNetworks,
    target: FBIQLTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: FBIQLConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, FBIQLPretrainMetrics]:
    """`L_M + L_ortho + L_pi` on reward-free data (fb_repr.py:208-226), as in the module's docstring.

    - latents: [`sample_latents`][infom.agents.fb_iql.sample_latents] with `key`;
    - `L_M`: [`measure_loss`][infom.agents.fb_iql.measure_loss] averaged over heads and rows,
      the target `Mbar` from `Fbar`, `Bbar` and the actor's next actions (all without gradient),
      its heads combined by `config.forward_aggregation`;
    - `L_ortho`: `config.orthonorm_coeff` times
      [`orthonormality_loss`][infom.agents.fb_iql.orthonormality_loss] of `B(s')`;
    - `L_pi`: DDPG + BC with `Q = min_e F_e(s, pi(s, z), z)^T z`, `F` frozen, on every
      pre-training update (the authors' pre-training has no actor schedule).

    `F` and `B` learn from `L_M + L_ortho`, the actor from `L_pi`; the value, the critic, the
    task and `target` get no gradient. `batch.rewards`, `batch.next_actions`, `normalizer` and
    `update_actor` are unused.

    **Arguments:**

    - `online`: the [`FBIQLNetworks`][infom.agents.fb_iql.FBIQLNetworks] (trained).
    - `target`: the [`FBIQLTargets`][infom.agents.fb_iql.FBIQLTargets] (frozen).
    - `batch`: a [`Batch`][] of at least 2 transitions.
    - `key`: the latents' key.
    - `config`: an [`FBIQLConfig`][infom.agents.fb_iql.FBIQLConfig].
    - `normalizer`, `update_actor`: the interface's arguments (unused).

    **Returns:** `(loss, FBIQLPretrainMetrics(...))`.
    """
    del normalizer, update_actor
    target = frozen(target)
    s, a, s_next = batch.observations, batch.actions, batch.next_observations
    z = sample_latents(online.backward, s, key=key, mix_prob=config.latent_mix_prob)

    # The target measure Mbar(s'_i, a'_i, s'_j), a'_i from the actor without gradient.
    next_actions = jnp.clip(_actor_means(frozen(online.actor), s_next, z), -1.0, 1.0)
    next_forward = jax.vmap(target.forward)(s_next, next_actions, z)  # [n, heads, d]
    next_backward = backward_values(target.backward, s_next)  # [n, d]
    m_target = config.forward_aggregation(jnp.einsum("ied,jd->ije", next_forward, next_backward))

    forward = jax.vmap(online.forward)(s, a, z)  # [n, heads, d]
    backward = backward_values(online.backward, s_next)  # [n, d]
    m = jnp.einsum("ied,jd->eij", forward, backward)
    measure = jnp.mean(measure_loss(m, m_target, config.gamma))
    ortho = config.orthonorm_coeff * orthonormality_loss(backward)

    means = _actor_means(online.actor, s, z)
    q_forward = jax.vmap(frozen(online.forward))(s, jnp.clip(means, -1.0, 1.0), z)
    q = jnp.min(jnp.einsum("ied,id->ie", q_forward, z), axis=-1)
    q_loss = -jnp.mean(q)
    if config.normalize_q_loss:
        q_loss = q_loss / jax.lax.stop_gradient(jnp.mean(jnp.abs(q)))
    actor_loss = q_loss - config.alpha_repr * jnp.mean(gaussian_log_prob(means, a))

    loss = measure + ortho + actor_loss
    n = m.shape[-1]
    diagonal = jnp.mean(jnp.diagonal(m, axis1=-2, axis2=-1))
    metrics = FBIQLPretrainMetrics(
        loss=loss,
        measure_loss=measure,
        orthonormality_loss=ortho,
        actor_loss=actor_loss,
        q_mean=jnp.mean(q),
        action_mse=jnp.mean(jnp.square(means - a)),
        m_diagonal=diagonal,
        m_off_diagonal=(jnp.mean(m) * n - diagonal) / (n - 1),
    )
    return loss, metrics


def finetune_loss(
    online: FBIQLNetworks,
    target: FBIQLTargets,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: FBIQLConfig,
    normalizer: Normalizer | None = None,
    update_actor: Bool[Array, ""] | bool = True,
) -> tuple[Scalar, iql.IQLMetrics]:
    """IQL's loss (`infom.agents.iql.finetune_loss`) on the networks conditioned on the task:
    every state `s` is replaced by `[s, sg[z_r]]` ([`conditioned`][infom.agents.iql.conditioned]),
    with `alpha_awr` as the AWR temperature (fb_repr.py:33-94, 228-250; main.py sets the batch's
    latents to the inferred `z_r`).

    The value, the critic and the actor get IQL's gradients; `F`, `B`, the task and `target` get
    none. `key` and `normalizer` are unused.

    **Returns:** `(loss, IQLMetrics(...))`.
    """
    z = jax.lax.stop_gradient(online.task)
    return iql.finetune_loss(
        iql.IQLNetworks(critic=online.critic, value=online.value, actor=online.actor),
        iql.IQLTargets(critic=target.critic),
        iql.conditioned(batch, jnp.broadcast_to(z, batch.observations.shape[:1] + z.shape)),
        key=key,
        config=config.iql(),
        normalizer=normalizer,
        update_actor=update_actor,
    )


def update_target(target: FBIQLTargets, online: FBIQLNetworks, config: FBIQLConfig) -> FBIQLTargets:
    """`xbar <- tau x + (1 - tau) xbar` for `F`, `B` and the critic after every update.

    !!! note

        The authors average `F` and `B` only while pre-training and the critic only while
        fine-tuning (fb_repr.py:270-271, 284). A network without gradient does not move, so the
        other averages change nothing that a loss reads: the critic is still its initial copy
        during pre-training, and `Fbar`, `Bbar` are not read during fine-tuning.
    """
    return FBIQLTargets(
        forward=ema_update(target.forward, online.forward, config.tau),
        backward=ema_update(target.backward, online.backward, config.tau),
        critic=ema_update(target.critic, online.critic, config.tau),
    )


def infer_task(
    backward: MLP, observations: Float[Array, "batch obs_dim"], rewards: Float[Array, " batch"]
) -> Float[Array, " latent_dim"]:
    """The task latent `z_r = sqrt(d) normalise((1 / n) sum_i r(s_i) B(s_i))` (fb_repr.py:289-298):
    the least-squares `z` of `r(s) ~ B(s)^T z` when `E_rho[B B^T] = I`, rescaled to the sphere."""
    return normalize_latent(rewards @ backward_values(backward, observations) / rewards.shape[0])


def task_batch(dataset: Dataset, key: PRNGKeyArray, config: FBIQLConfig) -> Batch:
    """`config.num_task_samples` reward-labelled transitions drawn uniformly (with replacement) from
    the fine-tuning data, as the authors' loop of `sample(batch_size)` calls (main.py:153-165)."""
    return sample_batch(dataset, key, config.num_task_samples)


def start_finetuning(
    online: FBIQLNetworks, target: FBIQLTargets, config: FBIQLConfig, *, batch: Batch | None = None
) -> tuple[FBIQLNetworks, FBIQLTargets]:
    """Infers the task: `online.task <- infer_task(B, s, r)` on the reward-labelled `batch`. The
    targets are kept (the authors reset none for FB, main.py:149-150)."""
    if batch is None:
        raise ValueError("FB + IQL infers its task between the phases: start_finetuning needs `batch=`")
    task = infer_task(online.backward, batch.observations, batch.rewards)
    return eqx.tree_at(lambda n: n.task, online, task), target


def act(
    online: FBIQLNetworks, observations: Float[Array, "batch obs_dim"]
) -> Float[Array, "batch action_dim"]:
    """Deterministic actions `clip(mu(s, z_r), -1, 1)` with the inferred task (fb_repr.py:322-335
    at temperature 0)."""
    zs = jnp.broadcast_to(online.task, observations.shape[:1] + online.task.shape)
    return jnp.clip(_actor_means(online.actor, observations, zs), -1.0, 1.0)


def preset_config(preset) -> FBIQLConfig:
    """FB + IQL for a named preset: the preset's network widths, batch size, learning rate and
    discount, `d` equal to the last hidden width (the authors' 512 for the paper's 4 x 512
    networks), and the authors' temperatures for its benchmark. They give them for OGBench
    cube-single (`alpha_repr = 10`, `alpha_awr = 1`, README.md:306) and ExORL cheetah
    (`alpha_repr = alpha_awr = 1`, README.md:304); every OGBench domain takes cube-single's and
    every ExORL domain cheetah's."""
    hidden_dims = preset.infom.network.hidden_dims
    ogbench = preset.benchmark == "ogbench"
    return FBIQLConfig(
        hidden_dims=hidden_dims,
        latent_dim=hidden_dims[-1],
        batch_size=preset.infom.batch_size,
        learning_rate=preset.infom.learning_rate,
        gamma=preset.infom.gamma,
        alpha_repr=10.0 if ogbench else 1.0,
        alpha_awr=1.0,
    )


AGENT = Agent(
    name="fb_iql",
    config_type=FBIQLConfig,
    init=init,
    pretrain_loss=pretrain_loss,
    finetune_loss=finetune_loss,
    update_target=update_target,
    start_finetuning=start_finetuning,
    act=act,
    preset_config=preset_config,
    task_batch=task_batch,
)
