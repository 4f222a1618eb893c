"""The InFOM losses as pure functions: trainable model(s) first, then frozen models, data,
`key`, then keyword-only hyper-parameters. Each returns `(loss, aux)`."""

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Scalar, ScalarLike

from ._checks import NON_NEGATIVE, POSITIVE_INT, Range, boundary
from ._networks import AbstractVectorField, Actor, Critic, IntentionEncoder, RewardModel
from ._sampling import field_conditioning, solve_flow
from ._types import Batch


def frozen(tree: PyTree) -> PyTree:
    """`jax.lax.stop_gradient` on every array leaf of `tree` (other leaves pass through)."""
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


# --------------------------------------------------------------------------- intentions


class Intention(NamedTuple):
    """A reparameterised intention sample `z = mean + exp(log_std) * eps` and its posterior."""

    sample: Float[Array, "*batch latent_dim"]
    mean: Float[Array, "*batch latent_dim"]
    log_std: Float[Array, "*batch latent_dim"]


@boundary()
def encode(
    encoder: IntentionEncoder,
    next_observations: Float[Array, "*batch obs_dim"],
    next_actions: Float[Array, "*batch action_dim"],
    *,
    key: PRNGKeyArray,
) -> Intention:
    """Infers intentions `z ~ p_e(z | s', a')` by reparameterisation.

    Computes `(mu, log_sigma) = encoder(s', a')` and `z = mu + exp(log_sigma) * eps` with
    `eps ~ N(0, I)`, so gradients flow from `z` into the encoder.

    **Arguments:**

    - `encoder`: the [`IntentionEncoder`][].
    - `next_observations`, `next_actions`: `(s', a')`, with any (equal) leading axes.
    - `key`: PRNG key for `eps`.

    **Returns:** an [`Intention`][] `(sample, mean, log_std)`, each `[*batch, latent_dim]`.
    """
    if next_observations.shape[:-1] != next_actions.shape[:-1]:
        raise ValueError(
            "encode: `next_observations` and `next_actions` must share leading axes, got "
            f"{next_observations.shape} and {next_actions.shape}"
        )
    lead = next_observations.shape[:-1]
    size = math.prod(lead)
    mean, log_std = jax.vmap(encoder)(next_observations.reshape(size, -1), next_actions.reshape(size, -1))
    mean = mean.reshape(lead + mean.shape[-1:])
    log_std = log_std.reshape(lead + log_std.shape[-1:])
    eps = jr.normal(key, mean.shape, dtype=mean.dtype)
    return Intention(mean + jnp.exp(log_std) * eps, mean, log_std)


@boundary()
def kl_to_prior(
    mean: Float[Array, "*batch latent_dim"], log_std: Float[Array, "*batch latent_dim"]
) -> Float[Array, "*batch"]:
    """`KL(N(mean, diag(exp(log_std)^2)) || N(0, I))`, summed over latent dimensions.

    `KL = 1/2 sum_j (mean_j^2 + sigma_j^2 - 1 - 2 log sigma_j)`, which is `>= 0` with
    equality iff `mean = 0` and `log_std = 0`.
    """
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(2.0 * log_std) - 1.0 - 2.0 * log_std, axis=-1)


# --------------------------------------------------------------------------- occupancy loss


class FlowLossAux(NamedTuple):
    """Terms of [`sarsa_flow_loss`][] (batch means)."""

    current_loss: Scalar
    future_loss: Scalar
    flow_loss: Scalar
    kl: Scalar


class _TimeRescaled(AbstractVectorField):
    """`dx/dtau = t_end * v(tau * t_end, x)`: integrates `v` over `[0, t_end]` as `tau in [0, 1]`.

    The per-example end time rides along as the last entry of the conditioning.
    """

    field: AbstractVectorField

    def condition(self, observation, action, intention):
        raise TypeError("_TimeRescaled takes a precomputed conditioning")

    def velocity(self, t, x, conditioning):
        t_end = conditioning[-1]
        return t_end * self.field.velocity(t * t_end, x, conditioning[:-1])


