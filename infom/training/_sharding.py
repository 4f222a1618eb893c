"""Training on several devices with JAX's own sharding: a `jax.sharding.Mesh` with a `seeds`
and a `data` axis, states sharded over `seeds`, batches over `data`, everything else replicated.

The training step is the same function on one device and on many: [`seeds_block`][] vmaps the seeds
with `spmd_axis_name="seeds"` and constrains each sampled batch to be split over `"data"`; XLA's
partitioner then runs each device's share and inserts the reductions (the gradients' all-reduce over
`data`). The numbers are those of one device up to the order of floating-point reductions.
"""

import math
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..data._dataset import Dataset


SEEDS, DATA = "seeds", "data"
"""The mesh's axis names: seeds (the vmapped seed axis of the states) and data (the batch axis)."""


def make_mesh(seeds: int = 1, data: int = 1, *, devices: list | None = None) -> Mesh:
    """A `(seeds, data)` mesh over `seeds * data` devices (the first ones of `jax.devices()` unless
    `devices` is given). `make_mesh(1, 1)` is one device: the single-device program.

    **Arguments:**

    - `seeds`: devices along the seed axis; the number of seeds trained must be a multiple of it.
    - `data`: devices along the batch axis; the batch size must be a multiple of it.
    - `devices`: the devices to use, all of them by default (in every process: a multi-process
      run's mesh spans the devices of all processes).
    """
    for name, value in (("seeds", seeds), ("data", data)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"make_mesh: `{name}` must be a positive integer, got {value!r}")
    available = list(jax.devices()) if devices is None else list(devices)
    if seeds * data > len(available):
        raise ValueError(
            f"make_mesh: a {seeds} x {data} mesh needs {seeds * data} devices, but {len(available)} are "
            "available (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N of them)"
        )
    grid = np.asarray(available[: seeds * data], dtype=object).reshape(seeds, data)
    return Mesh(grid, (SEEDS, DATA))


def check_mesh(mesh: Mesh, *, num_seeds: int, batch_size: int) -> None:
    """Refuses a mesh the run cannot be split over, naming the axis."""
    if tuple(mesh.axis_names) != (SEEDS, DATA):
        raise ValueError(f"a training mesh has the axes {(SEEDS, DATA)}, got {tuple(mesh.axis_names)}")
    seeds, data = mesh.shape[SEEDS], mesh.shape[DATA]
    if num_seeds % seeds:
        raise ValueError(f"num_seeds={num_seeds} is not a multiple of the mesh's {seeds} seed devices")
    if batch_size % data:
        raise ValueError(f"batch_size={batch_size} is not a multiple of the mesh's {data} data devices")


def is_single_device(mesh: Mesh | None) -> bool:
    return mesh is None or math.prod(mesh.shape.values()) == 1


def _place(tree: Any, sharding: NamedSharding) -> Any:
    # From host values that every process holds alike (so also across processes, where a device of
    # the mesh may belong to another process): each device takes its slice of the host array.
    def put(x):
        if not eqx.is_array(x):
            return x
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def place_states(states: Any, mesh: Mesh) -> Any:
    """Seed-stacked states (leading axis: seeds) with every array split over the mesh's `seeds` axis
    and replicated over `data`. Every process passes the same values (e.g. the same keys' init, or
    the same checkpoint)."""
    return _place(states, NamedSharding(mesh, PartitionSpec(SEEDS)))


def place_replicated(tree: Any, mesh: Mesh) -> Any:
    """`tree` with every array replicated on every device of `mesh` (e.g. a [`Dataset`][]: each device
    holds the whole dataset, so that batches are gathered locally). Every process passes its own copy
    of the same values."""
    return _place(tree, NamedSharding(mesh, PartitionSpec()))


def to_host(tree: Any) -> Any:
    """Every array of `tree` as one NumPy array holding all of it, in every process: arrays split over
    devices of other processes are gathered (`multihost_utils.process_allgather`), so every process
    must call this at the same point."""
    from jax.experimental import multihost_utils

    def get(x):
        if not eqx.is_array(x):
            return x
        if x.is_fully_addressable:
            return np.asarray(x)
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout: int = 300,
    heartbeat_timeout_seconds: int = 100,
) -> None:
    """Joins a multi-process run: `jax.distributed.initialize` (arguments default to JAX's environment
    variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, or a cluster's own),
    with gloo collectives when the processes compute on CPU. Call it before anything else uses JAX.

    A process that dies is detected by the others after `heartbeat_timeout_seconds` without a
    heartbeat (the coordination service then stops every process with an error), or sooner by a
    collective whose peer has gone.
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address,
        num_processes,
        process_id,
        initialization_timeout=initialization_timeout,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    )


def shard_batch(batch: Any, mesh: Mesh | None) -> Any:
    """Inside a traced update: constrains every array of `batch` (leading axis: the batch) to be split
    over the mesh's `data` axis. Under [`seeds_block`][]'s vmap the seed axis is split over `seeds`."""
    if is_single_device(mesh):
        return batch
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)


def dataset_bytes(dataset: Dataset) -> int:
    """Bytes of a dataset's arrays: what each device holds of it."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(dataset) if eqx.is_array(x))
