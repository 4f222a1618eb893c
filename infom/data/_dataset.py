"""Episodic datasets as device-resident pytrees, their observation normaliser, and a
boundary-safe SARSA transition sampler that runs inside `jax.jit` and `lax.scan`."""

import io
import os
from collections.abc import Mapping
from typing import Any, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._errors import DatasetError
from .._files import atomic_write_bytes
from .._literals import NormalizerKind
from .._types import Batch


_ZSCORE_EPS = 1e-8
_BOUNDED_MIN_RANGE = 1e-6


# --------------------------------------------------------------------------- validation


def _required(value: Any, key: str, source: str) -> Any:
    if value is None:
        raise DatasetError(f"{source}: required array {key!r} is missing (got None)")
    return value


def _float_array(value: Any, key: str, source: str, *, ndim: int) -> np.ndarray:
    """Host copy of `value` as finite float32 with `ndim` dimensions, or a `DatasetError`."""
    array = np.asarray(_required(value, key, source))
    if array.ndim != ndim:
        raise DatasetError(f"{source}: {key!r} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{source}: {key!r} must have a floating-point dtype, got {array.dtype}")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argmin(finite.reshape(len(array), -1).all(axis=1)))
        raise DatasetError(
            f"{source}: {key!r} has non-finite values (first at row {row}) after conversion to float32"
        )
    return array


