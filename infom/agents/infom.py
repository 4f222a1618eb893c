"""InFOM as an agent on the common training layer, and the InFOM-specific conveniences of the
public API (`init_train_state`, `pretrain_step`, `finetune_block`, ...) for users' own loops.

Online networks: the [`Models`][] (intention encoder, vector field, reward model, critic
ensemble, actor); target: the EMA vector field `v_bar`.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Scalar

from .._config import InFOMConfig
from .._diagnostics import intention_usage
from .._losses import (
    ActorAux,
    actor_loss,
    bc_loss,
    critic_values,
    ema_update,
    encode,
    expectile_distill,
    frozen,
    reset_target,
    reward_loss,
    sampler_distill_loss,
    sarsa_flow_loss,
)
from .._networks import Models, VectorField, init_models
from .._sampling import (
    AbstractNoise,
    AntitheticNoise,
    GaussianNoise,
    LatinHypercubeNoise,
    mc_q,
    sample_future,
    standard_gpi,
)
from .._types import Batch
from ..data._dataset import Dataset, Normalizer, sample_batch, sample_batch_with_context
from ..training._train import TrainState, agent_actions, begin_finetuning, init_state, train_block, train_step
from ._base import Agent


class PretrainMetrics(NamedTuple):
    """Per-update pre-training metrics (batch means)."""

    loss: Scalar
    flow_loss: Scalar
    current_loss: Scalar
    future_loss: Scalar
    kl: Scalar
    bc_loss: Scalar


class FinetuneMetrics(NamedTuple):
    """Per-update fine-tuning metrics (batch means); actor terms are 0 when it did not update,
    student terms ([`sampler_distill_loss`][] and its `distance`) 0 without a student."""

    loss: Scalar
    reward_loss: Scalar
    flow_loss: Scalar
    current_loss: Scalar
    future_loss: Scalar
    kl: Scalar
    critic_loss: Scalar
    q_mean: Scalar
    q_target_mean: Scalar
    actor_loss: Scalar
    q_loss: Scalar
    bc_loss: Scalar
    action_mse: Scalar
    actor_updated: Bool[Array, ""]
    student_loss: Scalar
    student_distance: Scalar


def _clip(normalizer: Normalizer, config: InFOMConfig) -> tuple[Array, Array] | None:
    if not config.clip_futures:
        return None
    return normalizer.lower, normalizer.upper


def _identity(z: Array) -> Array:
    return z


def _context(batch: Batch) -> tuple[Array, Array] | None:
    """The batch's context pair, if it carries one (see `InFOMConfig.intention_context`)."""
    if batch.context_observations is None or batch.context_actions is None:
        return None
    return batch.context_observations, batch.context_actions


def _flow_terms(models: Models, target_field: VectorField, batch: Batch, key, config, clip):
    return sarsa_flow_loss(
        models.field,
        models.encoder,
        target_field,
        batch,
        key=key,
        gamma=config.gamma,
        kl_weight=config.kl_weight,
        num_flow_steps=config.num_flow_steps,
        clip=clip,
        target_form=config.target_form,
        future_intention=_identity if config.future_intention_gradient else jax.lax.stop_gradient,
        context=_context(batch),
    )


def pretrain_loss(
    models: Models,
    target_field: VectorField,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
) -> tuple[Scalar, PretrainMetrics]:
    """The pre-training objective: [`sarsa_flow_loss`][] (negative ELBO) plus, if
    `config.pretrain_bc`, behaviour cloning of the actor, `-mean log pi(a | s)`."""
    flow, flow_aux = _flow_terms(models, target_field, batch, key, config, clip)
    if config.pretrain_bc:
        bc, _ = bc_loss(models.actor, batch.observations, batch.actions)
    else:
        bc = jnp.zeros((), dtype=flow.dtype)
    metrics = PretrainMetrics(
        flow + bc, flow_aux.flow_loss, flow_aux.current_loss, flow_aux.future_loss, flow_aux.kl, bc
    )
    return flow + bc, metrics


