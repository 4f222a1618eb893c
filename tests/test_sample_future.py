"""Properties of the flow ODE sampler: `solve_flow` / `sample_future`."""

import diffrax
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _fields import ConstantField, GaussianField, ZeroField

import infom


OBS, ACT, LATENT, BATCH = 3, 2, 4, 5


@pytest.fixture(scope="module")
def field():
    config = infom.NetworkConfig(hidden_dims=(16, 16), latent_dim=LATENT)
    return infom.init_models(OBS, ACT, config, key=jr.key(0)).field


def _inputs(key, lead=(BATCH,)):
    ks, ka, kz, kx = jr.split(key, 4)
    return (
        jr.normal(ks, lead + (OBS,)),
        jr.normal(ka, lead + (ACT,)),
        jr.normal(kz, lead + (LATENT,)),
        jr.normal(kx, lead + (OBS,)),
    )


def _euler_oracle(field, x0, s, a, z, num_steps, clip=None):
    """A hand-written Euler loop (`lax.scan`) on the same uniform grid as `solve_flow`."""
    ts = jnp.linspace(0.0, 1.0, num_steps + 1)
    v = jax.vmap(field, in_axes=(None, 0, 0, 0, 0))

    def step(x, k):
        x = x + v(ts[k], x, s, a, z) * (ts[k + 1] - ts[k])
        if clip is not None:
            x = jnp.clip(x, clip[0][None], clip[1][None])
        return x, None

    return jax.lax.scan(step, x0, jnp.arange(num_steps))[0]


@hypothesis.given(c=st.lists(st.floats(-3, 3), min_size=OBS, max_size=OBS), seed=st.integers(0, 2**16))
def test_constant_field_maps_x0_to_x0_plus_c(c, seed):
    s, a, z, x0 = _inputs(jr.key(seed))
    c = jnp.asarray(c, dtype=jnp.float32)
    x1 = _solve_constant(ConstantField(c), x0, s, a, z)
    np.testing.assert_allclose(x1, x0 + c[None], rtol=1e-5, atol=1e-5)


@jax.jit
def _solve_constant(field, x0, s, a, z):
    return infom.solve_flow(field, x0, s, a, z)