def _terminal_array(value: Any, key: str, source: str) -> np.ndarray:
    """Host copy of `value` as a bool vector; numeric input must hold only 0 and 1."""
    array = np.asarray(_required(value, key, source))
    if array.ndim != 1:
        raise DatasetError(f"{source}: {key!r} must have 1 dimension, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DatasetError(f"{source}: {key!r} must be bool (or numeric 0/1), got dtype {array.dtype}")
    if not np.isin(array, (0, 1)).all():
        raise DatasetError(f"{source}: {key!r} must hold only 0 and 1, got other values")
    return array.astype(np.bool_)


def _check_length(array: np.ndarray, key: str, source: str, num_rows: int) -> None:
    if len(array) != num_rows:
        raise DatasetError(f"{source}: {key!r} has {len(array)} rows but 'observations' has {num_rows}")


# --------------------------------------------------------------------------- dataset


class Dataset(eqx.Module):
    """Episodes laid out row by row, resident on device.

    Row `i` holds `(s_i, a_i, r_i, mask_i)`; `terminals[i]` is True on the last row of each
    episode. `valid_indices` lists the rows whose successor `i + 1` belongs to the same
    episode (`terminals[i] == False`): exactly the rows that have a SARSA pair
    `(s', a') = (observations[i + 1], actions[i + 1])`.

    Build one with [`Dataset.from_arrays`][] or [`Dataset.from_ogbench`][], which validate
    their input on the host and compute `valid_indices`; the plain constructor does not.
    A `Dataset` is a pytree of arrays, so it can be passed into `jax.jit` and closed over
    in `lax.scan`.
    """

    observations: Float[Array, "n obs_dim"]
    actions: Float[Array, "n action_dim"]
    rewards: Float[Array, " n"]
    masks: Float[Array, " n"]
    terminals: Bool[Array, " n"]
    valid_indices: Int[Array, " num_valid"]

    @classmethod
    def from_arrays(
        cls,
        observations: ArrayLike | None,
        actions: ArrayLike | None,
        *,
        terminals: ArrayLike | None,
        rewards: ArrayLike | None = None,
        masks: ArrayLike | None = None,
        next_observations: ArrayLike | None = None,
        source: str = "<arrays>",
    ) -> "Dataset":
        """Validates host (or device) arrays and moves them to the device as a `Dataset`.

        **Arguments:**

        - `observations`: `[n, obs_dim]`, any floating dtype (stored as float32).
        - `actions`: `[n, action_dim]`, any floating dtype (stored as float32).
        - `terminals`: `[n]`, bool or numeric 0/1; True on the last row of each episode. The
            last row must be terminal.
        - `rewards`: `[n]` floating, `r(s_i)`; zeros if omitted (reward-free data).
        - `masks`: `[n]` floating, `1 - success`; ones if omitted.
        - `next_observations`: optional `[n, obs_dim]`; if given, `next_observations[i]` must
            equal `observations[i + 1]` for every row `i` that is not terminal. This catches
            layouts where consecutive rows are not consecutive steps.
        - `source`: a name for the data (e.g. a file name) used in error messages.

        **Returns:** a `Dataset` with `valid_indices = {i : not terminals[i]}` (int32).

        **Raises:** [`DatasetError`][] (a `ValueError`) naming `source` and the key, for a
        missing array, a wrong number of dimensions, a non-floating dtype, mismatched lengths,
        non-finite values, a last row that is not terminal, no valid transition at all, or
        `next_observations` inconsistent with the row layout.
        """
        obs = _float_array(observations, "observations", source, ndim=2)
        num_rows = len(obs)
        if num_rows == 0:
            raise DatasetError(f"{source}: 'observations' is empty")
        act = _float_array(actions, "actions", source, ndim=2)
        _check_length(act, "actions", source, num_rows)
        term = _terminal_array(terminals, "terminals", source)
        _check_length(term, "terminals", source, num_rows)
        if rewards is None:
            rew = np.zeros(num_rows, np.float32)
        else:
            rew = _float_array(rewards, "rewards", source, ndim=1)
            _check_length(rew, "rewards", source, num_rows)
        if masks is None:
            msk = np.ones(num_rows, np.float32)
        else:
            msk = _float_array(masks, "masks", source, ndim=1)
            _check_length(msk, "masks", source, num_rows)
        if not term[-1]:
            raise DatasetError(
                f"{source}: 'terminals' must be True on the last row (every episode must end), got False"
            )
        if num_rows >= np.iinfo(np.int32).max:
            raise DatasetError(f"{source}: 'observations' has too many rows for int32 indices ({num_rows})")
        valid = np.flatnonzero(~term).astype(np.int32)
        if len(valid) == 0:
            raise DatasetError(
                f"{source}: 'terminals' leaves no valid transition (every episode has a single row)"
            )
        if next_observations is not None:
            next_obs = _float_array(next_observations, "next_observations", source, ndim=2)
            _check_length(next_obs, "next_observations", source, num_rows)
            if next_obs.shape[1] != obs.shape[1]:
                raise DatasetError(
                    f"{source}: 'next_observations' has {next_obs.shape[1]} dimensions but "
                    f"'observations' has {obs.shape[1]}"
                )
            same = np.all(next_obs[valid] == obs[valid + 1], axis=1)
            if not same.all():
                row = int(valid[np.argmin(same)])
                raise DatasetError(
                    f"{source}: 'next_observations'[{row}] differs from 'observations'[{row + 1}] although "
                    f"row {row} is not terminal: rows are not consecutive steps of one episode"
                )
        return cls(
            observations=jnp.asarray(obs),
            actions=jnp.asarray(act),
            rewards=jnp.asarray(rew),
            masks=jnp.asarray(msk),
            terminals=jnp.asarray(term),
            valid_indices=jnp.asarray(valid),
        )

    @classmethod
    def from_ogbench(cls, dataset: Mapping[str, Any], *, source: str = "<ogbench>") -> "Dataset":
        """Builds a `Dataset` from a dict returned by OGBench's loader.

        Accepts the output of `ogbench.make_env_and_datasets(...)` or
        `ogbench.utils.load_dataset(...)` in either layout:

        - `compact_dataset=False` (the default): each episode's final row has been dropped,
            `next_observations` is present and `terminals` marks the last *kept* row of each
            episode. The dropped final row has no action, so that step has no `(s', a')` and is
            not sampled; every other step is. `next_observations[i] == observations[i + 1]` is
            checked for every non-terminal row.
        - `compact_dataset=True`: all rows are kept and `valids` is 0 on each episode's final
            row; the raw terminals `1 - valids` are used.

        `rewards` and `masks` are read when present (OGBench adds them for `singletask`
        names); otherwise the data are reward-free (rewards 0, masks 1). Other keys (`qpos`,
        `qvel`, `button_states`, ...) are ignored.

        **Arguments:**

        - `dataset`: the dict of NumPy arrays.
        - `source`: a name for the data (e.g. the file name) used in error messages.

        **Returns:** a validated `Dataset`.

        **Raises:** [`DatasetError`][] as in [`Dataset.from_arrays`][].
        """
        for key in ("observations", "actions", "terminals"):
            if key not in dataset:
                raise DatasetError(f"{source}: required array {key!r} is missing from the dict")
        if "valids" in dataset:
            valids = _terminal_array(dataset["valids"], "valids", source)
            return cls.from_arrays(
                dataset["observations"],
                dataset["actions"],
                terminals=~valids,
                rewards=dataset.get("rewards"),
                masks=dataset.get("masks"),
                source=source,
            )
        if "next_observations" not in dataset:
            raise DatasetError(
                f"{source}: 'next_observations' is missing: expected OGBench's non-compact layout "
                "(compact_dataset=False) or 'valids' (compact_dataset=True)"
            )
        return cls.from_arrays(
            dataset["observations"],
            dataset["actions"],
            terminals=dataset["terminals"],
            rewards=dataset.get("rewards"),
            masks=dataset.get("masks"),
            next_observations=dataset["next_observations"],
            source=source,
        )


def sample_batch(dataset: Dataset, key: PRNGKeyArray, batch_size: int) -> Batch:
    """Samples SARSA transitions uniformly from the valid rows of a dataset.

    Draws `i` uniformly (with replacement) from `dataset.valid_indices` and returns
    `(s, a, r, s', a', mask) = (obs[i], act[i], rew[i], obs[i + 1], act[i + 1], mask[i])`.
    Since `i` is never the last row of an episode, `(s', a')` is always the next step of the
    same episode.

    Pure and traceable: call it inside `jax.jit` (with `batch_size` static), `jax.vmap` over
    keys, or a `lax.scan` over keys with the dataset closed over or carried, so a block of
    updates needs no host round-trip.

    !!! warning

        The reference implementation takes `a' = actions[i + 1]` for any `i`, which pairs the
        last step of an episode with the first step of the next one. This sampler does not.

    **Arguments:**

    - `dataset`: a [`Dataset`][].
    - `key`: PRNG key for the indices (positional or keyword).
    - `batch_size`: number of transitions (a static Python int: mark it static under
        `jax.jit`, e.g. `jax.jit(sample_batch, static_argnames="batch_size")`; `eqx.filter_jit`
        treats it as static already).

    **Returns:** a [`Batch`][] whose fields have leading axis `batch_size`.

    !!! Example

        ```python
        batch = sample_batch(dataset, key=jr.key(0), batch_size=256)
        batches = jax.vmap(lambda k: sample_batch(dataset, key=k, batch_size=256))(jr.split(key, 10))
        ```
    """
    if isinstance(batch_size, bool) or batch_size < 1:  # (beartype has checked it is an int)
        raise ValueError(f"sample_batch: `batch_size` must be a positive int, got {batch_size!r}")
    num_valid = dataset.valid_indices.shape[0]
    positions = jr.randint(key, (batch_size,), 0, num_valid)
    return batch_at(dataset, dataset.valid_indices[positions])


def episode_bounds(dataset: Dataset) -> tuple[Int[Array, " n"], Int[Array, " n"]]:
    """The first and last row of every row's episode, `(starts, ends)`, from `terminals`."""
    n = dataset.terminals.shape[0]
    rows = jnp.arange(n, dtype=jnp.int32)
    ends = jax.lax.cummin(jnp.where(dataset.terminals, rows, n - 1), reverse=True)
    first = jnp.concatenate([jnp.ones((1,), bool), dataset.terminals[:-1]])
    starts = jax.lax.cummax(jnp.where(first, rows, 0))
    return starts, ends


def sample_batch_with_context(
    dataset: Dataset, key: PRNGKeyArray, batch_size: int, *, window: int | None = None
) -> Batch:
    """[`sample_batch`][] plus, for each transition at row `i`, a context pair
    `(s_c, a_c) = (obs[c], act[c])` with `c` uniform over the rows of the same episode within
    `window` steps of `i` (`|c - i| <= window`; the whole episode if `window` is None).

    The context is drawn independently of where in that range the transition's successor lies,
    so an encoder of `(s_c, a_c)` can learn what the episode's actor was doing (its intention)
    but not the transition's own next state. `key` is split into `(rows, context)`; the
    transitions are those of `sample_batch(dataset, rows, batch_size)` with the first key.
    """
    if window is not None and window < 1:
        raise ValueError(
            f"sample_batch_with_context: `window` must be a positive int or None, got {window!r}"
        )
    rows_key, context_key = jr.split(key)
    num_valid = dataset.valid_indices.shape[0]
    rows = dataset.valid_indices[jr.randint(rows_key, (batch_size,), 0, num_valid)]
    batch = batch_at(dataset, rows)  # = sample_batch(dataset, rows_key, batch_size)
    starts, ends = episode_bounds(dataset)
    low, high = starts[rows], ends[rows]
    if window is not None:
        low, high = jnp.maximum(low, rows - window), jnp.minimum(high, rows + window)
    span = (high - low + 1).astype(jnp.float32)
    offset = jnp.floor(jr.uniform(context_key, (batch_size,)) * span).astype(jnp.int32)
    context = jnp.minimum(low + offset, high)
    return Batch(
        batch.observations,
        batch.actions,
        batch.next_observations,
        batch.next_actions,
        batch.rewards,
        batch.masks,
        context_observations=dataset.observations[context],
        context_actions=dataset.actions[context],
    )


def batch_at(dataset: Dataset, rows: Int[Array, " batch"]) -> Batch:
    """The SARSA transitions at `rows`: `(obs[i], act[i], rew[i], obs[i + 1], act[i + 1], mask[i])`.

    `rows` must be valid rows (not the last row of an episode), e.g. from `dataset.valid_indices`.
    """
    next_rows = rows + 1
    return Batch(
        observations=dataset.observations[rows],
        actions=dataset.actions[rows],
        next_observations=dataset.observations[next_rows],
        next_actions=dataset.actions[next_rows],
        rewards=dataset.rewards[rows],
        masks=dataset.masks[rows],
    )


# --------------------------------------------------------------------------- normaliser


def _lift(vector: Float[Array, " obs_dim"], x: Array) -> Array:
    """Reshapes a per-dimension vector to broadcast against `x` without rank promotion."""
    return jnp.reshape(vector, (1,) * (x.ndim - 1) + vector.shape)


class Normalizer(eqx.Module):
    """Per-dimension affine observation normaliser `normalize(x) = (x - shift) / scale`.

    `lower` and `upper` are the per-dimension min and max of the *normalised* fitting data;
    pass them to [`ClipToBox`][] to clip generated futures to the data's range.

    Fit one with [`fit_normalizer`][] on the pre-training observations and use it for every
    dataset and for evaluation; store it with the run ([`save_normalizer`][]).
    """

    kind: NormalizerKind = eqx.field(static=True)
    shift: Float[Array, " obs_dim"]
    scale: Float[Array, " obs_dim"]
    lower: Float[Array, " obs_dim"]
    upper: Float[Array, " obs_dim"]

    def __check_init__(self):
        if self.kind not in get_args(NormalizerKind):
            raise ValueError(
                f"Normalizer: `kind` must be one of {get_args(NormalizerKind)}, got {self.kind!r}"
            )

    def normalize(self, x: Float[Array, "*batch obs_dim"]) -> Float[Array, "*batch obs_dim"]:
        """`(x - shift) / scale`, over any leading axes."""
        return (x - _lift(self.shift, x)) / _lift(self.scale, x)

    def denormalize(self, x: Float[Array, "*batch obs_dim"]) -> Float[Array, "*batch obs_dim"]:
        """`x * scale + shift`, the inverse of [`Normalizer.normalize`][], over any leading axes."""
        return x * _lift(self.scale, x) + _lift(self.shift, x)


def fit_normalizer(
    observations: Float[Array, "n obs_dim"] | Float[np.ndarray, "n obs_dim"],
    kind: NormalizerKind = "zscore",
) -> Normalizer:
    """Fits a [`Normalizer`][] to observations (on the host, in float64).

    - `"zscore"` (the reference's default): `shift = mean`, `scale = sqrt(var + 1e-8)`, so the
        data have mean 0 and standard deviation ~1 per dimension.
    - `"bounded"`: maps each dimension's `[min, max]` to `[-1, 1]`: `shift = (max + min) / 2`,
        `scale = (max - min) / 2`. A constant dimension gets `scale = 1` (it maps to 0).
    - `"none"`: identity (`shift = 0`, `scale = 1`).

    `lower`/`upper` are the min/max of `normalize(observations)`.

    **Arguments:**

    - `observations`: `[n, obs_dim]`, a NumPy or JAX array (`n >= 1`).
    - `kind`: one of `"zscore"`, `"bounded"`, `"none"`.

    **Returns:** a `Normalizer` with float32 arrays of shape `[obs_dim]`.
    """
    data = np.asarray(observations, dtype=np.float64)
    if len(data) == 0:
        raise ValueError("fit_normalizer: `observations` is empty")
    if not np.isfinite(data).all():
        raise ValueError("fit_normalizer: `observations` has non-finite values")
    low, high = data.min(axis=0), data.max(axis=0)
    if kind == "zscore":
        shift, scale = data.mean(axis=0), np.sqrt(data.var(axis=0) + _ZSCORE_EPS)
    elif kind == "bounded":
        span = high - low
        shift = (high + low) / 2.0
        scale = np.where(span > _BOUNDED_MIN_RANGE, span / 2.0, 1.0)
    else:  # "none" (the annotation's Literal is checked at the call)
        shift, scale = np.zeros_like(low), np.ones_like(low)
    shift32 = jnp.asarray(shift, jnp.float32)
    scale32 = jnp.asarray(scale, jnp.float32)
    # The bounds are the extremes of the normalised data as float32 computes it, so that
    # clipping to them never moves a normalised data point.
    bounds = (jnp.asarray(np.stack([low, high]), jnp.float32) - shift32[None]) / scale32[None]
    return Normalizer(kind=kind, shift=shift32, scale=scale32, lower=bounds[0], upper=bounds[1])


def normalize_dataset(dataset: Dataset, normalizer: Normalizer) -> Dataset:
    """Returns `dataset` with `observations` replaced by `normalizer.normalize(observations)`."""
    return eqx.tree_at(lambda d: d.observations, dataset, normalizer.normalize(dataset.observations))


_NORMALIZER_KEYS = ("kind", "shift", "scale", "lower", "upper")


def save_normalizer(path: str | os.PathLike, normalizer: Normalizer) -> None:
    """Writes a [`Normalizer`][] to an `.npz` file, atomically.

    The file is written to a temporary file in the same directory and moved into place with
    `os.replace`, so a reader sees either the previous file or the complete new one.

    **Arguments:**

    - `path`: the destination (used as given; no suffix is added).
    - `normalizer`: the normaliser to store.
    """
    arrays = {
        "kind": np.asarray(normalizer.kind),
        "shift": np.asarray(normalizer.shift),
        "scale": np.asarray(normalizer.scale),
        "lower": np.asarray(normalizer.lower),
        "upper": np.asarray(normalizer.upper),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_normalizer(path: str | os.PathLike) -> Normalizer:
    """Reads a [`Normalizer`][] written by [`save_normalizer`][].

    **Raises:** `ValueError` naming the file and the key if a key is missing or malformed.
    """
    name = os.fspath(path)
    with np.load(name, allow_pickle=False) as file:
        missing = [key for key in _NORMALIZER_KEYS if key not in file.files]
        if missing:
            raise ValueError(f"{name}: normaliser file lacks key(s) {missing}")
        kind = str(file["kind"])
        vectors = {key: np.asarray(file[key], np.float32) for key in _NORMALIZER_KEYS[1:]}
    dims = {key: value.shape for key, value in vectors.items()}
    if any(len(shape) != 1 for shape in dims.values()) or len(set(dims.values())) != 1:
        raise ValueError(f"{name}: normaliser arrays must be vectors of one length, got shapes {dims}")
    if kind not in get_args(NormalizerKind):
        raise ValueError(f"{name}: key 'kind' must be one of {get_args(NormalizerKind)}, got {kind!r}")
    return Normalizer(kind=kind, **{key: jnp.asarray(value) for key, value in vectors.items()})
