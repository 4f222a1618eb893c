"""Shared test configuration: strict JAX numerics, hypothesis profiles, small helpers."""

import os


# Tests never render; keep MuJoCo (imported by OGBench) from probing for a display.
os.environ.setdefault("MUJOCO_GL", "disable")

import equinox as eqx
import hypothesis
import jax
import jax.random as jr
import pytest


jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# JAX compiles on the first example of every property test, which trips hypothesis's
# default deadline; shapes are kept fixed so there are few recompiles.
hypothesis.settings.register_profile(
    "dev",
    deadline=None,
    max_examples=10,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.register_profile(
    "ci",
    deadline=None,
    max_examples=10,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(
    "ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev")
)


@pytest.fixture
def getkey():
    """Returns a function that yields a fresh PRNG key on every call."""
    state = {"key": jr.key(0)}

    def _getkey():
        state["key"], sub = jr.split(state["key"])
        return sub

    return _getkey


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-6) -> bool:
    """Whether two pytrees have the same structure and static parts and allclose array leaves."""
    return bool(eqx.tree_equal(x, y, rtol=rtol, atol=atol))
