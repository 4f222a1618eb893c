"""Sampling from the flow occupancy model (a diffrax ODE solve) and Monte-Carlo Q."""

import abc
import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax.scipy.special import ndtri
from jaxtyping import Array, Float, PRNGKeyArray, Scalar, ScalarLike

from ._checks import POSITIVE_INT, Range, boundary
from ._networks import AbstractVectorField


class _UniformGrid(diffrax.StepTo):
    """`diffrax.StepTo(linspace(0, 1, n + 1))` without its run-time checks of the grid.

    `StepTo` checks that `ts` increases and starts and ends at `t0` and `t1`; under `jit` those
    checks are host callbacks, run at every solve, and a program holding a callback is never written
    to JAX's persistent compilation cache. This grid is built here, from `0` to `1`, and holds by
    construction; the steps are `StepTo`'s."""

    def wrap(self, direction: Any) -> "_UniformGrid":
        return self  # only ever used forward in time, from 0 to 1

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):  # noqa: ANN001 (diffrax's)
        del terms, t0, t1, y0, args, func, error_order
        assert dt0 is None
        return self.ts[1], 2


class ClipToBox(diffrax.AbstractWrappedSolver):
    """Wraps a diffrax solver and clips the state into `[lower, upper]` after every step.

    This is the reference implementation's projection of generated futures onto the range
    of the (normalised) dataset, applied after each Euler step. Because a clipped state
    invalidates "first same as last" caches, the wrapped solver is told that every step
    follows a jump (so FSAL solvers such as `Tsit5` re-evaluate the field at the start of
    each step). Dense output between steps is the wrapped solver's unclipped interpolant.
    """

    solver: diffrax.AbstractSolver
    lower: Float[Array, "*#batch obs_dim"]
    upper: Float[Array, "*#batch obs_dim"]

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        y1, y_error, dense_info, solver_state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, True
        )
        y1 = jnp.clip(y1, jnp.broadcast_to(self.lower, y1.shape), jnp.broadcast_to(self.upper, y1.shape))
        if isinstance(dense_info, dict) and "y1" in dense_info:
            dense_info = {**dense_info, "y1": y1}
        return y1, y_error, dense_info, solver_state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def _flat_vmap(fn: Callable, lead: tuple[int, ...], *arrays: Array) -> Array:
    """Applies a per-example `fn` to arrays broadcast to the leading shape `lead`."""
    size = math.prod(lead)
    flat = [jnp.broadcast_to(x, lead + x.shape[-1:]).reshape(size, x.shape[-1]) for x in arrays]
    out = jax.vmap(fn)(*flat)
    return out.reshape(lead + out.shape[1:])


def _velocity_term(t: Scalar, y: Array, args: tuple[AbstractVectorField, Array]) -> Array:
    field, conditioning = args
    return jax.vmap(field.velocity, in_axes=(None, 0, 0))(t, y, conditioning)


def _leading_shape(*arrays: Array) -> tuple[int, ...]:
    return jnp.broadcast_shapes(*(x.shape[:-1] for x in arrays))


@boundary()
def field_conditioning(
    field: AbstractVectorField,
    observations: Float[Array, "*#batch obs_dim"],
    actions: Float[Array, "*#batch action_dim"],
    intentions: Float[Array, "*#batch latent_dim"],
) -> Float[Array, "*batch cond_dim"]:
    """`field.condition(s, a, z)` for broadcastable batches of `(s, a, z)`.

    Computing this once and passing it to [`solve_flow`][] via `conditioning=` reuses the
    first layer's conditioning part across calls (for example between the occupancy loss
    and the critic's futures of the same batch).
    """
    lead = _leading_shape(observations, actions, intentions)
    return _flat_vmap(field.condition, lead, observations, actions, intentions)