def _critic_intentions(models: Models, batch: Batch, key: PRNGKeyArray, config: InFOMConfig) -> Array:
    """Intentions for the critic's futures: `[batch, d]` (shared) or `[N, batch, d]` (per future)."""
    size, latent = batch.observations.shape[0], config.network.latent_dim
    shape = (size, latent) if config.intention_sharing == "shared" else (config.num_futures, size, latent)
    if config.critic_intentions == "prior":
        return jr.normal(key, shape, dtype=batch.observations.dtype)
    encode_key, eps_key = jr.split(key)
    context = _context(batch) or (batch.next_observations, batch.next_actions)
    posterior = encode(frozen(models.encoder), *context, key=encode_key)
    if config.intention_sharing == "shared":
        return posterior.sample
    # One posterior sample per future: fresh noise, not the key `encode` used.
    eps = jr.normal(eps_key, shape, dtype=posterior.mean.dtype)
    return posterior.mean[None] + jnp.exp(posterior.log_std)[None] * eps


def _critic_noise(config: InFOMConfig, futures_axis: int) -> AbstractNoise:
    """The noise builder of the critic's futures, from the config's choice (resolved once, at trace time)."""
    if config.antithetic_futures:
        return AntitheticNoise(futures_axis)
    if config.latin_hypercube_futures:
        return LatinHypercubeNoise(futures_axis)
    return GaussianNoise()


def _critic_steps(config: InFOMConfig) -> int:
    return config.num_flow_steps if config.critic_flow_steps is None else config.critic_flow_steps


def _critic_sampler(models: Models, config: InFOMConfig, *, futures_axis: int) -> tuple[VectorField, dict]:
    """The (frozen) field the Monte-Carlo Q's futures come from, and its `sample_future` options:
    the field with `config.critic_solver` and its steps, or the distilled student with
    `config.student_steps` Euler steps (see `InFOMConfig.student_steps`)."""
    noise = _critic_noise(config, futures_axis)
    if models.student is not None:
        assert config.student_steps is not None
        return frozen(models.student), dict(num_steps=config.student_steps, noise=noise)
    return frozen(models.field), dict(
        num_steps=_critic_steps(config), solver=config.critic_solver, noise=noise
    )


def student_loss(
    models: Models,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
) -> tuple[Scalar, Scalar]:
    """[`sampler_distill_loss`][] of `models.student` (`config.student_steps` Euler steps) on the
    sampler it replaces, the frozen field with `config.critic_solver` and its steps, on
    `config.student_futures` futures per state of `batch` from intentions drawn as the critic's
    ([`mc_q_targets`][]). Returns `(loss, distance)`."""
    assert models.student is not None and config.student_steps is not None
    z_key, noise_key = jr.split(key)
    z = _critic_intentions(models, batch, z_key, config)
    if z.ndim == 3:  # one intention per future: the student learns from the first
        z = z[0]
    size, obs_dim = batch.observations.shape
    noise = jr.normal(noise_key, (config.student_futures, size, obs_dim), dtype=batch.observations.dtype)
    loss, aux = sampler_distill_loss(
        models.student,
        models.field,
        noise,
        batch.observations,
        batch.actions,
        z,
        student_steps=config.student_steps,
        teacher_steps=_critic_steps(config),
        teacher_solver=config.critic_solver,
        clip=clip,
    )
    return loss, aux.distance


def mc_q_targets(
    models: Models,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
) -> Float[Array, " batch"]:
    """The critic's targets `Q_hat(s, a, z) = 1/(1 - gamma) mean_i r_phi(s_f^i)`, with
    `s_f^i ~ q(. | s, a, z)` drawn by the online field (or its distilled student, if
    `models.student` is set; no gradient) and `z` per `config.critic_intentions` /
    `config.intention_sharing`."""
    z_key, future_key = jr.split(key)
    z = _critic_intentions(models, batch, z_key, config)
    size = batch.observations.shape[0]
    field, sampling = _critic_sampler(models, config, futures_axis=0)
    futures = sample_future(
        field,
        batch.observations,
        batch.actions,
        z,
        key=future_key,
        shape=(config.num_futures, size),
        clip=clip,
        **sampling,
    )
    return jax.lax.stop_gradient(mc_q(frozen(models.reward), futures, gamma=config.gamma))


