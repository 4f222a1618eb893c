"""Updates per second against the number of devices: the batch split over a mesh's `data` axis, and
seeds split over its `seeds` axis (`infom.training._sharding`, `infom train --mesh SEEDSxDATA`).

Runs in a child process with `--devices` devices (on CPU: `XLA_FLAGS=--xla_force_host_platform_device_count`
forced host devices, which share this machine's cores: on 2 cores this shows the overhead of the
partitioned program, not a speed-up; on GPUs, the devices are real). A fine-tuning block of `--block`
updates at the CPU preset's sizes (3 x 256, latent 128, 8 futures x 10 Euler steps, batch 256; obs 28,
action 5), synthetic data, median of `--repeat` timed blocks after compilation, all meshes interleaved in
one process:

- data parallel: 1 seed on meshes `1 x d` for d = 1, 2, 4, ...;
- seeds over devices: `--seeds` seeds (default: the device count) on meshes `s x 1`.

    python benchmarks/scaling.py [--devices 4] [--repeat 5] [--block 10]
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np


OBS, ACT, BATCH = 28, 5, 256


def child(args) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    from _common import interleaved_medians

    import infom
    from infom.agents.infom import AGENT
    from infom.training._sharding import make_mesh, place_replicated, place_states
    from infom.training._train import seeds_block

    devices = len(jax.devices())
    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=(256,) * 3, latent_dim=128), num_futures=8, batch_size=BATCH
    )
    optim = infom.make_optimizer(config)
    rng = np.random.default_rng(0)
    n = 20_000
    raw = infom.Dataset.from_arrays(
        rng.normal(size=(n, OBS)).astype(np.float32),
        rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        terminals=np.arange(n) % 1000 == 999,
        rewards=-rng.uniform(0, 1, n).astype(np.float32),
    )
    normalizer = infom.fit_normalizer(raw.observations)
    dataset = infom.normalize_dataset(raw, normalizer)
    init = eqx.filter_vmap(lambda k: infom.init_train_state(OBS, ACT, normalizer, config, optim, key=k))

    def block_call(num_seeds, shape):
        mesh = make_mesh(*shape)
        states = place_states(init(jr.split(jr.key(0), num_seeds)), mesh)
        data = place_replicated(dataset, mesh)
        keys = jr.split(jr.key(1), num_seeds)

        def call():
            return seeds_block(
                AGENT,
                AGENT.finetune_loss,
                states,
                data,
                keys=keys,
                num_updates=args.block,
                config=config,
                optim=optim,
                first_step=jnp.int32(0),
                mesh=mesh,
            )

        return call

    counts = [d for d in (1, 2, 4, 8, 16) if d <= devices]
    seeds = args.seeds or devices
    calls = {f"data 1x{d}": block_call(1, (1, d)) for d in counts}
    calls.update({f"seeds {s}x1": block_call(seeds, (s, 1)) for s in counts if seeds % s == 0})
    medians = interleaved_medians(calls, repeat=args.repeat, warmup=1)
    return {
        "devices": devices,
        "seeds": seeds,
        "block": args.block,
        "platform": jax.devices()[0].platform,
        "medians": medians,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=4, help="devices (forced host devices on CPU)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for the seed-axis rows")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--block", type=int, default=10, help="fine-tuning updates per timed block")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    from _common import header, print_table

    header(f"fine-tuning block of {args.block} updates at the CPU preset's sizes, median of {args.repeat}")
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
    command = [sys.executable, __file__, "--child", "--repeat", str(args.repeat), "--block", str(args.block)]
    if args.seeds:
        command += ["--seeds", str(args.seeds)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    medians, block, seeds = result["medians"], result["block"], result["seeds"]
    base = medians["data 1x1"] / block
    rows = []
    for label, seconds in medians.items():
        per_update = seconds / block
        per_seed = per_update / (seeds if label.startswith("seeds") else 1)
        rows.append(
            [
                label,
                f"{1e3 * per_update:.1f}",
                f"{1e3 * per_seed:.1f}",
                f"{1 / per_seed:.1f}",
                f"{per_seed / base:.2f}",
            ]
        )
    print(f"{result['devices']} {result['platform']} devices; seed rows train {seeds} seeds")
    print_table(
        [
            "mesh (seeds x data)",
            "ms per block update",
            "ms per update and seed",
            "seed-updates/s",
            "vs 1 device, 1 seed",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