@boundary(gamma=Range(0.0, 1.0, high_open=True), kl_weight=NON_NEGATIVE, num_flow_steps=POSITIVE_INT)
def sarsa_flow_loss(
    field: AbstractVectorField,
    encoder: IntentionEncoder,
    target_field: AbstractVectorField,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    gamma: ScalarLike = 0.99,
    kl_weight: ScalarLike = 0.01,
    num_flow_steps: int = 10,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
    target_form: Literal["infom", "td2"] = "infom",
    solver: diffrax.AbstractSolver | None = None,
    future_intention: Callable[
        [Float[Array, "batch latent"]], Float[Array, "batch latent"]
    ] = jax.lax.stop_gradient,
    context: tuple[Float[Array, "batch obs_dim"], Float[Array, "batch action_dim"]] | None = None,
) -> tuple[Scalar, FlowLossAux]:
    """The InFOM pre-training objective (negative ELBO): SARSA flow matching plus KL.

    For each transition `(s, a, s', a')`, with `z = mu_e + sigma_e * eps` from
    `p_e(z | s', a')`, `t ~ U[0, 1]` and independent `x_0, x_0' ~ N(0, I)`:

    - current term, `x_t = t s + (1 - t) x_0`:
      `L_cur = mean_j (v(t, x_t, s, a, z) - (s - x_0))_j^2`;
    - future term (SARSA bootstrap): `x~_1 = ODE_{v_bar}(x_0'; s', a', z)` (the target
      field, `num_flow_steps` Euler steps, optionally clipped after each step),
      `x_t = t x~_1 + (1 - t) x_0'` and
      `L_fut = mean_j (v(t, x_t, s, a, z) - v_bar(t, x_t, s', a', z))_j^2`;
    - `KL = KL(p_e(z | s', a') || N(0, I)) / latent_dim` (0 when `latent_dim = 0`).

    The loss is `mean_batch[(1 - gamma) L_cur + gamma L_fut] + kl_weight * mean_batch[KL]`.

    Stop-gradients: the bootstrapped sample `x~_1`, the target velocity and every output
    of `target_field` carry no gradient (even if `target_field` is `field`); in the future
    term the online field sees `future_intention(z)`, by default `stop_gradient(z)`, so the
    encoder learns from the current term and the KL only. That is the reference code's
    choice, and it leaves the encoder without a learning signal from the flow: the current
    term's target `s - x_0` is a function of `(t, x_t, s)`, all inputs of `v`, so `z` cannot
    lower it. With `future_intention=lambda z: z`, `z` keeps its gradient where it conditions
    the *online* field in the future term (the target side, `x~_1` and `v_bar`, always sees
    `stop_gradient(z)`), as in the ELBO's reconstruction term; the loss value is unchanged,
    only the encoder's gradient differs.

    With `target_form="td2"` the future term uses TD-flow's TD^2 form instead: `x_t` is the
    target ODE's own point at time `t`, `x_t = psi_bar_t(x_0')` (Euler with
    `num_flow_steps` steps over `[0, t]`), and the velocities are matched there.

    **Arguments:**

    - `field`: the online vector field `v` (trained).
    - `encoder`: the intention encoder `p_e` (trained).
    - `target_field`: the target field `v_bar` (an EMA of `field`; frozen).
    - `batch`: a [`Batch`][]; rewards and masks are unused.
    - `key`: split into `(latent, time, current noise, future noise)` subkeys, in that order.
    - `gamma`: discount in `[0, 1)`; `gamma = 0` gives plain conditional flow matching on `s`.
    - `kl_weight`: `lambda_KL >= 0`.
    - `num_flow_steps`: Euler steps of the bootstrapped sample, a positive integer.
    - `clip`: optional `(lower, upper)` bounds for the bootstrapped sample.
    - `target_form`: `"infom"` (default) or `"td2"`.
    - `solver`: a diffrax solver for the bootstrapped sample (Euler by default).
    - `context`: the pair `(s_c, a_c)` the encoder infers the intention from, `p_e(z | s_c, a_c)`;
      `None` (default) is the transition's own next pair `(s', a')`, as in the paper. Any pair
      of the same trajectory identifies the same user; one drawn independently of the
      transition (e.g. elsewhere in its episode) carries no information about `s'` itself, so
      the intention cannot stand in for the next state (see `benchmarks/RESULTS.md`, occupancy
      accuracy).
    - `future_intention`: the intention the online field is conditioned on in the future
      term, as a function of the posterior sample `z`: `jax.lax.stop_gradient` (default, the
      reference) or the identity `lambda z: z` (gradient into the encoder through the future
      term). Its value must equal `z`: it chooses where gradients flow, not the intention.

    The ranges of `gamma`, `kl_weight` and `num_flow_steps` are checked: a `ValueError` for a
    concrete value, an `eqx.error_if` for a traced one (e.g. a `jax.vmap` over `kl_weight`).

    **Returns:** `(loss, FlowLossAux(current_loss, future_loss, flow_loss, kl))`.

    !!! note

        The reference implementation (before commit e9dcd84) drew `x_0'` with the same key
        as `x_0`; here they are independent draws.
    """
    latent_key, time_key, current_key, future_key = jr.split(key, 4)
    s, a = batch.observations, batch.actions
    s_next, a_next = batch.next_observations, batch.next_actions
    dtype = s.dtype
    target_field = frozen(target_field)

    context_s, context_a = (s_next, a_next) if context is None else context
    intention = encode(encoder, context_s, context_a, key=latent_key)
    z = intention.sample
    z_frozen = jax.lax.stop_gradient(z)
    t = jr.uniform(time_key, s.shape[:-1], dtype=dtype)
    x0 = jr.normal(current_key, s.shape, dtype=dtype)
    x0_future = jr.normal(future_key, s.shape, dtype=dtype)
    t_col = t[:, None]

    velocity = jax.vmap(field.velocity)
    target_velocity = jax.vmap(target_field.velocity)

    # Current term: reconstruct s itself.
    cond = field_conditioning(field, s, a, z)
    x_t = t_col * s + (1.0 - t_col) * x0
    current = jnp.mean(jnp.square(velocity(t, x_t, cond) - (s - x0)), axis=-1)

    # Future term: bootstrap from the target field at (s', a').
    target_cond = field_conditioning(target_field, s_next, a_next, z_frozen)
    if target_form == "infom":
        x1_future = solve_flow(
            target_field,
            x0_future,
            conditioning=target_cond,
            num_steps=num_flow_steps,
            clip=clip,
            solver=solver,
        )
        x_t_future = t_col * x1_future + (1.0 - t_col) * x0_future
    else:  # "td2" (the annotation's Literal is checked at the call)
        x_t_future = solve_flow(
            _TimeRescaled(target_field),
            x0_future,
            conditioning=jnp.concatenate([target_cond, t_col], axis=-1),
            num_steps=num_flow_steps,
            clip=clip,
            solver=solver,
        )
    x_t_future = jax.lax.stop_gradient(x_t_future)
    target_v = jax.lax.stop_gradient(target_velocity(t, x_t_future, target_cond))
    future_cond = field_conditioning(field, s, a, future_intention(z))
    future = jnp.mean(jnp.square(velocity(t, x_t_future, future_cond) - target_v), axis=-1)

    kl = jnp.mean(kl_to_prior(intention.mean, intention.log_std)) / max(z.shape[-1], 1)
    current_loss = jnp.mean(current)
    future_loss = jnp.mean(future)
    flow_loss = jnp.mean((1.0 - gamma) * current + gamma * future)
    loss = flow_loss + kl_weight * kl
    return loss, FlowLossAux(current_loss, future_loss, flow_loss, kl)


