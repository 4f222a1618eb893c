"""Analytic vector fields with known flows, for tests."""

import jax.numpy as jnp
from jaxtyping import Array, Float

import infom


class ConstantField(infom.AbstractVectorField):
    """`v(t, x, s, a, z) = c`: the flow maps `x_0` to `x_0 + c`."""

    c: Float[Array, " obs_dim"]

    def condition(self, observation, action, intention):
        return jnp.zeros((1,), dtype=observation.dtype)

    def velocity(self, t, x, conditioning):
        return jnp.broadcast_to(self.c, x.shape)


class GaussianField(infom.AbstractVectorField):
    """The exact marginal velocity of the straight path from `N(0, I)` to `N(m, sigma^2 I)`.

    With `x_t = t x_1 + (1 - t) x_0`, `x_t ~ N(t m, a(t) I)`, `a(t) = t^2 sigma^2 + (1 - t)^2`,
    and `u(t, x) = E[x_1 - x_0 | x_t = x] = m + (t sigma^2 - (1 - t)) / a(t) * (x - t m)`.
    The mean `m` is read from the conditioning observation, so one field serves many targets.
    """

    sigma: float

    def condition(self, observation, action, intention):
        return observation

    def velocity(self, t, x, conditioning):
        m = conditioning
        a = t**2 * self.sigma**2 + (1.0 - t) ** 2
        return m + (t * self.sigma**2 - (1.0 - t)) / a * (x - t * m)


class ZeroField(infom.AbstractVectorField):
    """`v = 0`."""

    def condition(self, observation, action, intention):
        return jnp.zeros((1,), dtype=observation.dtype)

    def velocity(self, t, x, conditioning):
        return jnp.zeros_like(x)