def _q_function(models: Models, key: PRNGKeyArray, config: InFOMConfig, clip):
    """The batched `Q(s, a)` the actor maximises; no gradient reaches any network but the actor."""
    if config.policy_extraction == "standard_gpi":
        field, sampling = _critic_sampler(models, config, futures_axis=1)
        reward = frozen(models.reward)

        def gpi_q(observations, actions):
            z_key, future_key = jr.split(key)
            size, latent = observations.shape[0], config.network.latent_dim
            z = jr.normal(z_key, (config.num_gpi_intentions, 1, size, latent), dtype=observations.dtype)
            futures = sample_future(
                field,
                observations,
                actions,
                z,
                key=future_key,
                shape=(config.num_gpi_intentions, config.num_futures, size),
                clip=clip,
                **sampling,
            )
            return standard_gpi(mc_q(reward, futures, gamma=config.gamma))

        return gpi_q
    critic = frozen(models.critic)
    return lambda observations, actions: config.q_aggregation(critic_values(critic, observations, actions))


def finetune_loss(
    models: Models,
    target_field: VectorField,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    update_actor: Bool[Array, ""] | bool = True,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
) -> tuple[Scalar, FinetuneMetrics]:
    """The fine-tuning objective, a sum of four losses on a reward-labelled batch:

    1. reward regression `(r_phi(s) - r)^2`;
    2. the occupancy loss [`sarsa_flow_loss`][] (negative ELBO) on the same batch;
    3. the implicit-GPI critic [`expectile_distill`][] of `Q_hat` ([`mc_q_targets`][]);
    4. if `update_actor`, the DDPG + BC [`actor_loss`][] against `min_heads Q_psi`
       (or, for `policy_extraction="standard_gpi"`, against `max_k Q_hat(s, a, z_k)`
       differentiated through the ODE);
    5. with a student field (`config.student_steps`), its [`student_loss`][].

    Each network gets gradients from its own terms only: the futures, the reward model inside
    `Q_hat`, the critic inside the actor loss and the student's teacher are all stop-gradient.
    `key` is split into `(flow, critic, actor, student)` keys (the first three are the same
    with or without a student).
    """
    flow_key, critic_key, actor_key, student_key = jr.split(key, 4)
    s, a = batch.observations, batch.actions
    reward, reward_aux = reward_loss(models.reward, s, batch.rewards)
    flow, flow_aux = _flow_terms(models, target_field, batch, flow_key, config, clip)

    if config.policy_extraction == "standard_gpi":
        critic = jnp.zeros((), dtype=flow.dtype)
        q_mean = q_target_mean = critic
    else:
        q_hat = mc_q_targets(models, batch, key=critic_key, config=config, clip=clip)
        expectile = 0.5 if config.policy_extraction == "one_step" else config.expectile
        critic, critic_aux = expectile_distill(models.critic, s, a, q_hat, expectile=expectile)
        q_mean, q_target_mean = critic_aux.prediction_mean, critic_aux.target_mean

    def with_actor(models):
        return actor_loss(
            models.actor,
            _q_function(models, actor_key, config, clip),
            s,
            a,
            alpha=config.alpha,
            normalize_q=config.normalize_q_loss,
        )

    def without_actor(models):
        zero = jnp.zeros((), dtype=flow.dtype)
        return zero, ActorAux(zero, zero, zero, zero)

    update_actor = jnp.asarray(update_actor)
    actor, actor_aux = jax.lax.cond(update_actor, with_actor, without_actor, models)
    if models.student is not None:
        student, student_distance = student_loss(models, batch, key=student_key, config=config, clip=clip)
    else:
        student = student_distance = jnp.zeros((), dtype=flow.dtype)
    total = reward + flow + critic + actor + student
    metrics = FinetuneMetrics(
        loss=total,
        reward_loss=reward,
        flow_loss=flow_aux.flow_loss,
        current_loss=flow_aux.current_loss,
        future_loss=flow_aux.future_loss,
        kl=flow_aux.kl,
        critic_loss=critic,
        q_mean=q_mean,
        q_target_mean=q_target_mean,
        actor_loss=actor,
        q_loss=actor_aux.q_loss,
        bc_loss=actor_aux.bc_loss,
        action_mse=actor_aux.action_mse,
        actor_updated=update_actor,
        student_loss=student,
        student_distance=student_distance,
    )
    _ = reward_aux
    return total, metrics


