"""Shared test configuration: strict JAX numerics, hypothesis profiles, small helpers."""

import os


# Tests never render; keep MuJoCo (imported by OGBench) from probing for a display.
os.environ.setdefault("MUJOCO_GL", "disable")

# The package is type-checked with beartype's full strategy (`BeartypeStrategy.On`: every item of a
# container, not one random item) in the tests and in the subprocesses they start. In beartype 0.23
# `On` is not implemented yet and checks as `O1` does; asking for it here makes the tests check every
# item as soon as beartype does.
os.environ.setdefault(
    "INFOM_TYPECHECKER",
    "beartype.beartype(conf=beartype.BeartypeConf(strategy=beartype.BeartypeStrategy.On))",
)

import shutil
import tempfile

import equinox as eqx
import hypothesis
import jax
import jax.random as jr
import pytest


# One persistent compilation cache for the whole test session, shared with the subprocesses the tests
# start (through the environment): many tests train the same small programs, and a program compiled once
# is then loaded instead of compiled again. Compiled programs are identical either way; only time changes.
# A fresh directory per session, so nothing outlives the run; set JAX_COMPILATION_CACHE_DIR to keep one.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="infom-tests-jax-cache-"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

# Tests check what programs compute, not how fast they run: XLA's optimisation passes are mostly
# skipped (`jax_disable_most_optimizations`), which makes this suite's many small compiles cheaper
# (the default run took 376 s instead of 455 s, benchmarks/RESULTS.md) and leaves results equal to
# float32 rounding. Subprocesses and notebook kernels inherit it through the environment; set
# JAX_DISABLE_MOST_OPTIMIZATIONS=false to test optimised programs. A test whose time goes into running
# a long training rather than compiling it is marked `optimized` and compiled with the optimisations.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")
_SKIP_OPTIMIZATIONS = os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true", "yes", "on")
jax.config.update("jax_disable_most_optimizations", _SKIP_OPTIMIZATIONS)


@pytest.fixture(autouse=True)
def _optimized(request):
    """Compiles a test marked `optimized` with XLA's optimisations (restored afterwards)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", _SKIP_OPTIMIZATIONS)


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


def pytest_sessionfinish(session, exitstatus):
    """Removes the session's compilation cache (one the caller named is kept)."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


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
