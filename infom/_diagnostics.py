"""How much does a trained occupancy model use its intention `z`? A diagnostic any user can run."""

from collections.abc import Callable
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, Scalar, ScalarLike

from ._checks import POSITIVE_INT, Range, boundary
from ._losses import encode, frozen
from ._networks import AbstractVectorField, IntentionEncoder
from ._sampling import field_conditioning, solve_flow
from ._types import Batch


class IntentionUsage(NamedTuple):
    """What [`intention_usage`][] measured (means over the batch).

    **Fields:**

    - `kl_per_dim`: `[latent_dim]`, `E KL(p_e(z_j | s', a') || N(0, 1))` per latent dimension
      (nats). A dimension the encoder does not use sits at 0 (its posterior is the prior).
    - `future_shift`: how far the sampled futures move when only `z` changes, in units of
      how far they move when only the noise changes:
      `E_{s,a,x_0} Var_z[psi(x_0; s, a, z)] / E_{s,a,z} Var_{x_0}[psi(x_0; s, a, z)]`, summed
      over state dimensions, with `z ~ N(0, I)` and `psi` the flow map (the ODE solution from
      noise `x_0`). The same noise is used for every intention (common random numbers), so a
      field that ignores `z` reads exactly 0; 1 means changing the intention moves a future as
      much as redrawing it.
    - `q_shift`: the same for the Monte-Carlo Q if a reward function was given (else `None`):
      `E_{s,a} std_z[Q_hat(s, a, z)] / E_{s,a} se[Q_hat(s, a, z)]`, the spread of the
      intentions' `Q_hat` (each from the same `N` noises) in units of one `Q_hat`'s Monte-Carlo
      standard error `std_i[r(s_f^i)] / ((1 - gamma) sqrt(N))`. 0 for a field that ignores `z`;
      above about 1, implicit GPI's expectile over intentions sees more than Monte-Carlo noise.
    """

    kl_per_dim: Float[Array, " latent_dim"]
    future_shift: Scalar
    q_shift: Scalar | None


_AT_LEAST_TWO = Range(2, integer=True)


@boundary(
    num_intentions=_AT_LEAST_TWO,
    num_futures=_AT_LEAST_TWO,
    num_steps=POSITIVE_INT,
    gamma=Range(0.0, 1.0, high_open=True),
)
def intention_usage(
    field: AbstractVectorField,
    encoder: IntentionEncoder,
    batch: Batch,
    *,
    key: PRNGKeyArray,
    num_intentions: int = 8,
    num_futures: int = 8,
    num_steps: int = 10,
    reward_fn: Callable[[Float[Array, " obs_dim"]], Scalar] | None = None,
    gamma: ScalarLike = 0.99,
    clip: tuple[Float[Array, " obs_dim"], Float[Array, " obs_dim"]] | None = None,
    solver: diffrax.AbstractSolver | None = None,
) -> IntentionUsage:
    """Measures how much the occupancy model `q(s_f | s, a, z)` depends on its intention.

    For each `(s, a)` of `batch`, draws `K = num_intentions` prior intentions `z_k ~ N(0, I)`
    and `N = num_futures` noises `x_0^i ~ N(0, I)` shared by all `k`, and solves the flow
    `F_ki = psi(x_0^i; s, a, z_k)` (`num_steps` steps of `solver`, Euler by default, optionally
    clipped). Then (see [`IntentionUsage`][]):

    - `future_shift = mean_{b,i} sum_j Var_k F_kij / mean_{b,k} sum_j Var_i F_kij` (unbiased
      variances);
    - with `reward_fn`: `Q_k = 1/(1 - gamma) mean_i r(F_ki)` and
      `q_shift = mean_b std_k Q_k / mean_b (mean_k std_i r(F_ki) / ((1 - gamma) sqrt(N)))`;
    - `kl_per_dim` from the encoder's posterior on `batch`'s `(s', a')`, or on its context pair
      if it carries one.

    No gradient flows into the networks. A model that ignores `z` gives `future_shift = 0` and
    `q_shift = 0` exactly; the latent dimensions a model does not use give `kl_per_dim = 0`.

    **Arguments:**

    - `field`, `encoder`: the vector field and the intention encoder.
    - `batch`: a [`Batch`][] (its observations, actions and next or context pairs are read).
    - `key`: split into `(posterior sample, intentions, noise)`.
    - `num_intentions` (`K >= 2`), `num_futures` (`N >= 2`), `num_steps`: sizes of the
      measurement.
    - `reward_fn`, `gamma`: a per-state reward (e.g. the trained [`RewardModel`][]) and the
      discount of the occupancy model, for `q_shift`.
    - `clip`, `solver`: as in [`solve_flow`][].
    """
    field, encoder = frozen(field), frozen(encoder)
    s, a = batch.observations, batch.actions
    size, obs_dim = s.shape
    posterior_key, z_key, noise_key = jr.split(key, 3)
    context = (batch.next_observations, batch.next_actions)
    if batch.context_observations is not None and batch.context_actions is not None:
        context = (batch.context_observations, batch.context_actions)
    posterior = encode(encoder, *context, key=posterior_key)
    latent = posterior.mean.shape[-1]
    # The terms of `kl_to_prior`, per dimension.
    mean, log_std = posterior.mean, posterior.log_std
    kl = jnp.mean(0.5 * (jnp.square(mean) + jnp.exp(2.0 * log_std) - 1.0 - 2.0 * log_std), axis=0)

    z = jr.normal(z_key, (num_intentions, 1, size, latent), dtype=s.dtype)
    noise = jr.normal(noise_key, (1, num_futures, size, obs_dim), dtype=s.dtype)
    conditioning = field_conditioning(field, s, a, z)  # [K, 1, B, c]
    futures = solve_flow(
        field, noise, conditioning=conditioning, num_steps=num_steps, clip=clip, solver=solver
    )  # [K, N, B, obs]
    across_z = jnp.mean(jnp.sum(_var(futures, axis=0), axis=-1))
    across_noise = jnp.mean(jnp.sum(_var(futures, axis=1), axis=-1))
    future_shift = across_z / jnp.maximum(across_noise, jnp.finfo(s.dtype).tiny)

    q_shift = None
    if reward_fn is not None:
        rewards = jax.vmap(jax.vmap(jax.vmap(reward_fn)))(futures)  # [K, N, B]
        q = jnp.mean(rewards, axis=1) / (1.0 - gamma)  # [K, B]
        se = jnp.sqrt(_var(rewards, axis=1)) / ((1.0 - gamma) * jnp.sqrt(num_futures))
        spread = jnp.mean(jnp.sqrt(_var(q, axis=0)))
        q_shift = spread / jnp.maximum(jnp.mean(se), jnp.finfo(s.dtype).tiny)
    return IntentionUsage(kl, future_shift, q_shift)


def _var(x: Array, axis: int) -> Array:
    """The unbiased variance along `axis`, of the deviations from the first element (the same
    number, but exactly 0 when all elements are equal)."""
    return jnp.var(x - jnp.take(x, jnp.array([0]), axis=axis), axis=axis, ddof=1)
