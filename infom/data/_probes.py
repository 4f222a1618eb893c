"""Probe problems whose discounted state occupancy is known in closed form, and
distribution distances to compare sampled occupancies against them."""

import dataclasses
import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, ScalarLike

from .._types import Batch


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

    def sample_future_batch(
        self, key: PRNGKeyArray, batch_size: int, gamma: ScalarLike
    ) -> tuple[Batch, Float[Array, "batch 1"]]:
        """Draws SARSA transitions plus one future state `s_k` of the same trajectory (jittable).

        `k ~ Geometric(1 - gamma)` on `{0, 1, 2, ...}` (`P(k) = (1 - gamma) gamma^k`), so `s_k`
        is an exact sample of the discounted occupancy `p(s_f | s, a)`, drawn jointly with
        `(s', a')`: `s_0 = s`, `s_1 = s'` and, for `k >= 2`, `s_k` from the exact `(k - 1)`-step
        law given `(s', a')` (the same distribution as rolling the trajectory out). These are
        the regression targets of Monte-Carlo flow matching.
        """
        batch_key, k_key, w_key = jr.split(key, 3)
        batch = self.sample_batch(batch_key, batch_size)
        k = _geometric(k_key, gamma, (batch_size, 1))
        j = jnp.maximum(k - 1, 1).astype(batch.observations.dtype)
        rho, r2 = self.rho, self.rho**2
        mean = rho**j * batch.next_observations + rho ** (j - 1) * self.beta * batch.next_actions
        var = self.sigma**2 * (1 - r2**j) / (1 - r2) + self.beta**2 * (1 - r2 ** (j - 1)) / (1 - r2)
        later = mean + jnp.sqrt(var) * jr.normal(w_key, (batch_size, 1))
        future = jnp.where(k == 0, batch.observations, jnp.where(k == 1, batch.next_observations, later))
        return batch, future

    def _components(self, s: float, a: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        horizon = max(1, math.ceil(math.log(1e-10) / math.log(gamma))) if gamma > 0 else 1
        k = np.arange(horizon + 1, dtype=np.float64)
        weights = (1 - gamma) * gamma**k
        weights[-1] += gamma ** (horizon + 1)  # tail mass (negligible) on the last component
        rho, r2 = self.rho, self.rho**2
        means = np.where(k == 0, s, rho**k * s + rho ** np.maximum(k - 1, 0) * self.beta * a)
        var = self.sigma**2 * (1 - r2**k) / (1 - r2) + self.beta**2 * (1 - r2 ** np.maximum(k - 1, 0)) / (
            1 - r2
        )
        return weights, means, np.where(k == 0, 0.0, var)

    def occupancy_moments(self, s: float, a: float, gamma: float) -> tuple[float, float]:
        """Exact mean and variance of the discounted occupancy `p(s_f | s, a)`."""
        weights, means, var = self._components(s, a, gamma)
        mean = float(np.sum(weights * means))
        second = float(np.sum(weights * (means**2 + var)))
        return mean, second - mean**2

    def occupancy_density(self, x: np.ndarray, s: float, a: float, gamma: float) -> np.ndarray:
        """The density of the continuous part of `p(s_f | s, a)` at the points `x`,
        `sum_{k>=1} (1 - gamma) gamma^k N(x; m_k, v_k)` (the rest, `1 - gamma`, is the point mass at
        `s`), NumPy float64."""
        weights, means, var = self._components(s, a, gamma)
        x = np.asarray(x, np.float64)[None]
        w, m, v = weights[1:, None], means[1:, None], var[1:, None]
        return np.sum(w * np.exp(-0.5 * (x - m) ** 2 / v) / np.sqrt(2 * np.pi * v), axis=0)

    def sample_occupancy(self, seed: int, s: float, a: float, gamma: float, n: int) -> np.ndarray:
        """`n` exact samples of `s_f ~ p(s_f | s, a)` (NumPy, float64)."""
        rng = np.random.default_rng(seed)
        weights, means, var = self._components(s, a, gamma)
        k = rng.choice(len(weights), size=n, p=weights / weights.sum())
        return means[k] + np.sqrt(var[k]) * rng.standard_normal(n)


@dataclasses.dataclass(frozen=True)
class LinearSystemProbe:
    """A multi-dimensional linear-Gaussian system under a fixed closed-loop linear policy.

    Dynamics `s' = A s + B a + sigma w`, policy `a = K s + sigma_a e` (`w, e ~ N(0, I)`), so the
    closed loop is `s' = F s + n` with `F = A + B K` and noise covariance
    `Q = sigma_a^2 B B^T + sigma^2 I`. States are drawn from the stationary law `N(0, S)`, with `S`
    solving `S = F S F^T + Q`. Given `(s_0, a_0) = (s, a)`, `s_k ~ N(m_k, C_k)` for `k >= 1` with
    `m_1 = A s + B a`, `C_1 = sigma^2 I`, `m_(k+1) = F m_k`, `C_(k+1) = F C_k F^T + Q`, and the
    discounted occupancy `(1 - gamma) delta_s + sum_(k>=1) (1 - gamma) gamma^k N(m_k, C_k)` is an
    explicit mixture.

    The default is a damped double integrator (position, velocity; time step 0.1) under a PD
    policy: the closed loop's eigenvalues have modulus 0.93, a memory of about 14 steps, so at
    `gamma = 0.99` (horizon 100) the occupancy is spread over several time constants.
    """

    a_matrix: tuple[tuple[float, ...], ...] = ((1.0, 0.1), (0.0, 1.0))
    b_matrix: tuple[tuple[float, ...], ...] = ((0.0,), (0.1,))
    gain: tuple[tuple[float, ...], ...] = ((-1.0, -1.5),)
    sigma: float = 0.1
    action_std: float = 1.0

    def __post_init__(self):
        a, b, k = self._matrices()
        d, m = a.shape[0], b.shape[1]
        if a.shape != (d, d) or b.shape != (d, m) or k.shape != (m, d):
            raise ValueError(
                "LinearSystemProbe: a_matrix must be [d, d], b_matrix [d, m] and gain [m, d], got "
                f"{a.shape}, {b.shape} and {k.shape}"
            )
        radius = float(np.max(np.abs(np.linalg.eigvals(a + b @ k))))
        if radius >= 1:
            raise ValueError(
                f"LinearSystemProbe: the closed loop A + B K must be stable, spectral radius {radius:.3f}"
            )
        if self.sigma <= 0 or self.action_std < 0:
            raise ValueError("LinearSystemProbe: sigma must be positive and action_std non-negative")

    def _matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b, k = (np.asarray(m, np.float64) for m in (self.a_matrix, self.b_matrix, self.gain))
        return a, b, k

    @property
    def obs_dim(self) -> int:
        return len(self.a_matrix)

    @property
    def action_dim(self) -> int:
        return len(self.gain)

    @property
    def closed_loop(self) -> np.ndarray:
        """`F = A + B K`."""
        a, b, k = self._matrices()
        return a + b @ k

    @property
    def noise_cov(self) -> np.ndarray:
        """`Q = sigma_a^2 B B^T + sigma^2 I`."""
        _, b, _ = self._matrices()
        return self.action_std**2 * b @ b.T + self.sigma**2 * np.eye(self.obs_dim)

    @property
    def stationary_cov(self) -> np.ndarray:
        """`S = sum_j F^j Q (F^T)^j`, the solution of `S = F S F^T + Q`."""
        f, q = self.closed_loop, self.noise_cov
        d = self.obs_dim
        vec = np.linalg.solve(np.eye(d * d) - np.kron(f, f), q.reshape(-1))
        return vec.reshape(d, d)

    def sample_batch(self, key: PRNGKeyArray, batch_size: int) -> Batch:
        """Draws SARSA transitions `(s, a, s', a')` from the stationary closed loop (jittable)."""
        s_key, e_key, w_key, e2_key = jr.split(key, 4)
        a_mat, b_mat, gain = (jnp.asarray(m, jnp.float32) for m in self._matrices())
        chol = jnp.asarray(np.linalg.cholesky(self.stationary_cov), jnp.float32)
        s = jr.normal(s_key, (batch_size, self.obs_dim)) @ chol.T
        a = s @ gain.T + self.action_std * jr.normal(e_key, (batch_size, self.action_dim))
        s_next = s @ a_mat.T + a @ b_mat.T + self.sigma * jr.normal(w_key, (batch_size, self.obs_dim))
        a_next = s_next @ gain.T + self.action_std * jr.normal(e2_key, (batch_size, self.action_dim))
        return Batch(s, a, s_next, a_next, jnp.zeros(batch_size), jnp.ones(batch_size))

    def _components(
        self, s: np.ndarray, a: np.ndarray, gamma: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        horizon = max(1, math.ceil(math.log(1e-10) / math.log(gamma))) if gamma > 0 else 1
        weights = (1 - gamma) * gamma ** np.arange(horizon + 1, dtype=np.float64)
        weights[-1] += gamma ** (horizon + 1)  # tail mass (negligible) on the last component
        a_mat, b_mat, _ = self._matrices()
        f, q, d = self.closed_loop, self.noise_cov, self.obs_dim
        means = np.empty((horizon + 1, d))
        covs = np.zeros((horizon + 1, d, d))
        means[0] = np.asarray(s, np.float64)
        means[1] = a_mat @ np.asarray(s, np.float64) + b_mat @ np.asarray(a, np.float64)
        covs[1] = self.sigma**2 * np.eye(d)
        for k in range(2, horizon + 1):
            means[k] = f @ means[k - 1]
            covs[k] = f @ covs[k - 1] @ f.T + q
        return weights, means, covs

    def occupancy_moments(self, s: np.ndarray, a: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean `[d]` and covariance `[d, d]` of the discounted occupancy `p(s_f | s, a)`."""
        weights, means, covs = self._components(s, a, gamma)
        mean = np.sum(weights[:, None] * means, axis=0)
        second = np.sum(weights[:, None, None] * (covs + means[:, :, None] * means[:, None, :]), axis=0)
        return mean, second - np.outer(mean, mean)

    def sample_occupancy(self, seed: int, s: np.ndarray, a: np.ndarray, gamma: float, n: int) -> np.ndarray:
        """`n` exact samples `[n, d]` of `s_f ~ p(s_f | s, a)` (NumPy, float64)."""
        rng = np.random.default_rng(seed)
        weights, means, covs = self._components(s, a, gamma)
        k = rng.choice(len(weights), size=n, p=weights / weights.sum())
        chol = np.linalg.cholesky(covs + 1e-300 * np.eye(self.obs_dim))  # k = 0: the point mass at s
        return means[k] + np.einsum("nij,nj->ni", chol[k], rng.standard_normal((n, self.obs_dim)))


def _geometric(key: PRNGKeyArray, gamma: ScalarLike, shape: tuple[int, ...]) -> Int[Array, "..."]:
    """`k ~ Geometric(1 - gamma)` on `{0, 1, ...}`: `P(k >= m) = gamma^m` (`k = 0` if `gamma = 0`)."""
    # `jax.random.geometric` counts trials up to the first success, on {1, 2, ...}.
    return jr.geometric(key, 1.0 - jnp.asarray(gamma, jnp.float32), shape, dtype=jnp.int32) - 1


@dataclasses.dataclass(frozen=True)
class TwoIntentionProbe:
    """A 2-D point pulled towards one of two goals by a latent user who persists through the
    episode; the dataset mixes both users in equal proportion.

    Dynamics of user `u`: `s' = s + kappa (g_u - s) + beta a + sigma w`, that is
    `s' = g_u + lambda (s - g_u) + beta a + sigma w` with `lambda = 1 - kappa`; the behaviour
    policy `a ~ N(0, sigma_a^2 I)` is the same for both users, and the dataset's states are drawn
    from one distribution `N(c, state_std^2 I)` for both users (`c` the goals' midpoint). So
    `(s, a)` says nothing about the user (`p(u | s, a) = 1/2`), while the next state `s'` shows the
    user's pull, so an encoder of `(s', a')` can infer it (see [`TwoIntentionProbe.intention_error`][]).

    Given `(s_0, a_0) = (s, a)` and the user, `s_k ~ N(m_k, v_k I)` for `k >= 1`, with
    `m_k = g_u + lambda^(k-1) (m_1 - g_u)`, `m_1 = g_u + lambda (s - g_u) + beta a`, and
    `v_k = sigma^2 lambda^(2(k-1)) + tau^2 (1 - lambda^(2(k-1))) / (1 - lambda^2)`,
    `tau^2 = beta^2 sigma_a^2 + sigma^2`; the user's discounted occupancy is an explicit mixture,
    and the marginal occupancy given `(s, a)` is the equal mixture of the two users'.
    """

    goals: tuple[tuple[float, float], tuple[float, float]] = ((1.5, 0.0), (0.0, 1.5))
    kappa: float = 0.5
    beta: float = 0.5
    sigma: float = 0.1
    action_std: float = 0.3
    state_std: float = 0.4

    def __post_init__(self):
        if not 0 < self.kappa < 2:
            raise ValueError(f"TwoIntentionProbe.kappa must lie in (0, 2) (a stable pull), got {self.kappa}")
        if self.sigma < 0 or self.action_std < 0 or self.state_std <= 0:
            raise ValueError(
                "TwoIntentionProbe: sigma and action_std must be non-negative and state_std positive"
            )
        if len(self.goals) != 2 or any(len(g) != 2 for g in self.goals):
            raise ValueError(f"TwoIntentionProbe.goals must be two 2-D points, got {self.goals}")

    @property
    def closed_loop(self) -> float:
        """`lambda = 1 - kappa`."""
        return 1.0 - self.kappa

    @property
    def noise_var(self) -> float:
        """`tau^2 = beta^2 sigma_a^2 + sigma^2`, the noise variance of a step per axis."""
        return self.beta**2 * self.action_std**2 + self.sigma**2

    @property
    def center(self) -> np.ndarray:
        return np.mean(np.asarray(self.goals, np.float64), axis=0)

    def intention_error(self) -> float:
        """The Bayes error of inferring the user from `s'` alone (the best an encoder of
        `(s', a')` can do): `Phi(-d / 2)` with `d = kappa |g_0 - g_1| / std(s')`."""
        std = math.sqrt(self.closed_loop**2 * self.state_std**2 + self.noise_var)
        d = self.kappa * float(np.linalg.norm(np.subtract(*np.asarray(self.goals)))) / std
        return 0.5 * math.erfc(d / 2 / math.sqrt(2))

    def _goal(self, user: Array) -> Array:
        shape = user.shape + (2,)
        first, second = (jnp.broadcast_to(jnp.asarray(g, jnp.float32), shape) for g in self.goals)
        return jnp.where(jnp.broadcast_to(user[..., None] == 0, shape), first, second)

    def _step(self, key: PRNGKeyArray, s: Array, a: Array, goal: Array) -> tuple[Array, Array]:
        w_key, a_key = jr.split(key)
        s_next = goal + self.closed_loop * (s - goal) + self.beta * a
        s_next = s_next + self.sigma * jr.normal(w_key, s.shape, dtype=s.dtype)
        return s_next, self.action_std * jr.normal(a_key, a.shape, dtype=a.dtype)

    def sample_users(
        self, key: PRNGKeyArray, batch_size: int, user: int | None = None
    ) -> Int[Array, " batch"]:
        """Users of a batch: each 0 or 1 with probability 1/2, or all equal to `user`."""
        if user is None:
            return jr.bernoulli(key, 0.5, (batch_size,)).astype(jnp.int32)
        if user not in (0, 1):
            raise ValueError(f"TwoIntentionProbe: user must be 0, 1 or None, got {user!r}")
        return jnp.full((batch_size,), user, jnp.int32)

    def _transitions(self, key: PRNGKeyArray, users: Array) -> tuple[Batch, Array]:
        s_key, a_key, step_key = jr.split(key, 3)
        goal = self._goal(users)
        center = jnp.broadcast_to(jnp.asarray(self.center, jnp.float32), goal.shape)
        s = center + self.state_std * jr.normal(s_key, goal.shape)
        a = self.action_std * jr.normal(a_key, goal.shape)
        s_next, a_next = self._step(step_key, s, a, goal)
        n = users.shape[0]
        return Batch(s, a, s_next, a_next, jnp.zeros(n), jnp.ones(n)), goal

    def sample_batch(self, key: PRNGKeyArray, batch_size: int, user: int | None = None) -> Batch:
        """Draws SARSA transitions (jittable); the users are mixed half and half, or all equal
        to `user`."""
        user_key, key = jr.split(key)
        return self._transitions(key, self.sample_users(user_key, batch_size, user))[0]

    def sample_context_batch(
        self, key: PRNGKeyArray, batch_size: int, user: int | None = None
    ) -> tuple[Batch, tuple[Float[Array, "batch 2"], Float[Array, "batch 2"]]]:
        """Draws SARSA transitions plus, for each, a context pair `(s_c', a_c')`: the next pair of
        another transition of the same user drawn independently (as a pair from elsewhere in a
        long episode would be), so it tells the user but nothing about this transition (jittable)."""
        user_key, batch_key, context_key = jr.split(key, 3)
        users = self.sample_users(user_key, batch_size, user)
        batch = self._transitions(batch_key, users)[0]
        other = self._transitions(context_key, users)[0]
        return batch, (other.next_observations, other.next_actions)

    def sample_future_batch(
        self, key: PRNGKeyArray, batch_size: int, gamma: ScalarLike, user: int | None = None
    ) -> tuple[Batch, Float[Array, "batch 2"]]:
        """Draws SARSA transitions plus one future state `s_k` of the same trajectory, with
        `k ~ Geometric(1 - gamma)` on `{0, 1, ...}` (jittable); see
        [`LinearGaussianProbe.sample_future_batch`][]. The user persists from `s` to `s_k`."""
        user_key, batch_key, k_key, w_key = jr.split(key, 4)
        batch, goal = self._transitions(batch_key, self.sample_users(user_key, batch_size, user))
        k = _geometric(k_key, gamma, (batch_size, 1))
        j = jnp.maximum(k - 1, 1).astype(goal.dtype)  # steps after (s', a')
        lam, tau2 = self.closed_loop, self.noise_var
        first = lam * (batch.next_observations - goal) + self.beta * batch.next_actions
        mean = goal + lam ** (j - 1) * first
        var = self.sigma**2 * lam ** (2 * (j - 1)) + tau2 * (1 - lam ** (2 * (j - 1))) / (1 - lam**2)
        later = mean + jnp.sqrt(var) * jr.normal(w_key, goal.shape)
        s, s_next = batch.observations, batch.next_observations
        return batch, jnp.where(k == 0, s, jnp.where(k == 1, s_next, later))

    def sample_next(
        self, key: PRNGKeyArray, s: Float[Array, "*batch 2"], a: Float[Array, "*batch 2"], user: int
    ) -> tuple[Float[Array, "*batch 2"], Float[Array, "*batch 2"]]:
        """Draws the next pair `(s', a')` given `(s, a)` under user `user`'s dynamics."""
        goal = jnp.broadcast_to(jnp.asarray(self.goals[user], dtype=s.dtype), s.shape)
        return self._step(key, s, a, goal)

    def _components(
        self, s: np.ndarray, a: np.ndarray, gamma: float, user: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        horizon = max(1, math.ceil(math.log(1e-10) / math.log(gamma))) if gamma > 0 else 1
        k = np.arange(horizon + 1, dtype=np.float64)
        weights = (1 - gamma) * gamma**k
        weights[-1] += gamma ** (horizon + 1)  # tail mass (negligible) on the last component
        goal = np.asarray(self.goals[user], np.float64)
        s, a = np.asarray(s, np.float64), np.asarray(a, np.float64)
        lam, j = self.closed_loop, np.maximum(k - 1, 0)[:, None]
        first = lam * (s - goal) + self.beta * a
        means = np.where(k[:, None] == 0, s, goal + lam**j * first)
        var = self.sigma**2 * lam ** (2 * j) + self.noise_var * (1 - lam ** (2 * j)) / (1 - lam**2)
        return weights, means, np.where(k == 0, 0.0, var[:, 0])

    def occupancy_moments(
        self, s: np.ndarray, a: np.ndarray, gamma: float, user: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean `[2]` and covariance `[2, 2]` of user `user`'s discounted occupancy
        `p(s_f | s, a, u)`, or of the marginal (the equal mixture of both) if `None`."""
        users = (0, 1) if user is None else (user,)
        mean, second = np.zeros(2), np.zeros((2, 2))
        for u in users:
            weights, means, var = self._components(s, a, gamma, u)
            mean += np.sum(weights[:, None] * means, axis=0) / len(users)
            outer = means[:, :, None] * means[:, None, :] + var[:, None, None] * np.eye(2)
            second += np.sum(weights[:, None, None] * outer, axis=0) / len(users)
        return mean, second - np.outer(mean, mean)

    def sample_occupancy(
        self, seed: int, s: np.ndarray, a: np.ndarray, gamma: float, n: int, user: int | None = None
    ) -> np.ndarray:
        """`n` exact samples `[n, 2]` of user `user`'s discounted occupancy `p(s_f | s, a, u)`,
        or of the marginal (users drawn half and half) if `None` (NumPy, float64)."""
        rng = np.random.default_rng(seed)
        users = rng.integers(0, 2, size=n) if user is None else np.full(n, user)
        samples = np.empty((n, 2))
        for u in range(2):
            rows = np.flatnonzero(users == u)
            weights, means, var = self._components(s, a, gamma, u)
            k = rng.choice(len(weights), size=rows.size, p=weights / weights.sum())
            samples[rows] = means[k] + np.sqrt(var[k])[:, None] * rng.standard_normal((rows.size, 2))
        return samples

    def sample_switching_occupancy(
        self, seed: int, s: np.ndarray, a: np.ndarray, gamma: float, n: int
    ) -> np.ndarray:
        """`n` samples `[n, 2]` of the discounted occupancy of the chain that redraws the user at
        every step, by simulation (NumPy, float64). This is the fixed point of SARSA
        bootstrapping for a model that ignores the intention: it treats the data as a Markov
        chain in `(s, a)`, which forgets which user it follows."""
        rng = np.random.default_rng(seed)
        k = rng.geometric(1 - gamma, size=n) - 1 if gamma > 0 else np.zeros(n, int)
        goals = np.asarray(self.goals, np.float64)
        state = np.broadcast_to(np.asarray(s, np.float64), (n, 2)).copy()
        action = np.broadcast_to(np.asarray(a, np.float64), (n, 2)).copy()
        samples = state.copy()
        for step in range(1, int(k.max()) + 1):
            goal = goals[rng.integers(0, 2, size=n)]
            state = goal + self.closed_loop * (state - goal) + self.beta * action
            state += self.sigma * rng.standard_normal((n, 2))
            action = self.action_std * rng.standard_normal((n, 2))
            samples[k == step] = state[k == step]
        return samples


def wasserstein_1d(x: np.ndarray, y: np.ndarray) -> float:
    """Wasserstein-1 distance between two 1-D empirical distributions, `integral |F_x(t) - F_y(t)| dt`
    (`scipy.stats.wasserstein_distance`); for equal sizes `mean_i |x_(i) - y_(i)|` of the sorted samples."""
    from scipy.stats import wasserstein_distance

    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError(f"wasserstein_1d needs non-empty samples, got {x.size} and {y.size}")
    return float(wasserstein_distance(x, y))


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, *, num_projections: int = 128, seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance between two `[n, d]` sample sets of equal size: the mean
    over random unit directions `u` of `wasserstein_1d(x u, y u)`."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(
            f"sliced_wasserstein needs two [n, d] arrays of equal shape, got {x.shape} and {y.shape}"
        )
    directions = np.random.default_rng(seed).standard_normal((x.shape[1], num_projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    px, py = np.sort(x @ directions, axis=0), np.sort(y @ directions, axis=0)
    return float(np.mean(np.abs(px - py)))
