"""Properties of the expectile loss and of `expectile_distill` (implicit GPI)."""

import equinox as eqx
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import infom


OBS, ACT, BATCH = 3, 2, 6


@hypothesis.given(u=hnp.arrays(np.float32, (9,), elements=st.floats(-10, 10, width=32)))
def test_expectile_loss_at_one_half_is_half_the_squared_error(u):
    # atol: XLA flushes float32 subnormals (below finfo.tiny) to zero, NumPy keeps them.
    tiny = float(np.finfo(np.float32).tiny)
    np.testing.assert_allclose(infom.expectile_loss(jnp.asarray(u), 0.5), 0.5 * u**2, rtol=1e-6, atol=tiny)


@hypothesis.given(
    u=hnp.arrays(np.float32, (9,), elements=st.floats(-10, 10, width=32)), mu=st.floats(0.5, 0.999)
)
def test_expectile_loss_weights_positive_errors_by_mu_and_negative_by_one_minus_mu(u, mu):
    want = np.where(u < 0, 1 - mu, mu) * u.astype(np.float64) ** 2
    np.testing.assert_allclose(infom.expectile_loss(jnp.asarray(u), mu), want, rtol=1e-5, atol=1e-6)


def _expectile(samples, mu):
    """The minimiser of `mean L_2^mu(x - q)` over `q`, by bisection on its derivative,
    which is computed with `jax.grad` of the library's loss (monotone in `q`)."""
    grad = jax.jit(jax.grad(lambda q, mu: jnp.mean(infom.expectile_loss(samples - q, mu))))
    lo, hi = float(samples.min()), float(samples.max())
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(grad(jnp.float32(mid), jnp.float32(mu))) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@hypothesis.given(
    samples=hnp.arrays(np.float32, (12,), elements=st.floats(-5, 5, width=32)).filter(
        lambda x: np.ptp(x) > 0.1
    ),
    mu=st.floats(0.5, 0.98),
)
def test_expectile_lies_between_mean_and_max_and_grows_with_mu(samples, mu):
    samples = jnp.asarray(samples)
    e_mu = _expectile(samples, mu)
    e_higher = _expectile(samples, min(mu + 0.01, 0.99))
    mean, top = float(samples.mean()), float(samples.max())
    assert mean - 1e-4 <= e_mu <= top + 1e-4
    assert e_higher >= e_mu - 1e-4


def test_expectile_at_one_half_is_the_mean_and_tends_to_the_max(getkey):
    samples = jr.normal(getkey(), (50,))
    np.testing.assert_allclose(_expectile(samples, 0.5), samples.mean(), atol=1e-4)
    gaps = [float(samples.max()) - _expectile(samples, mu) for mu in (0.9, 0.99, 0.999, 0.9999)]
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < 0.05 * float(samples.max() - samples.mean())


@pytest.fixture(scope="module")
def critic():
    return infom.Critic(OBS, ACT, (16, 16), key=jr.key(3))


def test_expectile_distill_at_one_half_is_half_mean_squared_error_over_heads(critic, getkey):
    s, a = jr.normal(getkey(), (BATCH, OBS)), jr.normal(getkey(), (BATCH, ACT))
    targets = jr.normal(getkey(), (BATCH,))
    loss, aux = infom.expectile_distill(critic, s, a, targets, expectile=0.5)
    q = jax.vmap(critic)(s, a)  # [batch, heads]
    np.testing.assert_allclose(loss, 0.5 * jnp.mean((targets[:, None] - q) ** 2), rtol=1e-5)
    np.testing.assert_allclose(aux.target_mean, targets.mean(), rtol=1e-5)


def test_expectile_distill_over_intentions_equals_pooling_the_targets(critic, getkey):
    s, a = jr.normal(getkey(), (BATCH, OBS)), jr.normal(getkey(), (BATCH, ACT))
    targets = jr.normal(getkey(), (4, BATCH))
    loss, _ = infom.expectile_distill(critic, s, a, targets, expectile=0.9)
    per_intention = [infom.expectile_distill(critic, s, a, t, expectile=0.9)[0] for t in targets]
    np.testing.assert_allclose(loss, np.mean(per_intention), rtol=1e-5)


def test_expectile_distill_gives_no_gradient_to_the_targets(critic, getkey):
    s, a = jr.normal(getkey(), (BATCH, OBS)), jr.normal(getkey(), (BATCH, ACT))
    targets = jr.normal(getkey(), (BATCH,))
    grad = jax.grad(lambda t: infom.expectile_distill(critic, s, a, t, expectile=0.9)[0])(targets)
    np.testing.assert_array_equal(grad, jnp.zeros(BATCH))


def test_distilled_critic_approaches_max_over_intentions_as_mu_grows(getkey):
    """Training `Q_psi` with `expectile_distill` on targets spread over intentions moves its value
    from the mean over intentions (mu = 0.5) towards the max (mu -> 1)."""
    import optax

    s, a = jnp.zeros((1, OBS)), jnp.zeros((1, ACT))
    targets = jnp.linspace(-1.0, 1.0, 9)[:, None]  # 9 intentions, one state
    optim = optax.adam(3e-2)

    @eqx.filter_jit
    def fit(critic, mu):
        def step(carry, _):
            critic, opt_state = carry
            grads = eqx.filter_grad(lambda c: infom.expectile_distill(c, s, a, targets, expectile=mu)[0])(
                critic
            )
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes dtypes
                updates, opt_state = optim.update(grads, opt_state)
            return (eqx.apply_updates(critic, updates), opt_state), None

        critic0 = critic
        (critic, _), _ = jax.lax.scan(
            step, (critic0, optim.init(eqx.filter(critic0, eqx.is_array))), None, 600
        )
        return jnp.mean(critic(s[0], a[0]))

    critic = infom.Critic(OBS, ACT, (16,), key=getkey())
    values = [float(fit(critic, jnp.float32(mu))) for mu in (0.5, 0.9, 0.99)]
    np.testing.assert_allclose(values[0], 0.0, atol=0.02)
    for mu, value in zip((0.9, 0.99), values[1:], strict=True):
        np.testing.assert_allclose(value, _expectile(targets[:, 0], mu), atol=0.02)
    assert values[0] < values[1] < values[2] < 1.0