@boundary(num_steps=POSITIVE_INT)
def solve_flow(
    field: AbstractVectorField,
    noise: Float[Array, "*#batch obs_dim"],
    observations: Float[Array, "*#batch obs_dim"] | None = None,
    actions: Float[Array, "*#batch action_dim"] | None = None,
    intentions: Float[Array, "*#batch latent_dim"] | None = None,
    *,
    conditioning: Float[Array, "*#batch cond_dim"] | None = None,
    num_steps: int = 10,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
    max_steps: int | None = None,
    throw: bool | None = None,
) -> Float[Array, "*batch obs_dim"]:
    """Transports noise to future states along the flow ODE, deterministically.

    Solves `dx/dt = v(t, x, s, a, z)` from `x(0) = noise` to `t = 1` with diffrax and returns
    `x(1)`. By default this is the explicit Euler method on the uniform grid
    `t_k = k / num_steps`, `x_{k+1} = x_k + v(t_k, x_k, s, a, z) / num_steps`, the reference
    implementation's sampler. The conditioning part of the field's first layer,
    `field.condition(s, a, z)`, is computed once per distinct `(s, a, z)` (before the
    solve) and reused by every step and every noise sample that shares it.

    All leading axes broadcast against each other (NumPy rules), so one call can draw
    `[num_intentions, num_futures, batch]` futures from `z` of shape
    `[num_intentions, 1, batch, latent_dim]` and `s` of shape `[batch, obs_dim]`.

    **Arguments:**

    - `field`: the vector field (for example [`VectorField`][]).
    - `noise`: the initial points `x(0)`, usually standard normal.
    - `observations`, `actions`, `intentions`: the conditioning `(s, a, z)`. Omit them
      and pass `conditioning=` instead to reuse a precomputed
      [`field_conditioning`][]`(field, s, a, z)`.
    - `num_steps`: number of steps on the uniform grid, a positive integer (checked; ignored
      if `stepsize_controller` is given).
    - `solver`: any diffrax ODE solver; `diffrax.Euler()` by default.
    - `stepsize_controller`: a diffrax step-size controller; by default
      `diffrax.StepTo(linspace(0, 1, num_steps + 1))`. Pass e.g.
      `diffrax.PIDController(rtol, atol)` with an adaptive solver, and `max_steps`.
    - `clip`: optional `(lower, upper)` bounds; the state is clipped into them after every
      step (see [`ClipToBox`][]).
    - `max_steps`: diffrax's step budget; `num_steps` by default for the uniform grid.
    - `throw`: whether a failed solve raises (diffrax semantics). `None` (the default): where a
      solve can fail, that is with a `stepsize_controller`, an implicit solver or `max_steps`
      under `num_steps`. On the uniform grid an explicit solver takes its `num_steps` steps and
      cannot fail, so no check is compiled in (diffrax's check is a host callback, which also
      keeps the program out of JAX's persistent compilation cache).

    **Returns:** `x(1)`, with the broadcast leading shape.

    !!! Example

        ```python
        futures = infom.solve_flow(field, jr.normal(key, (16, 256, obs_dim)), s, a, z)
        ```
    """
    if conditioning is None:
        if observations is None or actions is None or intentions is None:
            raise ValueError(
                "solve_flow needs either `observations`, `actions` and `intentions`, or `conditioning`"
            )
        conditioning = field_conditioning(field, observations, actions, intentions)
    elif observations is not None or actions is not None or intentions is not None:
        raise ValueError("solve_flow takes either (observations, actions, intentions) or `conditioning`")

    lead = _leading_shape(noise, conditioning)
    size = math.prod(lead)
    x0 = jnp.broadcast_to(noise, lead + noise.shape[-1:]).reshape(size, noise.shape[-1])
    cond = jnp.broadcast_to(conditioning, lead + conditioning.shape[-1:]).reshape(
        size, conditioning.shape[-1]
    )

    if solver is None:
        solver = diffrax.Euler()
    if clip is not None:
        lower, upper = clip
        solver = ClipToBox(solver, lower, upper)
    if throw is None:
        inner = solver.solver if isinstance(solver, ClipToBox) else solver
        throw = (
            stepsize_controller is not None
            or isinstance(inner, diffrax.AbstractImplicitSolver)
            or (max_steps is not None and max_steps < num_steps)
        )
    if stepsize_controller is None:
        stepsize_controller = _UniformGrid(ts=jnp.linspace(0.0, 1.0, num_steps + 1))
        dt0 = None
        if max_steps is None:
            max_steps = num_steps
    else:
        dt0 = 1.0 / num_steps
        if max_steps is None:
            max_steps = 4096
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(_velocity_term),
        solver,
        t0=0.0,
        t1=1.0,
        dt0=dt0,
        y0=x0,
        args=(field, cond),
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=stepsize_controller,
        max_steps=max_steps,
        throw=throw,
    )
    assert solution.ys is not None
    return solution.ys[-1].reshape(lead + noise.shape[-1:])