# --------------------------------------------------------------------------- the agent


def init(
    obs_dim: int, action_dim: int, config: InFOMConfig, *, key: PRNGKeyArray
) -> tuple[Models, VectorField]:
    """The five networks of `config.network` (and, with `config.student_steps`, a student field:
    a copy of the field), and the target field (a copy of the field)."""
    models = init_models(obs_dim, action_dim, config.network, key=key)
    if config.student_steps is not None:
        models = _with_student(models)
    return models, reset_target(models.field)


def _with_student(models: Models) -> Models:
    """`models` with its student set to a copy of its field."""
    return eqx.tree_at(lambda m: m.student, models, reset_target(models.field), is_leaf=lambda x: x is None)


def _pretrain(online, target, batch, *, key, config, normalizer, update_actor):
    del update_actor  # the actor's behaviour cloning runs on every pre-training update
    return pretrain_loss(online, target, batch, key=key, config=config, clip=_clip(normalizer, config))


def _finetune(online, target, batch, *, key, config, normalizer, update_actor):
    return finetune_loss(
        online,
        target,
        batch,
        key=key,
        config=config,
        update_actor=update_actor,
        clip=_clip(normalizer, config),
    )


def update_target(target: VectorField, online: Models, config: InFOMConfig) -> VectorField:
    """`v_bar <- tau v + (1 - tau) v_bar`."""
    return ema_update(target, online.field, config.tau)


def _start_finetuning(
    online: Models, target: VectorField, config: InFOMConfig | None, *, batch: Batch | None = None
) -> tuple[Models, VectorField]:
    """The target field is reset to the online field, as the reference does when fine-tuning starts;
    a student field starts as a copy of the pre-trained field."""
    if online.student is not None:
        online = _with_student(online)
    return online, reset_target(online.field)


def act(online: Models, observations: Float[Array, "batch obs_dim"]) -> Float[Array, "batch action_dim"]:
    """`clip(mu(s), -1, 1)`."""
    return jnp.clip(jax.vmap(online.actor)(observations), -1.0, 1.0)


class IntentionDiagnostics(NamedTuple):
    """[`intention_usage`][] of the online models on one batch, as scalars (see
    [`IntentionUsage`][]): `intention_kl`, the posterior's KL to the prior summed over latent
    dimensions (nats); `active_dims`, the latent dimensions whose mean KL exceeds
    `ACTIVE_DIM_KL` nats; `future_shift` and `q_shift` (the latter reads the reward model,
    which learns only during fine-tuning)."""

    intention_kl: Scalar
    active_dims: Scalar
    future_shift: Scalar
    q_shift: Scalar


ACTIVE_DIM_KL = 0.01
"""Mean KL (nats) above which a latent dimension counts as used by the encoder."""


def diagnose(
    online: Models,
    target: VectorField,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    normalizer: Normalizer,
) -> IntentionDiagnostics:
    """How much the online occupancy model uses its intention ([`intention_usage`][] with 8
    prior intentions x 8 shared noises per state, `config.num_flow_steps` Euler steps)."""
    del target
    usage = intention_usage(
        online.field,
        online.encoder,
        batch,
        key=key,
        num_intentions=8,
        num_futures=8,
        num_steps=config.num_flow_steps,
        reward_fn=online.reward,
        gamma=config.gamma,
        clip=_clip(normalizer, config),
    )
    assert usage.q_shift is not None
    kl = usage.kl_per_dim
    return IntentionDiagnostics(
        jnp.sum(kl), jnp.sum(kl > ACTIVE_DIM_KL).astype(kl.dtype), usage.future_shift, usage.q_shift
    )


def sample_training_batch(dataset: Dataset, key: PRNGKeyArray, config: InFOMConfig) -> Batch:
    """`config.batch_size` transitions of `dataset`, with a context pair per transition when
    `config.intention_context == "episode"` ([`sample_batch_with_context`][])."""
    if config.intention_context == "episode":
        return sample_batch_with_context(dataset, key, config.batch_size, window=config.context_window)
    return sample_batch(dataset, key, config.batch_size)


