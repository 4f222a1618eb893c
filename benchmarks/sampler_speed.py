"""How much faster is sampling SARSA batches in JAX (a jitted `lax.scan` over a device-resident
dataset) than a plain NumPy sampler on host arrays?

Dataset: `--rows` rows x 28 observation dims x 5 action dims (cube-single sizes), in episodes of
1001 rows (OGBench's play layout). Three ways to produce `--batches` batches of `--batch-size`:

- `jax scan`: `infom.sample_batch` inside one jitted `lax.scan`, every batch folded into a
  checksum carry (so XLA cannot drop the gathers) — what a scanned training block pays.
- `numpy`: random valid indices + fancy indexing on host arrays, per batch in a Python loop.
- `numpy + transfer`: the same, plus `jax.device_put` of each batch (what a host-fed training
  loop pays to move the batch onto the device).

Each is compiled/warmed up first, then timed with `timeit.repeat(number=1, repeat=--repeat)`;
the medians and their ratios (measured in the same run) are printed with the machine.

Run: `python benchmarks/sampler_speed.py` (defaults: 1,000,000 rows, 1,000 batches of 256).
"""

import argparse
import os
import platform
import statistics
import sys
import timeit

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import infom


OBS_DIM, ACTION_DIM, EPISODE_LENGTH = 28, 5, 1001


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _host_arrays(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminals = (np.arange(rows) % EPISODE_LENGTH == EPISODE_LENGTH - 1) | (np.arange(rows) == rows - 1)
    return dict(
        observations=rng.normal(size=(rows, OBS_DIM)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(rows, ACTION_DIM)).astype(np.float32),
        terminals=terminals,
        rewards=np.zeros(rows, np.float32),
        masks=np.ones(rows, np.float32),
    )


def _checksum(batch: infom.Batch) -> jax.Array:
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    host = _host_arrays(args.rows, seed=0)
    dataset = infom.Dataset.from_arrays(
        host["observations"],
        host["actions"],
        terminals=host["terminals"],
        rewards=host["rewards"],
        masks=host["masks"],
    )
    dataset = jax.block_until_ready(dataset)
    valid = np.asarray(dataset.valid_indices)

    @jax.jit
    def jax_scan(dataset, key):
        def body(total, batch_key):
            return total + _checksum(infom.sample_batch(dataset, batch_key, args.batch_size)), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), jr.split(key, args.batches))
        return total

    rng = np.random.default_rng(1)

    def numpy_batch() -> dict[str, np.ndarray]:
        rows = valid[rng.integers(0, len(valid), args.batch_size)]
        return dict(
            observations=host["observations"][rows],
            actions=host["actions"][rows],
            next_observations=host["observations"][rows + 1],
            next_actions=host["actions"][rows + 1],
            rewards=host["rewards"][rows],
            masks=host["masks"][rows],
        )

    def numpy_loop():
        for _ in range(args.batches):
            numpy_batch()

    def numpy_transfer_loop():
        batches = [jax.device_put(numpy_batch()) for _ in range(args.batches)]
        jax.block_until_ready(batches)

    keys = iter(jr.split(jr.key(0), 1 + args.repeat))
    jax.block_until_ready(jax_scan(dataset, next(keys)))  # compile
    numpy_loop()
    numpy_transfer_loop()

    def time(fn) -> float:
        return statistics.median(timeit.repeat(fn, number=1, repeat=args.repeat))

    results = {
        "jax scan": time(lambda: jax.block_until_ready(jax_scan(dataset, next(keys)))),
        "numpy": time(numpy_loop),
        "numpy + transfer": time(numpy_transfer_loop),
    }

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} {platform.machine()}; "
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"dataset: {args.rows:,} rows x {OBS_DIM} obs dims x {ACTION_DIM} action dims; "
        f"{args.batches:,} batches of {args.batch_size}; median of {args.repeat}"
    )
    for name, seconds in results.items():
        print(f"  {name:<17} {seconds * 1e3:9.1f} ms  {args.batches / seconds:12,.0f} batches/s")
    jax_seconds = results["jax scan"]
    print(f"ratio jax scan vs numpy:            {results['numpy'] / jax_seconds:.1f}x")
    print(f"ratio jax scan vs numpy + transfer: {results['numpy + transfer'] / jax_seconds:.1f}x")


if __name__ == "__main__":
    main()