class AbstractNoise(eqx.Module):
    """How [`sample_future`][] draws its noise `x_0`. Each sample stays marginally `N(0, I)`, so
    Monte-Carlo means over the samples stay unbiased. Subclasses are final Equinox modules."""

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray, shape: tuple[int, ...], dim: int, dtype: Any) -> Array:
        """Noise of shape `[*shape, dim]` for samples of leading shape `shape`."""


class GaussianNoise(AbstractNoise):
    """I.i.d. `x_0 ~ N(0, I)` (the paper's sampler)."""

    def __call__(self, key: PRNGKeyArray, shape: tuple[int, ...], dim: int, dtype: Any) -> Array:
        return jr.normal(key, (*shape, dim), dtype=dtype)


def _axis_of(shape: tuple[int, ...], axis: int, name: str) -> int:
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"sample_future: `{name}` {axis} is not an axis of `shape` {shape}")
    return axis % len(shape)


class AntitheticNoise(AbstractNoise):
    """Antithetic pairs along `axis` of the samples' shape: its first half is `eps ~ N(0, I)`
    and its second half `-eps`. Each sample is still `N(0, I)`, but the two halves are
    negatively correlated wherever the flow map is close to monotone, which lowers the
    variance of a mean over that axis (for odd functions of the noise). `axis` must have even
    size, e.g. `0` for the futures axis of `shape=(N, batch)`."""

    axis: int = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, shape: tuple[int, ...], dim: int, dtype: Any) -> Array:
        axis = _axis_of(shape, self.axis, "AntitheticNoise.axis")
        if shape[axis] % 2:
            raise ValueError(
                f"sample_future: AntitheticNoise axis {self.axis} of `shape` {shape} must have even size"
            )
        half = (*shape[:axis], shape[axis] // 2, *shape[axis + 1 :], dim)
        eps = jr.normal(key, half, dtype=dtype)
        return jnp.concatenate([eps, -eps], axis=axis)


class LatinHypercubeNoise(AbstractNoise):
    """A Latin hypercube sample along `axis` (of size `n`): for every other index and every
    state dimension `j`, the `n` values of `x_0[..., j]` are `Phi^-1((pi_i + u_i) / n)` with
    `pi` a uniformly random permutation of `0..n-1` and `u_i ~ U[0, 1)`, so exactly one value
    falls in each of the `n` equal-probability strata of `N(0, 1)`. Each sample is still
    `N(0, I)`; the variance of a mean over the axis loses the part that is additive in the
    noise's coordinates (linear or not), which antithetic pairs only remove for odd functions."""

    axis: int = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, shape: tuple[int, ...], dim: int, dtype: Any) -> Array:
        axis = _axis_of(shape, self.axis, "LatinHypercubeNoise.axis")
        n = shape[axis]
        full = (*shape, dim)
        order_key, jitter_key = jr.split(key)
        # argsort of i.i.d. uniforms is a uniformly random permutation along `axis`.
        strata = jnp.argsort(jr.uniform(order_key, full), axis=axis).astype(dtype)
        jitter = jr.uniform(jitter_key, full, dtype=dtype)
        u = jnp.clip((strata + jitter) / n, jnp.finfo(dtype).tiny, 1.0 - jnp.finfo(dtype).epsneg)
        return ndtri(u)


