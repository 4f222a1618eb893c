"""Input checks at the API boundary: scalar ranges, NumPy inputs and short type errors.

`boundary` is placed above a public function, outside the `@jaxtyped(typechecker=beartype)`
that the import hook in `infom/__init__.py` adds innermost. On every call it

- checks the declared scalar hyper-parameters: on the host (a `ValueError` naming the function
  and the argument) when the value is concrete, with `eqx.error_if` when it is traced under
  `jax.jit`/`jax.vmap` (the error is raised when the program runs; `EQX_ON_ERROR` selects what
  happens instead, see Equinox's docs);
- converts NumPy arrays passed for `Array`-annotated parameters to `jnp` arrays;
- replaces jaxtyping's long `TypeCheckError` by a short `ArgumentTypeError` that names the
  argument that is wrong: the one whose type, dtype or rank does not fit its annotation, or the
  one(s) in the minority when arguments disagree on a named dimension such as `batch`.

Under `jax.jit` all of this runs once, at trace time; only the `eqx.error_if` stays in the program.
"""

import dataclasses
import functools
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import beartype.door
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import AbstractArray, PRNGKeyArray, ScalarLike, TypeCheckError, jaxtyped


# `Range`, `boundary` and `_check_scalar` run on every call of a public function, so the import
# hook's `@jaxtyped` (which would wrap them) is switched off with `typing.no_type_check`.


class ArgumentTypeError(TypeCheckError):
    """An argument of a public function has the wrong type, dtype or shape.

    A `jaxtyping.TypeCheckError`, with a short message that names the function and the argument.
    """


@typing.no_type_check
@dataclasses.dataclass(frozen=True)
class Range:
    """A scalar argument must satisfy `low <= value <= high` (`< high` if `high_open`).

    With `integer=True` a concrete value must also be a Python integer (not a `bool`).
    """

    low: float
    high: float = math.inf
    high_open: bool = False
    integer: bool = False

    def holds(self, value):
        """Whether `value` is in range; works on NumPy values and on traced JAX arrays."""
        below_high = value < self.high if self.high_open else value <= self.high
        return (value >= self.low) & below_high

    def describe(self) -> str:
        if self.integer and self.low == 1 and self.high == math.inf:
            return "be a positive integer"
        if self.low == 0 and self.high == math.inf:
            return "be non-negative"
        if self.high == math.inf:
            return f"be at least {self.low}"
        bracket = ")" if self.high_open else "]"
        return f"lie in [{self.low}, {self.high}{bracket}"


NON_NEGATIVE = Range(0.0)
POSITIVE_INT = Range(1, integer=True)


def _union_members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _is_array_hint(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, AbstractArray)


def _takes_jax_arrays_only(hint: Any) -> bool:
    """Whether `hint` asks for a `jax.Array` (possibly or `None`), so NumPy input is converted."""
    arrays = [member for member in _union_members(hint) if _is_array_hint(member)]
    others = [member for member in _union_members(hint) if not _is_array_hint(member)]
    return bool(arrays) and all(a.array_type is jax.Array for a in arrays) and others in ([], [type(None)])


@typing.no_type_check
def boundary(**checks: Range) -> Callable[[Callable], Callable]:
    """Decorates a public function with the checks described in this module.

    **Arguments:** `name=Range(...)` for each scalar argument to check. A name must be a
    parameter of the function, or the function must take `**kwargs` (the value is then looked
    up there, e.g. `num_steps` forwarded by [`sample_future`][] to [`solve_flow`][]).
    Arguments left at their defaults are not checked.
    """

    def decorate(fn: Callable) -> Callable:
        name = fn.__name__
        signature = inspect.signature(fn)
        parameters = signature.parameters
        var_keyword = next((p.name for p in parameters.values() if p.kind is p.VAR_KEYWORD), None)
        for arg in checks:
            if arg not in parameters and var_keyword is None:
                raise TypeError(f"boundary: {name} has no parameter {arg!r}")
        array_args = tuple(p.name for p in parameters.values() if _takes_jax_arrays_only(p.annotation))

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            arguments = bound.arguments
            for arg, check in checks.items():
                if arg in arguments:
                    arguments[arg] = _check_scalar(name, arg, check, arguments[arg])
                elif var_keyword is not None and arg in arguments.get(var_keyword, {}):
                    extra = arguments[var_keyword]
                    extra[arg] = _check_scalar(name, arg, check, extra[arg])
            numpy_inputs = {}
            for arg in array_args:
                value = arguments.get(arg)
                if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufc":
                    numpy_inputs[arg] = value
                    arguments[arg] = jnp.asarray(value)
            try:
                return fn(*bound.args, **bound.kwargs)
            except ArgumentTypeError:
                raise  # already short: from a checked function called inside this one
            except TypeCheckError:
                message = _diagnose(name, parameters, arguments, numpy_inputs)
                if message is None:
                    raise  # not about this call's arguments (e.g. a return value)
                raise ArgumentTypeError(message) from None

        return wrapper

    return decorate


@typing.no_type_check
def _check_scalar(name: str, arg: str, check: Range, value: Any) -> Any:
    """Checks one scalar argument; returns it (guarded by `eqx.error_if` when traced)."""
    if isinstance(value, jax.core.Tracer):
        if value.ndim != 0 or not jnp.issubdtype(value.dtype, jnp.number):
            return value  # not a scalar: left to the type check
        return eqx.error_if(value, ~check.holds(value), f"{name}: {arg} must {check.describe()}")
    if not isinstance(value, (numbers.Real, np.ndarray, np.generic, jax.Array)) or np.ndim(value) != 0:
        return value  # not a real scalar: left to the type check
    host = np.asarray(value)
    if host.dtype.kind not in "biuf":
        return value
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not bool(check.holds(host)) or (check.integer and not integral):
        raise ValueError(f"{name}: {arg} must {check.describe()}, got {host!s}")
    return value