# --------------------------------------------------------------------------- a distilled sampler


class SamplerDistillAux(NamedTuple):
    """`distance`: mean Euclidean distance `|| Phi_u(x_0) - Phi_v(x_0) ||` between the student's and
    the teacher's samples from the same noise (observation units)."""

    distance: Scalar


@boundary(student_steps=POSITIVE_INT, teacher_steps=POSITIVE_INT)
def sampler_distill_loss(
    student: AbstractVectorField,
    teacher: AbstractVectorField,
    noise: Float[Array, "*#batch obs_dim"],
    observations: Float[Array, "*#batch obs_dim"],
    actions: Float[Array, "*#batch action_dim"],
    intentions: Float[Array, "*#batch latent_dim"],
    *,
    student_steps: int = 1,
    teacher_steps: int = 10,
    teacher_solver: diffrax.AbstractSolver | None = None,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
) -> tuple[Scalar, SamplerDistillAux]:
    """Distils a teacher's flow sampler into a student that takes `student_steps` Euler steps.

    With `Phi_v(x_0)` the teacher's solve of `dx/dt = v(t, x, s, a, z)` from `x(0) = x_0` to
    `t = 1` (`teacher_steps` steps of `teacher_solver`, Euler by default) and `Phi_u(x_0)` the
    student's solve with `student_steps` explicit Euler steps (one step:
    `Phi_u(x_0) = x_0 + u(0, x_0, s, a, z)`), the loss is the regression of the student's map on
    the teacher's, from the same noise:

    `L(u) = mean_samples mean_j (Phi_u(x_0) - stop_gradient(Phi_v(x_0)))_j^2`.

    Both maps push `N(0, I)` forward to a distribution; where `L = 0` they are the same map, so
    the student draws exactly the teacher's futures (`q(. | s, a, z)` as the teacher's solver
    samples it) with `student_steps` field evaluations instead of the teacher's. The minimiser
    over all maps is the teacher's map itself (a deterministic function of `(x_0, s, a, z)`);
    a field whose trajectories are straight lines (`v` constant along them) is its own exact
    one-step student. No gradient reaches the teacher.

    **Arguments:**

    - `student`: the student field `u` (trained), e.g. a [`VectorField`][] initialised as a
      copy of the teacher.
    - `teacher`: the teacher field `v` (frozen).
    - `noise`: the initial points `x_0` shared by both solves.
    - `observations`, `actions`, `intentions`: the conditioning `(s, a, z)`, broadcastable
      against `noise` (see [`solve_flow`][]).
    - `student_steps`, `teacher_steps`: positive integers.
    - `teacher_solver`: a diffrax solver for the teacher (Euler by default).
    - `clip`: optional `(lower, upper)` bounds applied after every step of both solves.

    **Returns:** `(loss, SamplerDistillAux)`.
    """
    target = solve_flow(
        frozen(teacher),
        noise,
        observations,
        actions,
        intentions,
        num_steps=teacher_steps,
        solver=teacher_solver,
        clip=clip,
    )
    target = jax.lax.stop_gradient(target)
    prediction = solve_flow(
        student, noise, observations, actions, intentions, num_steps=student_steps, clip=clip
    )
    diff = prediction - target
    loss = jnp.mean(jnp.square(diff))
    distance = jnp.mean(jnp.linalg.norm(jax.lax.stop_gradient(diff), axis=-1))
    return loss, SamplerDistillAux(distance)