@pytest.mark.parametrize("num_steps", [1, 10])
def test_diffrax_euler_equals_hand_written_euler_loop(field, num_steps, getkey):
    s, a, z, x0 = _inputs(getkey())
    got = infom.solve_flow(field, x0, s, a, z, num_steps=num_steps)
    want = _euler_oracle(field, x0, s, a, z, num_steps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_clipped_euler_equals_hand_written_clipped_loop(field, getkey):
    s, a, z, x0 = _inputs(getkey())
    x0 = 3.0 * x0
    bounds = (jnp.full((OBS,), -0.5), jnp.full((OBS,), 0.7))
    got = infom.solve_flow(field, x0, s, a, z, clip=bounds)
    want = _euler_oracle(field, x0, s, a, z, 10, clip=bounds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert float(got.min()) >= -0.5 and float(got.max()) <= 0.7


def test_exact_gaussian_field_transports_noise_to_target_moments(getkey):
    """With the exact velocity of `N(m, sigma^2 I)`, samples have mean `m` and std `sigma`."""
    n, sigma = 20000, 0.5
    m = jnp.array([1.0, -2.0, 0.5])
    s = jnp.broadcast_to(m, (1, OBS))
    a, z = jnp.zeros((1, ACT)), jnp.zeros((1, LATENT))
    samples = infom.sample_future(
        GaussianField(sigma),
        s,
        a,
        z,
        key=getkey(),
        shape=(n, 1),
        solver=diffrax.Tsit5(),
        num_steps=50,
    )[:, 0]
    # Monte-Carlo error of the mean is sigma / sqrt(n) ~ 0.0035; of the std ~ sigma / sqrt(2n).
    np.testing.assert_allclose(samples.mean(0), m, atol=5 * sigma / np.sqrt(n))
    np.testing.assert_allclose(samples.std(0), sigma, atol=5 * sigma / np.sqrt(2 * n) + 1e-3)
    np.testing.assert_allclose(jnp.cov(samples.T), sigma**2 * jnp.eye(OBS), atol=0.01)


def test_euler_error_shrinks_with_steps_against_exact_gaussian_flow(getkey):
    sigma = 0.3
    s = jnp.array([[1.0, -1.0, 0.0]])
    a, z = jnp.zeros((1, ACT)), jnp.zeros((1, LATENT))
    x0 = jr.normal(getkey(), (256, 1, OBS))
    reference = infom.solve_flow(GaussianField(sigma), x0, s, a, z, solver=diffrax.Tsit5(), num_steps=100)
    errors = [
        float(jnp.abs(infom.solve_flow(GaussianField(sigma), x0, s, a, z, num_steps=k) - reference).mean())
        for k in (5, 10, 40)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_vmap_over_intentions_equals_stacking_separate_calls(field, getkey):
    s, a, _, _ = _inputs(getkey())
    zs = jr.normal(getkey(), (3, BATCH, LATENT))
    key = getkey()
    sample = lambda z: infom.sample_future(field, s, a, z, key=key, shape=(4, BATCH))
    vmapped = jax.vmap(sample)(zs)
    stacked = jnp.stack([sample(z) for z in zs])
    assert vmapped.shape == (3, 4, BATCH, OBS)
    np.testing.assert_allclose(vmapped, stacked, rtol=1e-5, atol=1e-6)


def test_broadcast_over_intentions_and_futures_equals_per_example_calls(field, getkey):
    """One call with `[K, N, batch]` leading axes equals solving each example alone."""
    s, a, _, _ = _inputs(getkey())
    zs = jr.normal(getkey(), (3, 1, BATCH, LATENT))
    x0 = jr.normal(getkey(), (3, 4, BATCH, OBS))
    together = infom.solve_flow(field, x0, s, a, zs)
    assert together.shape == (3, 4, BATCH, OBS)
    alone = infom.solve_flow(field, x0[1, 2, 3][None], s[3][None], a[3][None], zs[1, 0, 3][None])
    np.testing.assert_allclose(together[1, 2, 3], alone[0], rtol=1e-5, atol=1e-6)


def test_precomputed_conditioning_gives_the_same_futures(field, getkey):
    s, a, z, x0 = _inputs(getkey())
    cond = infom.field_conditioning(field, s, a, z)
    np.testing.assert_array_equal(
        infom.solve_flow(field, x0, conditioning=cond), infom.solve_flow(field, x0, s, a, z)
    )


def test_sample_future_shape_and_key_dependence(field, getkey):
    s, a, z, _ = _inputs(getkey())
    key = getkey()
    f1 = infom.sample_future(field, s, a, z, key=key, shape=(7, BATCH))
    f2 = infom.sample_future(field, s, a, z, key=key, shape=(7, BATCH))
    f3 = infom.sample_future(field, s, a, z, key=getkey(), shape=(7, BATCH))
    assert f1.shape == (7, BATCH, OBS)
    np.testing.assert_array_equal(f1, f2)
    assert not np.allclose(f1, f3)
    assert infom.sample_future(field, s, a, z, key=key).shape == (BATCH, OBS)


def test_sample_future_rejects_shape_that_drops_conditioning_axes(field, getkey):
    s, a, z, _ = _inputs(getkey())
    with pytest.raises(ValueError, match="shape"):
        infom.sample_future(field, s, a, z, key=getkey(), shape=(7,))


def test_adaptive_solver_runs_and_agrees_with_fine_euler(field, getkey):
    s, a, z, x0 = _inputs(getkey())
    adaptive = infom.solve_flow(
        field,
        x0,
        s,
        a,
        z,
        solver=diffrax.Tsit5(),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
        max_steps=256,
    )
    fine = infom.solve_flow(field, x0, s, a, z, num_steps=400)
    np.testing.assert_allclose(adaptive, fine, atol=2e-3)


def test_antithetic_noise_pairs_x0_with_minus_x0_along_the_axis(getkey):
    """With a constant field `c`, sample `i` and sample `i + N/2` are `c + eps` and `c - eps`."""
    s, a, z, _ = _inputs(getkey())
    c = jnp.array([0.5, -1.0, 2.0])
    futures = infom.sample_future(
        ConstantField(c), s, a, z, key=getkey(), shape=(6, BATCH), noise=infom.AntitheticNoise(0)
    )
    np.testing.assert_allclose(futures[:3] + futures[3:], 2 * jnp.broadcast_to(c, (3, BATCH, OBS)), atol=1e-6)
    assert not np.allclose(futures[:3], futures[3:])
    # Along another axis of a 3-axis shape.
    futures = infom.sample_future(
        ConstantField(c), s, a, z, key=getkey(), shape=(2, 4, BATCH), noise=infom.AntitheticNoise(1)
    )
    np.testing.assert_allclose(
        futures[:, :2] + futures[:, 2:], 2 * jnp.broadcast_to(c, (2, 2, BATCH, OBS)), atol=1e-6
    )


def test_antithetic_futures_of_an_affine_flow_average_to_the_flow_of_zero_noise(getkey):
    """The Euler flow of the exact Gaussian field is affine in `x_0`, so every antithetic pair
    averages to the solve from `x_0 = 0`: a Monte-Carlo Q of a linear reward has zero variance."""
    s = jnp.array([[1.0, -1.0, 0.0], [0.0, 2.0, -0.5]])
    a, z = jnp.zeros((2, ACT)), jnp.zeros((2, LATENT))
    field = GaussianField(0.4)
    futures = infom.sample_future(field, s, a, z, key=getkey(), shape=(8, 2), noise=infom.AntitheticNoise(0))
    centre = infom.solve_flow(field, jnp.zeros((2, OBS)), s, a, z)
    np.testing.assert_allclose(futures.mean(0), centre, atol=1e-5)
    iid = infom.sample_future(field, s, a, z, key=getkey(), shape=(8, 2))
    assert float(jnp.abs(iid.mean(0) - centre).max()) > 1e-2


@pytest.mark.parametrize("axis, shape, match", [(0, (5, BATCH), "even"), (2, (4, BATCH), "not an axis")])
def test_antithetic_noise_axis_must_be_an_even_axis_of_shape(field, getkey, axis, shape, match):
    s, a, z, _ = _inputs(getkey())
    with pytest.raises(ValueError, match=match):
        infom.sample_future(field, s, a, z, key=getkey(), shape=shape, noise=infom.AntitheticNoise(axis))


def test_latin_hypercube_noise_puts_one_value_in_each_normal_stratum(getkey):
    """With the zero field the futures are the noise: along the axis, `floor(n Phi(x_0))` is a
    permutation of `0..n-1` for every other index and state dimension."""
    s, a, z, _ = _inputs(getkey())
    n = 8
    for axis, shape in ((0, (n, BATCH)), (1, (2, n, BATCH))):
        futures = infom.sample_future(
            ZeroField(), s, a, z, key=getkey(), shape=shape, noise=infom.LatinHypercubeNoise(axis)
        )
        strata = np.floor(n * jax.scipy.stats.norm.cdf(np.asarray(futures, np.float64))).astype(int)
        np.testing.assert_array_equal(
            np.sort(strata, axis=axis),
            np.broadcast_to(np.arange(n).reshape((n,) + (1,) * (strata.ndim - 1 - axis)), strata.shape),
        )


def test_latin_hypercube_samples_are_standard_normal_and_the_mean_loses_additive_variance(getkey):
    """Every sample is marginally N(0, 1), so the Monte-Carlo mean is unbiased; for an additive
    reward even in the noise (`sum_j x_j^2`, where antithetic pairs do not help) its variance
    falls well below i.i.d. noise's."""
    s, a, z = jnp.zeros((1, OBS)), jnp.zeros((1, ACT)), jnp.zeros((1, LATENT))
    n, reps = 8, 4000
    shape = (reps, n, 1)
    lhs = infom.sample_future(
        ZeroField(), s, a, z, key=getkey(), shape=shape, noise=infom.LatinHypercubeNoise(1)
    )
    iid = infom.sample_future(ZeroField(), s, a, z, key=getkey(), shape=shape)
    first = np.asarray(lhs[:, 0, 0])  # one sample per estimate: N(0, I)
    assert np.all(np.abs(first.mean(0)) < 0.06) and np.all(np.abs(first.std(0) - 1) < 0.05)
    reward = lambda x: np.sum(np.asarray(x) ** 2, axis=-1)
    lhs_means, iid_means = reward(lhs).mean(1), reward(iid).mean(1)
    assert abs(lhs_means.mean() - OBS) < 0.05  # unbiased: E sum_j x_j^2 = obs_dim
    assert lhs_means.var() < 0.5 * iid_means.var()  # about 0.35 at n = 8


def test_latin_hypercube_axis_must_be_an_axis_of_shape(field, getkey):
    """(Antithetic and Latin-hypercube noise cannot be combined: a sampler takes one noise builder.)"""
    s, a, z, _ = _inputs(getkey())
    with pytest.raises(ValueError, match="not an axis"):
        infom.sample_future(
            field, s, a, z, key=getkey(), shape=(4, BATCH), noise=infom.LatinHypercubeNoise(2)
        )


def test_a_grid_solve_compiles_no_host_check_but_one_short_of_steps_still_raises(field, getkey):
    """On the uniform grid an explicit solver cannot fail, so the solve carries no host callback
    (which would keep every training program out of JAX's persistent compilation cache); with fewer
    `max_steps` than grid steps it can, and it raises."""
    s, a, z, x0 = _inputs(getkey())
    program = str(jax.make_jaxpr(lambda x: infom.solve_flow(field, x, s, a, z, num_steps=4))(x0))
    assert "callback" not in program
    clipped = lambda x: infom.solve_flow(field, x, s, a, z, num_steps=4, clip=(-jnp.ones(OBS), jnp.ones(OBS)))
    assert "callback" not in str(jax.make_jaxpr(clipped)(x0))
    with pytest.raises(Exception, match="max_steps"):
        jax.block_until_ready(
            jax.jit(lambda x: infom.solve_flow(field, x, s, a, z, num_steps=4, max_steps=2))(x0)
        )