@boundary(num_steps=POSITIVE_INT)
def sample_future(
    field: AbstractVectorField,
    observations: Float[Array, "*#batch obs_dim"],
    actions: Float[Array, "*#batch action_dim"],
    intentions: Float[Array, "*#batch latent_dim"],
    *,
    key: PRNGKeyArray,
    shape: tuple[int, ...] | None = None,
    noise: AbstractNoise = GaussianNoise(),
    **solve_kwargs: Any,
) -> Float[Array, "*sample obs_dim"]:
    """Draws future states `s_f ~ q(s_f | s, a, z)` from the flow occupancy model.

    Draws `x_0 ~ N(0, I)` with `noise` and returns [`solve_flow`][]`(field, x_0, s, a, z)`:
    the solution at `t = 1` of `dx/dt = v(t, x, s, a, z)`, 10 Euler steps by default. Every
    noise builder keeps each sample distributed as `q(. | s, a, z)`; [`AntitheticNoise`][] and
    [`LatinHypercubeNoise`][] correlate the samples along one axis to lower the variance of a
    Monte-Carlo mean over it.

    **Arguments:**

    - `field`: the (online or target) vector field.
    - `observations`, `actions`, `intentions`: the conditioning, with broadcastable leading
      axes.
    - `key`: PRNG key for the noise `x_0`.
    - `shape`: leading shape of the samples; must broadcast with the conditioning's leading
      shape (right-aligned). Default: the conditioning's broadcast leading shape (one
      future per conditioning input). For `N` futures per state of a batch, use
      `shape=(N, batch)`; for `K` intentions `z` of shape `[K, 1, batch, latent_dim]`,
      `shape=(K, N, batch)`.
    - `noise`: an [`AbstractNoise`][]: [`GaussianNoise`][]`()` (i.i.d., the default),
      [`AntitheticNoise`][]`(axis)` or [`LatinHypercubeNoise`][]`(axis)`, the axis counted in
      `shape` (e.g. `0` for the futures axis of `shape=(N, batch)`).
    - `**solve_kwargs`: `num_steps` (a positive integer, checked), `solver`,
      `stepsize_controller`, `clip`, `max_steps`, `throw`, passed to [`solve_flow`][].

    **Returns:** samples of shape `[*shape, obs_dim]`.

    !!! Example

        ```python
        futures = infom.sample_future(field, s, a, z, key=key, shape=(16, s.shape[0]))
        q_hat = infom.mc_q(reward_model, futures, gamma=0.99)  # shape [batch]
        ```
    """
    lead = _leading_shape(observations, actions, intentions)
    if shape is None:
        shape = lead
    else:
        shape = tuple(shape)
        try:
            broadcast = jnp.broadcast_shapes(shape, lead)
        except ValueError as error:
            raise ValueError(
                f"sample_future: `shape` {shape} does not broadcast with the conditioning's "
                f"leading shape {lead}"
            ) from error
        if broadcast != shape:
            raise ValueError(
                f"sample_future: `shape` {shape} must contain the conditioning's leading shape "
                f"{lead} (broadcast gives {broadcast})"
            )
    x0 = noise(key, shape, observations.shape[-1], observations.dtype)
    return solve_flow(field, x0, observations, actions, intentions, **solve_kwargs)


@boundary(gamma=Range(0.0, 1.0, high_open=True))
def mc_q(
    reward_fn: Callable[[Float[Array, " obs_dim"]], Scalar],
    futures: Float[Array, "*intentions num_futures batch obs_dim"],
    *,
    gamma: ScalarLike,
) -> Float[Array, "*intentions batch"]:
    """Monte-Carlo Q from sampled futures: `Q_hat(s, a, z) = 1/(1 - gamma) * mean_i r(s_f^i)`.

    Because `q(s_f | s, a, z)` is the discounted occupancy
    `(1 - gamma) sum_k gamma^k p(s_k = s_f | s, a, z)`, the expected reward under it times
    `1 / (1 - gamma)` is `Q(s, a, z) = sum_k gamma^k E[r(s_k)]` for rewards `r(s)`.

    **Arguments:**

    - `reward_fn`: a per-state reward, e.g. a [`RewardModel`][].
    - `futures`: samples `s_f^i` laid out `[*intentions, num_futures, batch, obs_dim]`, as
      returned by [`sample_future`][] with `shape=(*intentions, num_futures, batch)`.
    - `gamma`: the discount used to train the occupancy model, in `[0, 1)` (checked: a
      `ValueError` for a concrete value, `eqx.error_if` for a traced one).

    **Returns:** `Q_hat` of shape `[*intentions, batch]`.
    """
    lead = futures.shape[:-1]
    rewards = _flat_vmap(reward_fn, lead, futures)
    return jnp.mean(rewards, axis=-2) / (1.0 - gamma)


@boundary()
def standard_gpi(q_values: Float[Array, "num_intentions *batch"]) -> Float[Array, "*batch"]:  # noqa: F821
    """Standard generalised policy improvement: `Q(s, a) = max_k Q_hat(s, a, z_k)`.

    This is the paper's "standard GPI" ablation over a finite set of intentions; the
    default method replaces it by [`expectile_distill`][].
    """
    return jnp.max(q_values, axis=0)