# --------------------------------------------------------------------------- fine-tuning losses


class RegressionAux(NamedTuple):
    """Mean prediction and mean target of a regression loss."""

    prediction_mean: Scalar
    target_mean: Scalar


@boundary()
def reward_loss(
    reward_model: RewardModel,
    observations: Float[Array, "batch obs_dim"],
    rewards: Float[Array, " batch"],
) -> tuple[Scalar, RegressionAux]:
    """Reward regression: `mean_batch (r_phi(s) - r)^2`."""
    predictions = jax.vmap(reward_model)(observations)
    loss = jnp.mean(jnp.square(predictions - rewards))
    return loss, RegressionAux(jnp.mean(predictions), jnp.mean(rewards))


@boundary(expectile=Range(0.5, 1.0, high_open=True))
def expectile_loss(diff: Float[Array, "*shape"], expectile: ScalarLike) -> Float[Array, "*shape"]:
    """Elementwise asymmetric squared loss `L_2^mu(u) = |mu - 1(u < 0)| u^2`.

    With `u = target - prediction`, minimising `E[L_2^mu(u)]` over the prediction gives the
    `mu`-expectile of the targets: the mean at `mu = 0.5` (where the loss is `u^2 / 2`),
    tending to the maximum as `mu -> 1`. `expectile` must lie in `[0.5, 1)` (checked: a
    `ValueError` for a concrete value, an `eqx.error_if` for a traced one).
    """
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return weight * jnp.square(diff)


