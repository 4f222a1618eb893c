"""The probe problems' exact occupancies agree with their simulated processes."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from infom import LinearGaussianProbe, LinearSystemProbe, TwoIntentionProbe, sliced_wasserstein


TWO = TwoIntentionProbe()
MIDPOINT = (np.array([0.75, 0.75]), np.zeros(2))  # between the goals


def _regress(batch, future):
    """Least-squares fit `future ~ [s, a, 1]`; rows are the coefficients of each output."""
    inputs = np.concatenate(
        [np.asarray(batch.observations), np.asarray(batch.actions), np.ones((future.shape[0], 1))], axis=1
    )
    return np.linalg.lstsq(inputs, np.asarray(future, np.float64), rcond=None)[0].T


def test_linear_gaussian_future_batch_has_the_occupancy_mean():
    # E[s_k | s, a] is linear in (s, a); its coefficients are the exact occupancy means at unit inputs.
    probe, gamma = LinearGaussianProbe(), 0.9
    batch, future = jax.jit(lambda key: probe.sample_future_batch(key, 200_000, gamma))(jr.key(0))
    coef_s, coef_a, intercept = _regress(batch, future)[0]
    assert coef_s == pytest.approx(probe.occupancy_moments(1.0, 0.0, gamma)[0], abs=0.01)
    assert coef_a == pytest.approx(probe.occupancy_moments(0.0, 1.0, gamma)[0], abs=0.01)
    assert intercept == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("user", [0, 1])
def test_two_intention_future_batch_has_the_users_occupancy_mean(user):
    gamma = 0.9
    batch, future = jax.jit(lambda key: TWO.sample_future_batch(key, 200_000, gamma, user))(jr.key(user))
    coef = _regress(batch, future)
    zero = TWO.occupancy_moments(np.zeros(2), np.zeros(2), gamma, user)[0]
    for column, unit in enumerate(np.eye(4)):
        shifted = TWO.occupancy_moments(unit[:2], unit[2:], gamma, user)[0]
        np.testing.assert_allclose(coef[:, column], shifted - zero, atol=0.02)
    np.testing.assert_allclose(coef[:, 4], zero, atol=0.02)


@pytest.mark.parametrize("user", [0, 1])
def test_two_intention_occupancy_samples_match_simulated_trajectories(user):
    gamma, n, horizon = 0.8, 4000, 60  # gamma^horizon ~ 1e-6
    s, a = MIDPOINT
    states = jnp.tile(jnp.asarray(s, jnp.float32), (n, 1))
    actions = jnp.tile(jnp.asarray(a, jnp.float32), (n, 1))
    trajectory = [states]
    for key in jr.split(jr.key(user), horizon):
        states, actions = TWO.sample_next(key, states, actions, user)
        trajectory.append(states)
    k = np.minimum(np.random.default_rng(0).geometric(1 - gamma, n) - 1, horizon)
    simulated = np.stack(trajectory)[k, np.arange(n)]
    exact = TWO.sample_occupancy(1, s, a, gamma, n, user)
    floor = sliced_wasserstein(TWO.sample_occupancy(2, s, a, gamma, n, user), exact)
    assert sliced_wasserstein(simulated, exact) < max(2.5 * floor, 0.03)
    assert sliced_wasserstein(simulated, TWO.sample_occupancy(3, s, a, gamma, n, 1 - user)) > 0.3


def test_two_intention_marginal_occupancy_is_the_equal_mixture_of_the_users():
    s, a = MIDPOINT
    gamma = 0.95
    mean, cov = TWO.occupancy_moments(s, a, gamma)
    samples = TWO.sample_occupancy(0, s, a, gamma, 200_000)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.01)
    means = [TWO.occupancy_moments(s, a, gamma, u)[0] for u in (0, 1)]
    np.testing.assert_allclose(mean, 0.5 * (means[0] + means[1]), atol=1e-12)


def test_switching_chain_has_the_marginal_mean_but_not_its_law():
    s, a = MIDPOINT
    gamma, n = 0.9, 4000
    switching = TWO.sample_switching_occupancy(0, s, a, gamma, n)
    marginal = TWO.sample_occupancy(1, s, a, gamma, n)
    np.testing.assert_allclose(switching.mean(axis=0), TWO.occupancy_moments(s, a, gamma)[0], atol=0.03)
    assert sliced_wasserstein(switching, marginal) > 0.15


def test_two_intention_state_action_pairs_hide_the_user_and_next_states_show_it():
    n = 100_000
    first, second = (TWO.sample_batch(jr.key(u), n, user=u) for u in (0, 1))
    for batch in (first, second):
        np.testing.assert_allclose(np.mean(np.asarray(batch.observations), axis=0), TWO.center, atol=0.01)
        np.testing.assert_allclose(np.mean(np.asarray(batch.actions), axis=0), 0.0, atol=0.01)
    # The Bayes classifier of the user from s' alone (equal covariances: the nearer mean) errs
    # with probability `intention_error`.
    means = [np.asarray(b.next_observations).mean(axis=0) for b in (first, second)]
    for u, goal in enumerate(TWO.goals):
        np.testing.assert_allclose(
            means[u], TWO.center + TWO.kappa * (np.asarray(goal) - TWO.center), atol=0.01
        )
    wrong = [
        np.mean(
            np.linalg.norm(np.asarray(b.next_observations) - means[u], axis=1)
            > np.linalg.norm(np.asarray(b.next_observations) - means[1 - u], axis=1)
        )
        for u, b in enumerate((first, second))
    ]
    assert np.mean(wrong) == pytest.approx(TWO.intention_error(), abs=0.005)


def test_two_intention_rejects_bad_parameters():
    with pytest.raises(ValueError, match="kappa"):
        TwoIntentionProbe(kappa=2.5)
    with pytest.raises(ValueError, match="user"):
        TWO.sample_batch(jr.key(0), 4, user=2)


def test_linear_gaussian_occupancy_density_integrates_to_gamma_and_matches_its_samples():
    """The continuous part carries mass gamma (the rest is the point mass at s), and its mean is the
    occupancy's mean without the point mass: (mean - (1 - gamma) s) / gamma."""
    probe = LinearGaussianProbe()
    s, a, gamma = 1.5, 1.0, 0.9
    grid = np.linspace(-12.0, 12.0, 20001)
    density = probe.occupancy_density(grid, s, a, gamma)
    step = grid[1] - grid[0]
    assert abs(density.sum() * step - gamma) < 1e-4
    mean, _ = probe.occupancy_moments(s, a, gamma)
    assert abs((grid * density).sum() * step / gamma - (mean - (1 - gamma) * s) / gamma) < 1e-3


