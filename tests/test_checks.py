"""The boundary checks on toy functions: scalar ranges, NumPy inputs, short type errors."""

import beartype
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, ScalarLike, TypeCheckError, jaxtyped

from infom._checks import NON_NEGATIVE, POSITIVE_INT, Range, boundary


# As the import hook does for infom's own functions, `@jaxtyped` is the innermost decorator.
@boundary(scale=Range(0.0, 1.0, high_open=True), weight=NON_NEGATIVE, steps=POSITIVE_INT)
@jaxtyped(typechecker=beartype.beartype)
def combine(
    x: Float[Array, "batch dim"],
    y: Float[Array, "batch dim"],
    w: Float[Array, " batch"],
    *,
    scale: ScalarLike = 0.5,
    weight: ScalarLike = 1.0,
    steps: int = 1,
) -> Float[Array, " batch"]:
    return steps * (scale * jnp.sum(x * y, axis=-1) + weight * w)


@boundary()
@jaxtyped(typechecker=beartype.beartype)
def pair(a: Float[Array, "*batch n"], b: Float[Array, "*batch m"]) -> Float[Array, "*batch"]:
    return jnp.sum(a, axis=-1) + jnp.sum(b, axis=-1)


@boundary()
@jaxtyped(typechecker=beartype.beartype)
def wrong_return(a: Float[Array, " n"]) -> Float[Array, " n"]:
    return jnp.zeros(a.shape[0] + 1)


X, Y, W = jnp.ones((2, 3)), jnp.full((2, 3), 2.0), jnp.array([1.0, -1.0])


def test_valid_arguments_give_the_undecorated_result():
    np.testing.assert_allclose(combine(X, Y, W, scale=0.25, weight=2.0, steps=3), 3 * (0.25 * 6.0 + 2.0 * W))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": 1.0}, r"combine: scale must lie in \[0.0, 1.0\), got 1.0"),
        ({"scale": -0.5}, r"combine: scale must lie in \[0.0, 1.0\), got -0.5"),
        ({"scale": np.float32(2.0)}, r"combine: scale must lie in \[0.0, 1.0\), got 2.0"),
        ({"scale": jnp.float32(2.0)}, r"combine: scale must lie in \[0.0, 1.0\), got 2.0"),
        ({"scale": float("nan")}, r"combine: scale must lie in \[0.0, 1.0\), got nan"),
        ({"weight": -1}, r"combine: weight must be non-negative, got -1"),
        ({"steps": 0}, r"combine: steps must be a positive integer, got 0"),
        ({"steps": 2.0}, r"combine: steps must be a positive integer, got 2.0"),
    ],
)
def test_concrete_out_of_range_scalars_raise_a_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match) as error:
        combine(X, Y, W, **kwargs)
    assert len(str(error.value)) < 400


# `eqx.filter_jit` raises `eqx.EquinoxRuntimeError`; `jax.jit` a `jax.errors.JaxRuntimeError`
# (a RuntimeError) on a first call, but a `ValueError` from its cached fast path.
@pytest.mark.parametrize(
    "jit, error", [(jax.jit, (RuntimeError, ValueError)), (eqx.filter_jit, eqx.EquinoxRuntimeError)]
)
def test_traced_out_of_range_scalar_raises_when_the_program_runs(jit, error):
    f = jit(lambda scale: combine(X, Y, W, scale=scale))
    np.testing.assert_allclose(f(jnp.float32(0.5)), 0.5 * 6.0 + W)
    with pytest.raises(error, match=r"combine: scale must lie in \[0.0, 1.0\)"):
        jax.block_until_ready(f(jnp.float32(1.0)))


def test_vmap_over_a_traced_scalar_checks_every_value():
    f = jax.vmap(lambda weight: combine(X, Y, W, weight=weight))
    np.testing.assert_allclose(f(jnp.array([0.0, 2.0])), jnp.stack([0.5 * 6.0 + 0 * W, 0.5 * 6.0 + 2 * W]))
    with pytest.raises(RuntimeError, match="combine: weight must be non-negative"):
        jax.block_until_ready(f(jnp.array([0.0, -2.0])))


def test_numpy_arrays_are_converted():
    got = combine(np.asarray(X), np.asarray(Y), np.asarray(W))
    assert isinstance(got, jax.Array)
    np.testing.assert_allclose(got, combine(X, Y, W))


def test_the_one_argument_that_disagrees_on_a_dimension_is_named():
    with pytest.raises(TypeCheckError) as error:
        combine(X, Y, jnp.ones(3))
    message = str(error.value)
    assert message.startswith("combine: `w` (shape (3,)) has batch=3, but `x`, `y` have batch=2")
    assert len(message) < 400
    with pytest.raises(TypeCheckError, match=r"^combine: `x` \(shape \(3, 3\)\) has batch=3, but `y`, `w`"):
        combine(jnp.ones((3, 3)), Y, W)


def test_a_tie_names_both_arguments():
    with pytest.raises(TypeCheckError) as error:
        pair(jnp.ones((5, 3)), jnp.ones((6, 2)))
    message = str(error.value)
    assert message == (
        "pair: arguments disagree on *batch: "
        "`a` (shape (5, 3)) has *batch=(5,), `b` (shape (6, 2)) has *batch=(6,)"
    )


@pytest.mark.parametrize(
    "args, match",
    [
        (
            (jnp.ones((2, 3), dtype=jnp.int32), Y, W),
            r"combine: `x` got int32 array of shape \(2, 3\); expected Float",
        ),
        (
            (X, Y, jnp.ones((2, 1))),
            r"combine: `w` got float32 array of shape \(2, 1\); expected Float\[Array, 'batch'\]",
        ),
        ((X, [1.0, 2.0], W), r"combine: `y` got list; expected Float\[Array, 'batch dim'\]"),
    ],
)
def test_wrong_dtype_rank_or_type_names_the_argument_and_what_was_expected(args, match):
    with pytest.raises(TypeCheckError, match=match) as error:
        combine(*args)
    assert len(str(error.value)) < 400


def test_wrong_type_of_a_non_array_argument_is_named():
    match = r"^combine: `scale` got str; expected ScalarLike \(a scalar\)$"
    with pytest.raises(TypeCheckError, match=match) as error:
        combine(X, Y, W, scale="half")
    assert len(str(error.value)) < 400


def test_errors_not_about_the_arguments_pass_through_unchanged():
    with pytest.raises(TypeCheckError, match="return value") as error:
        wrong_return(jnp.ones(2))
    assert type(error.value) is TypeCheckError


def test_checks_run_at_trace_time_only():
    traces = []
    f = jax.jit(lambda scale: (traces.append(1), combine(X, Y, W, scale=scale))[1])
    f(0.5), f(0.25)
    assert len(traces) == 1


def test_unknown_checked_name_is_a_decoration_error():
    with pytest.raises(TypeError, match="no parameter 'gama'"):
        boundary(gama=Range(0.0, 1.0))(lambda gamma: gamma)