@boundary()
def critic_values(
    critic: Critic, observations: Float[Array, "*batch obs_dim"], actions: Float[Array, "*batch action_dim"]
) -> Float[Array, "*batch num_heads"]:
    """All heads of `Q_psi(s, a)` for a batch with any leading axes."""
    lead = observations.shape[:-1]
    size = math.prod(lead)
    q = jax.vmap(critic)(observations.reshape(size, -1), actions.reshape(size, -1))
    return q.reshape(lead + q.shape[-1:])


@boundary(expectile=Range(0.5, 1.0, high_open=True))
def expectile_distill(
    critic: Critic,
    observations: Float[Array, "batch obs_dim"],
    actions: Float[Array, "batch action_dim"],
    q_targets: Float[Array, "*intentions batch"],
    *,
    expectile: ScalarLike = 0.9,
) -> tuple[Scalar, RegressionAux]:
    """Implicit generalised policy improvement: distil `Q_hat(s, a, z)` into `Q_psi(s, a)`.

    `L = mean_{heads, z, batch} L_2^mu(Q_hat(s, a, z) - Q_psi(s, a))` (see
    [`expectile_loss`][]). The targets `Q_hat` (from [`mc_q`][]) carry no gradient. For
    `mu -> 1` the minimiser approaches `max_z Q_hat(s, a, z)` (standard GPI) without a hard
    max and without gradients through the ODE; `mu = 0.5` gives the mean over intentions.

    **Arguments:**

    - `critic`: the [`Critic`][] ensemble (trained).
    - `observations`, `actions`: the batch `(s, a)`.
    - `q_targets`: `Q_hat` with optional leading intention axes, `[*intentions, batch]`.
    - `expectile`: `mu in [0.5, 1)` (checked, as in [`expectile_loss`][]).

    **Returns:** `(loss, RegressionAux(mean Q_psi, mean Q_hat))`.
    """
    q = critic_values(critic, observations, actions)  # [batch, heads]
    q_targets = jax.lax.stop_gradient(q_targets)
    diff = q_targets[..., None] - jnp.broadcast_to(q, q_targets.shape + q.shape[-1:])  # [*z, batch, heads]
    loss = jnp.mean(expectile_loss(diff, expectile))
    return loss, RegressionAux(jnp.mean(q), jnp.mean(q_targets))


@boundary()
def gaussian_log_prob(
    mean: Float[Array, "*batch action_dim"], actions: Float[Array, "*batch action_dim"]
) -> Float[Array, "*batch"]:
    """`log N(a; mean, I) = -1/2 ||a - mean||^2 - d/2 log(2 pi)` (the actor has unit std)."""
    dim = actions.shape[-1]
    return -0.5 * jnp.sum(jnp.square(actions - mean), axis=-1) - 0.5 * dim * math.log(2.0 * math.pi)


