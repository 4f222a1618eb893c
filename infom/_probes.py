"""Probe problems whose discounted state occupancy is known in closed form, and
distribution distances to compare sampled occupancies against them."""

import dataclasses
import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._types import Batch


@dataclasses.dataclass(frozen=True)
class LinearGaussianProbe:
    """A scalar linear-Gaussian system under a fixed random behaviour policy.

    Dynamics `s' = rho s + beta a + sigma w` with `w ~ N(0, 1)`; the behaviour policy draws
    `a ~ N(0, 1)` independently of the state, and states are drawn from the stationary
    distribution `N(0, (sigma^2 + beta^2) / (1 - rho^2))`. Given `(s_0, a_0) = (s, a)`,
    `s_k ~ N(m_k, v_k)` for `k >= 1` with `m_k = rho^k s + rho^(k-1) beta a` and
    `v_k = sigma^2 (1 - rho^(2k)) / (1 - rho^2) + beta^2 (1 - rho^(2(k-1))) / (1 - rho^2)`,
    so the discounted occupancy
    `p(s_f | s, a) = (1 - gamma) delta_s + sum_{k>=1} (1 - gamma) gamma^k N(m_k, v_k)`
    is an explicit mixture.
    """

    rho: float = 0.8
    beta: float = 0.5
    sigma: float = 0.3

    def __post_init__(self):
        if not 0 <= abs(self.rho) < 1:
            raise ValueError(f"LinearGaussianProbe.rho must satisfy |rho| < 1, got {self.rho}")
        if self.sigma < 0 or self.beta < 0:
            raise ValueError("LinearGaussianProbe.sigma and .beta must be non-negative")

    @property
    def stationary_std(self) -> float:
        return math.sqrt((self.sigma**2 + self.beta**2) / (1 - self.rho**2))

    def sample_batch(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        """Draws SARSA transitions `(s, a, s', a')` from the stationary process (jittable)."""
        s_key, a_key, w_key, a2_key = jr.split(key, 4)
        s = self.stationary_std * jr.normal(s_key, (batch_size, 1))
        a = jr.normal(a_key, (batch_size, 1))
        s_next = self.rho * s + self.beta * a + self.sigma * jr.normal(w_key, (batch_size, 1))
        a_next = jr.normal(a2_key, (batch_size, 1))
        return Batch(s, a, s_next, a_next, jnp.zeros(batch_size), jnp.ones(batch_size))

    def sample_next(
        self, key: PRNGKeyArray, s: Float[Array, "*batch 1"], a: Float[Array, "*batch 1"]
    ) -> tuple[Float[Array, "*batch 1"], Float[Array, "*batch 1"]]:
        """Draws the next pair `(s', a')` given `(s, a)`."""
        w_key, a_key = jr.split(key)
        s_next = self.rho * s + self.beta * a + self.sigma * jr.normal(w_key, s.shape)
        return s_next, jr.normal(a_key, a.shape)

    def _components(self, s: float, a: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        horizon = max(1, math.ceil(math.log(1e-10) / math.log(gamma))) if gamma > 0 else 1
        k = np.arange(horizon + 1, dtype=np.float64)
        weights = (1 - gamma) * gamma**k
        weights[-1] += gamma ** (horizon + 1)  # tail mass (negligible) on the last component
        rho, r2 = self.rho, self.rho**2
        means = np.where(k == 0, s, rho**k * s + rho ** np.maximum(k - 1, 0) * self.beta * a)
        var = self.sigma**2 * (1 - r2**k) / (1 - r2) + self.beta**2 * (1 - r2 ** np.maximum(k - 1, 0)) / (1 - r2)
        return weights, means, np.where(k == 0, 0.0, var)

    def occupancy_moments(self, s: float, a: float, gamma: float) -> tuple[float, float]:
        """Exact mean and variance of the discounted occupancy `p(s_f | s, a)`."""
        weights, means, var = self._components(s, a, gamma)
        mean = float(np.sum(weights * means))
        second = float(np.sum(weights * (means**2 + var)))
        return mean, second - mean**2

    def sample_occupancy(self, seed: int, s: float, a: float, gamma: float, n: int) -> np.ndarray:
        """`n` exact samples of `s_f ~ p(s_f | s, a)` (NumPy, float64)."""
        rng = np.random.default_rng(seed)
        weights, means, var = self._components(s, a, gamma)
        k = rng.choice(len(weights), size=n, p=weights / weights.sum())
        return means[k] + np.sqrt(var[k]) * rng.standard_normal(n)


def wasserstein_1d(x: np.ndarray, y: np.ndarray) -> float:
    """Wasserstein-1 distance between two 1-D empirical distributions of equal size:
    `mean_i |x_(i) - y_(i)|` over the sorted samples."""
    x, y = np.sort(np.asarray(x, np.float64).ravel()), np.sort(np.asarray(y, np.float64).ravel())
    if x.shape != y.shape:
        raise ValueError(f"wasserstein_1d needs equal sample sizes, got {x.size} and {y.size}")
    return float(np.mean(np.abs(x - y)))


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, *, num_projections: int = 128, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two `[n, d]` sample sets of equal size: the mean
    over random unit directions `u` of `wasserstein_1d(x u, y u)`."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs two [n, d] arrays of equal shape, got {x.shape} and {y.shape}")
    directions = np.random.default_rng(seed).standard_normal((x.shape[1], num_projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    px, py = np.sort(x @ directions, axis=0), np.sort(y @ directions, axis=0)
    return float(np.mean(np.abs(px - py)))