AGENT = Agent(
    name="infom",
    config_type=InFOMConfig,
    init=init,
    pretrain_loss=_pretrain,
    finetune_loss=_finetune,
    update_target=update_target,
    start_finetuning=_start_finetuning,
    act=act,
    preset_config=lambda preset: preset.infom,
    diagnose=diagnose,
    sample_batch=sample_training_batch,
)
"""InFOM on the common training layer."""


# --------------------------------------------------------------------------- conveniences for own loops


def init_train_state(
    obs_dim: int,
    action_dim: int,
    normalizer: Normalizer,
    config: InFOMConfig,
    optim: optax.GradientTransformation,
    *,
    key: PRNGKeyArray,
) -> TrainState:
    """Creates a fresh InFOM [`TrainState`][]: new networks, target field = online field.

    Vmap it over keys (`eqx.filter_vmap`) to create the states of several seeds at once.
    """
    return init_state(AGENT, obs_dim, action_dim, normalizer, config, optim, key=key)


def start_finetuning(state: TrainState) -> TrainState:
    """Resets the target field to the online field, as the reference does when fine-tuning starts."""
    return begin_finetuning(AGENT, state, None)


def pretrain_step(
    state: TrainState,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    optim: optax.GradientTransformation,
) -> tuple[TrainState, PretrainMetrics]:
    """One pre-training update: gradients of [`pretrain_loss`][] for all networks, an Adam
    step, and the EMA target update `v_bar <- tau v + (1 - tau) v_bar`."""
    return train_step(AGENT, _pretrain, state, batch, key=key, config=config, optim=optim)


def finetune_step(
    state: TrainState,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    config: InFOMConfig,
    optim: optax.GradientTransformation,
    update_actor: Bool[Array, ""] | bool | None = None,
) -> tuple[TrainState, FinetuneMetrics]:
    """One fine-tuning update: gradients of [`finetune_loss`][] (the actor term only when
    `update_actor`; by default when `(state.step + 1) % config.actor_freq == 0`, as in the
    reference), an Adam step, and the EMA target update. Call [`start_finetuning`][] once
    before the first one."""
    return train_step(
        AGENT, _finetune, state, batch, key=key, config=config, optim=optim, update_actor=update_actor
    )


@eqx.filter_jit
def pretrain_block(
    state: TrainState,
    dataset: Dataset,
    *,
    key: PRNGKeyArray,
    num_updates: int,
    config: InFOMConfig,
    optim: optax.GradientTransformation,
    first_step: Int[Array, ""] | None = None,
) -> tuple[TrainState, PretrainMetrics]:
    """`num_updates` [`pretrain_step`][]s on batches sampled in-jit from `dataset`, as one
    compiled `lax.scan`. Returns the final state and the metrics of every update (stacked).

    Vmap over seeds with `eqx.filter_vmap` over states and keys. `first_step` (default
    `state.step`) is the number of updates done before the block; when vmapping over seeds,
    pass it unbatched (it is the same for every seed), so that update schedules such as the
    actor's every `actor_freq` updates stay branches instead of selects that run both sides.
    """
    return train_block(
        AGENT,
        _pretrain,
        state,
        dataset,
        key=key,
        num_updates=num_updates,
        config=config,
        optim=optim,
        first_step=first_step,
    )


@eqx.filter_jit
def finetune_block(
    state: TrainState,
    dataset: Dataset,
    *,
    key: PRNGKeyArray,
    num_updates: int,
    config: InFOMConfig,
    optim: optax.GradientTransformation,
    first_step: Int[Array, ""] | None = None,
) -> tuple[TrainState, FinetuneMetrics]:
    """`num_updates` [`finetune_step`][]s as one compiled `lax.scan` (see [`pretrain_block`][]);
    the actor updates after update `first_step + k` when [`actor_schedule`][] says so."""
    return train_block(
        AGENT,
        _finetune,
        state,
        dataset,
        key=key,
        num_updates=num_updates,
        config=config,
        optim=optim,
        first_step=first_step,
    )


def policy_actions(
    state: TrainState, observations: Float[Array, "*batch obs_dim"]
) -> Float[Array, "*batch action_dim"]:
    """Deterministic evaluation actions `clip(mu(normalize(s)), -1, 1)` for raw observations."""
    return agent_actions(AGENT, state, observations)