# --------------------------------------------------------------------------- the closed-loop linear system


SYSTEM = LinearSystemProbe()


def test_linear_system_occupancy_matches_simulated_closed_loop_trajectories():
    """Roll `s' = A s + B a + sigma w`, `a = K s + sigma_a e` out from `(s, a)` and take `s_k` at
    `k ~ Geometric(1 - gamma)`: its mean, covariance and law are the exact occupancy's."""
    gamma, n, horizon = 0.9, 20_000, 200
    rng = np.random.default_rng(0)
    a_mat, b_mat, gain = (np.asarray(m) for m in (SYSTEM.a_matrix, SYSTEM.b_matrix, SYSTEM.gain))
    s0, a0 = np.array([0.6, -0.2]), np.array([0.5])
    states, actions = np.tile(s0, (n, 1)), np.tile(a0, (n, 1))
    trajectory = [states]
    for _ in range(horizon):
        states = states @ a_mat.T + actions @ b_mat.T + SYSTEM.sigma * rng.standard_normal((n, 2))
        actions = states @ gain.T + SYSTEM.action_std * rng.standard_normal((n, 1))
        trajectory.append(states)
    k = np.minimum(rng.geometric(1 - gamma, n) - 1, horizon)
    simulated = np.stack(trajectory)[k, np.arange(n)]
    mean, cov = SYSTEM.occupancy_moments(s0, a0, gamma)
    np.testing.assert_allclose(simulated.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(simulated.T), cov, atol=0.01)
    exact = SYSTEM.sample_occupancy(1, s0, a0, gamma, n)
    floor = sliced_wasserstein(SYSTEM.sample_occupancy(2, s0, a0, gamma, n), exact)
    assert sliced_wasserstein(simulated, exact) < max(2.5 * floor, 0.01)


def test_linear_system_batches_are_stationary_and_follow_the_policy():
    batch = SYSTEM.sample_batch(jr.key(0), 50_000)
    s, a, s_next = (
        np.asarray(x, np.float64) for x in (batch.observations, batch.actions, batch.next_observations)
    )
    np.testing.assert_allclose(np.cov(s.T), SYSTEM.stationary_cov, atol=0.01)
    np.testing.assert_allclose(np.cov(s_next.T), SYSTEM.stationary_cov, atol=0.01)
    residual = a - s @ np.asarray(SYSTEM.gain).T
    np.testing.assert_allclose(residual.std(), SYSTEM.action_std, rtol=0.02)


def test_linear_system_rejects_an_unstable_loop_and_bad_shapes():
    with pytest.raises(ValueError, match="stable"):
        LinearSystemProbe(gain=((1.0, 1.0),))
    with pytest.raises(ValueError, match="b_matrix"):
        LinearSystemProbe(b_matrix=((0.0, 1.0),))


def test_two_intention_context_pairs_share_the_user_but_not_the_transition():
    """`sample_context_batch`: the context's next state follows the same user's pull as the transition's
    (equal means per user) and is independent of the transition itself (no correlation)."""
    for user in (0, 1):
        batch, (context_s, _) = TWO.sample_context_batch(jr.key(user), 20_000, user)
        np.testing.assert_allclose(
            np.mean(np.asarray(context_s), axis=0),
            np.mean(np.asarray(batch.next_observations), axis=0),
            atol=0.02,
        )
    batch, (context_s, _) = TWO.sample_context_batch(jr.key(2), 20_000)
    within = np.asarray(batch.next_observations[:, 0]) - float(TWO.center[0])
    across = np.asarray(context_s[:, 0]) - float(TWO.center[0])
    # Mixed users: the pair shares the user (positive correlation), nothing else.
    users_only = np.corrcoef(within, across)[0, 1]
    batch0, (context0, _) = TWO.sample_context_batch(jr.key(3), 20_000, 0)
    same_user = np.corrcoef(np.asarray(batch0.next_observations[:, 0]), np.asarray(context0[:, 0]))[0, 1]
    assert users_only > 0.3 and abs(same_user) < 0.03


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9])
def test_future_offsets_are_geometric_with_tail_gamma_to_the_m(gamma):
    """The offset `k` of a probe's future state: `P(k >= m) = gamma^m` on `{0, 1, ...}` (all 0 at gamma 0)."""
    from infom.data._probes import _geometric

    n = 200_000
    k = np.asarray(_geometric(jr.key(3), jnp.float32(gamma), (n,)))
    assert k.dtype == np.int32 and k.min() == 0
    for m in range(1, 8):
        want = gamma**m
        np.testing.assert_allclose((k >= m).mean(), want, atol=4 * np.sqrt(want * (1 - want) / n) + 1e-12)