@boundary()
def bc_loss(
    actor: Actor, observations: Float[Array, "batch obs_dim"], actions: Float[Array, "batch action_dim"]
) -> tuple[Scalar, RegressionAux]:
    """Behaviour cloning: `-mean_batch log pi(a | s)` with `pi(a | s) = N(mu(s), I)`."""
    means = jax.vmap(actor)(observations)
    loss = -jnp.mean(gaussian_log_prob(means, actions))
    return loss, RegressionAux(jnp.mean(means), jnp.mean(actions))


class ActorAux(NamedTuple):
    """Terms of [`actor_loss`][]."""

    q_loss: Scalar
    bc_loss: Scalar
    q_mean: Scalar
    action_mse: Scalar


def min_q(critic: Critic) -> Callable[[Array, Array], Array]:
    """`(s, a) -> min_heads Q_psi(s, a)` on a batch, with the critic frozen (no gradient)."""
    critic = frozen(critic)
    return lambda observations, actions: jnp.min(critic_values(critic, observations, actions), axis=-1)


@boundary(alpha=NON_NEGATIVE)
def actor_loss(
    actor: Actor,
    q_fn: Callable[[Float[Array, "batch obs_dim"], Float[Array, "batch action_dim"]], Float[Array, " batch"]],
    observations: Float[Array, "batch obs_dim"],
    actions: Float[Array, "batch action_dim"],
    *,
    alpha: ScalarLike = 10.0,
    normalize_q: bool = False,
) -> tuple[Scalar, ActorAux]:
    """DDPG + behaviour cloning: `-mean Q(s, clip(mu(s), -1, 1)) - alpha mean log pi(a | s)`.

    **Arguments:**

    - `actor`: the [`Actor`][] (trained).
    - `q_fn`: batched `Q(s, a)`, for example [`min_q`][]`(critic)` (the default, the minimum
      over the critic's heads, with the critic frozen) or a standard-GPI estimate that
      differentiates through the ODE. Gradients reach the actor through the actions only;
      `q_fn` must stop gradients into its own parameters (as [`min_q`][] does).
    - `observations`, `actions`: the batch `(s, a)` (the data actions for the BC term).
    - `alpha`: the behaviour-cloning weight, `>= 0` (checked: a `ValueError` for a concrete
      value, an `eqx.error_if` for a traced one).
    - `normalize_q`: divide the Q term by `mean |Q|` (no gradient through the scale), the
      reference's optional `normalize_q_loss`.

    **Returns:** `(loss, ActorAux(q_loss, bc_loss, q_mean, action_mse))`.
    """
    means = jax.vmap(actor)(observations)
    q = q_fn(observations, jnp.clip(means, -1.0, 1.0))
    q_loss = -jnp.mean(q)
    if normalize_q:
        q_loss = q_loss / jax.lax.stop_gradient(jnp.mean(jnp.abs(q)) + 1e-8)
    bc = -alpha * jnp.mean(gaussian_log_prob(means, actions))
    mse = jnp.mean(jnp.square(means - actions))
    return q_loss + bc, ActorAux(q_loss, bc, jnp.mean(q), mse)


# --------------------------------------------------------------------------- target networks


@boundary(tau=Range(0.0, 1.0))
def ema_update(target: PyTree, online: PyTree, tau: ScalarLike) -> PyTree:
    """Polyak averaging `target <- tau * online + (1 - tau) * target` on array leaves.

    `tau` must lie in `[0, 1]` (checked: a `ValueError` for a concrete value, an
    `eqx.error_if` for a traced one).
    """
    return jax.tree.map(
        lambda t, o: tau * o + (1.0 - tau) * t if eqx.is_inexact_array(t) else t, target, online
    )


def reset_target(online: PyTree) -> PyTree:
    """The target reset at the start of fine-tuning: a copy of the online parameters."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x, online)
