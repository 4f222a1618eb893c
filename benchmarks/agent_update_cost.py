"""What does one update of each agent cost, next to InFOM's?

For every agent of `infom.AGENTS`, at a named preset's sizes (default `cube-single`: the paper's
4 x 512 networks, batch 256; obs 28 / action 5 as cube-single), times a compiled block of
`--block` updates of its pre-training loss and of its fine-tuning loss (after `begin_finetuning`,
the task inference of FB and HILP included) on synthetic data already on the device, batch
sampling included, and reports the median milliseconds per update (the actor on every
`actor_freq`-th update, as in a run) and the ratio to InFOM's. All agents' blocks are timed in
turn (round robin) in one process, so a change in the machine's load affects them alike; compile
times are reported once.

    python benchmarks/agent_update_cost.py                         # paper sizes, 5 rounds
    python benchmarks/agent_update_cost.py --preset cube-single-cpu --repeat 3
"""

import argparse
import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import header, interleaved_medians

import infom
from infom.training._train import begin_finetuning


OBS, ACT = 28, 5


def _dataset(rng: np.random.Generator, episodes: int, length: int, rewards: bool) -> infom.Dataset:
    n = episodes * length
    return infom.Dataset.from_arrays(
        rng.normal(size=(n, OBS)).astype(np.float32),
        rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32),
        terminals=np.tile(np.arange(length) == length - 1, episodes),
        rewards=(rng.integers(0, 2, size=n) - 1.0).astype(np.float32) if rewards else None,
    )


@eqx.filter_jit
def _block(agent, loss, state, data, first, config, optim, num_updates):
    return infom.train_block(
        agent,
        loss,
        state,
        data,
        key=jr.key(2),
        num_updates=num_updates,
        config=config,
        optim=optim,
        first_step=first,
    )


@eqx.filter_jit
def _begin(agent, state, data, config):
    return begin_finetuning(agent, state, config, dataset=data, key=jr.key(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cube-single", help="the preset whose sizes to use")
    parser.add_argument("--agents", nargs="*", default=None, help="agents (default: all)")
    parser.add_argument("--block", type=int, default=8, help="updates per timed block (default 8)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args()
    preset = infom.get_preset(args.preset)
    names = args.agents or list(infom.AGENTS)
    header(
        f"per-update cost of each agent at preset {args.preset!r}: obs {OBS}, action {ACT}, blocks of "
        f"{args.block} updates, median of {args.repeat} round-robin rounds"
    )
    rng = np.random.default_rng(0)
    pretrain_data = _dataset(rng, 20, 1001, rewards=False)
    finetune_data = _dataset(rng, 10, 1001, rewards=True)
    normalizer = infom.fit_normalizer(np.asarray(pretrain_data.observations))

    blocks, compile_seconds = {}, {}
    for name in names:
        agent = infom.AGENTS[name]
        config = agent.preset_config(preset)
        optim = infom.make_optimizer(config)
        state = infom.init_state(agent, OBS, ACT, normalizer, config, optim, key=jr.key(0))
        first = jnp.zeros((), jnp.int32)
        phases = [("finetune", agent.finetune_loss, finetune_data)]
        if agent.pretrain_loss is not None:
            phases.insert(0, ("pretrain", agent.pretrain_loss, pretrain_data))
        for phase, loss, data in phases:
            phase_state = state
            if phase == "finetune":
                phase_state = _begin(agent, state, finetune_data, config)
            run = functools.partial(_block, agent, loss, phase_state, data, first, config, optim, args.block)
            started = time.perf_counter()
            jax.block_until_ready(run())
            compile_seconds[(name, phase)] = time.perf_counter() - started
            blocks[(name, phase)] = run
            print(f"compiled {name} {phase}: {compile_seconds[(name, phase)]:.1f} s", flush=True)

    medians = interleaved_medians(
        {f"{n} {p}": fn for (n, p), fn in blocks.items()}, repeat=args.repeat, warmup=0
    )
    per_update = {key: medians[f"{key[0]} {key[1]}"] / args.block * 1e3 for key in blocks}
    print()
    print("| agent | pre-training ms/update | x InFOM | fine-tuning ms/update | x InFOM | first block s |")
    print("|---|---|---|---|---|---|")
    for name in names:
        row = [name]
        for phase in ("pretrain", "finetune"):
            ms = per_update.get((name, phase))
            base = per_update.get(("infom", phase))
            row += ["-", "-"] if ms is None else [f"{ms:.1f}", f"{ms / base:.2f}" if base else "-"]
        row.append(
            " / ".join(
                f"{compile_seconds[(name, p)]:.1f}" for p in ("pretrain", "finetune") if (name, p) in blocks
            )
        )
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