# --------------------------------------------------------------------------- short type errors


_HINT_NAMES = {ScalarLike: "ScalarLike (a scalar)", PRNGKeyArray: "PRNGKeyArray (a jax.random.key)"}


def _hint_str(hint: Any) -> str:
    for known, text in _HINT_NAMES.items():
        if hint == known:
            return text
    if _is_array_hint(hint):
        array = "Array" if hint.array_type is jax.Array else getattr(hint.array_type, "__name__", "?")
        return f"{hint.dtype.__name__}[{array}, '{hint.dim_str}']"
    if hint is type(None):
        return "None"
    members = _union_members(hint)
    if len(members) > 1:
        return " | ".join(_hint_str(member) for member in members)
    text = getattr(hint, "__name__", None) or repr(hint)
    return text if len(text) <= 80 else text[:77] + "..."


def _value_str(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        kind = "array" if isinstance(value, jax.Array) else type(value).__name__
        return f"{value.dtype} {kind} of shape {tuple(value.shape)}"
    if isinstance(value, (bool, numbers.Number)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


def _named_sizes(hint: Any, shape: tuple[int, ...]):
    """`(name, is_variadic, broadcastable, size)` for each named dimension of `hint` in `shape`."""
    dims, index = hint.dims, hint.index_variadic
    if index is None:
        pairs = list(zip(dims, shape, strict=True))
    else:
        end = len(shape) - (len(dims) - index - 1)
        pairs = list(zip(dims[:index], shape[:index], strict=True))
        pairs.append((dims[index], tuple(shape[index:end])))
        pairs += list(zip(dims[index + 1 :], shape[end:], strict=True))
    for position, (dim, size) in enumerate(pairs):
        dim_name = getattr(dim, "name", None)
        if dim_name is not None:
            yield dim_name, position == index, dim.broadcastable, size


def _compatible(variadic: bool, one: tuple[bool, Any], other: tuple[bool, Any]) -> bool:
    (broadcast_one, size_one), (broadcast_other, size_other) = one, other
    if size_one == size_other:
        return True
    if not (broadcast_one or broadcast_other):
        return False
    if not variadic:
        return (broadcast_one and size_one == 1) or (broadcast_other and size_other == 1)
    try:
        np.broadcast_shapes(size_one, size_other)
    except ValueError:
        return False
    return True


def _sizes_str(label: str, entries: list[tuple[str, Any]], shapes: dict[str, tuple[int, ...]]) -> str:
    """`` `a` (shape (5, 3)) has batch=5, `b`, `c` have batch=6 `` grouped by size."""
    groups: dict[Any, list[str]] = {}
    for arg, size in entries:
        groups.setdefault(size, []).append(arg)
    parts = []
    for size, args in groups.items():
        names = ", ".join(f"`{arg}`" for arg in args)
        if len(args) == 1:
            parts.append(f"{names} (shape {shapes[args[0]]}) has {label}={size}")
        else:
            parts.append(f"{names} have {label}={size}")
    return ", ".join(parts)


def _fits(value: Any, hint: Any) -> bool:
    """`value` fits `hint` on its own: in a fresh jaxtyping memo, not the one of a checked
    function that may be running around this call, nor one shared with the other arguments."""
    with jaxtyped("context"):
        return beartype.door.is_bearable(value, hint)


def _diagnose(
    name: str, parameters: Mapping[str, inspect.Parameter], arguments: dict, numpy_inputs: dict
) -> str | None:
    """A short message naming the wrong argument(s), or `None` if every argument fits.

    `numpy_inputs` holds the NumPy arrays that were converted, to describe them as passed.
    """
    matched: dict[str, Any] = {}  # argument -> the array annotation it matched
    for arg, value in arguments.items():
        parameter = parameters[arg]
        hint = parameter.annotation
        if hint is parameter.empty or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not _fits(value, hint):
            passed = numpy_inputs.get(arg, value)
            return f"{name}: `{arg}` got {_value_str(passed)}; expected {_hint_str(hint)}"
        for member in _union_members(hint):
            if _is_array_hint(member) and _fits(value, member):
                matched[arg] = member
                break

    # Every argument fits its own annotation: look for arguments that disagree on a named dimension.
    shapes = {arg: tuple(arguments[arg].shape) for arg in matched}
    occurrences: dict[tuple[str, bool], list[tuple[str, bool, Any]]] = {}
    for arg, hint in matched.items():
        for dim_name, variadic, broadcastable, size in _named_sizes(hint, shapes[arg]):
            occurrences.setdefault((dim_name, variadic), []).append((arg, broadcastable, size))
    for (dim_name, variadic), entries in occurrences.items():
        clashes = [
            sum(not _compatible(variadic, (b, s), (other_b, other_s)) for _, other_b, other_s in entries)
            for _, b, s in entries
        ]
        worst = max(clashes)
        if worst == 0:
            continue
        label = f"*{dim_name}" if variadic else dim_name
        sizes = [(arg, size) for arg, _, size in entries]
        blamed = [entry for entry, clash in zip(sizes, clashes, strict=True) if clash == worst]
        others = [entry for entry, clash in zip(sizes, clashes, strict=True) if clash < worst]
        if not others:
            return f"{name}: arguments disagree on {label}: {_sizes_str(label, blamed, shapes)}"
        return f"{name}: {_sizes_str(label, blamed, shapes)}, but {_sizes_str(label, others, shapes)}"
    return None
