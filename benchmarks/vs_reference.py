"""How fast is an update here against the authors' code, measured side by side?

Each implementation runs in its own process (ours with this interpreter, the authors' with
`--reference-python`, a virtual environment that has their dependencies: flax, distrax,
ml_collections and a tfp-nightly build that works with this JAX; see `../shared/FACTS.md` or the
README of `benchmarks/`), on the same synthetic cube-single-sized data (obs 28, action 5, batch
256), the same JAX/XLA, one after the other, for `--rounds` rounds. Within a round the
processes alternate, so a drift of the machine's speed between rounds affects both alike; each
process reports the median of `--repeat` timed calls after compilation.

Measured per setting (both sides at the same network sizes, latent size, futures and flow steps):

- `pretrain`: one pre-training update;
- `finetune`: one fine-tuning update averaged over the actor's cycle of 4
  (`(3 t(no actor) + t(actor)) / 4`);
- ours only: the per-update time inside a compiled block of `--block` updates (pre / fine), and
  per seed with 3 seeds in one block (pre / fine), vmapped together (`seed_batch=None`) and one
  after another (`seed_batch=1`, the CPU presets' choice); and each of these over a lone seed's
  block.

Settings: `cpu-preset` and `paper` (the same math on both sides), and `cpu-preset-student-1` /
`paper-student-1` (ours drawing the critic's futures from a one-step distilled student, theirs unchanged).

Printed: every round's times and the ratio ours / theirs, then the median ratio over rounds.
Round-to-round drift on these machines reaches 30%, so read differences under ~0.15 as unresolved.

    python benchmarks/vs_reference.py --reference-repo PATH/TO/infom \
        --reference-python PATH/TO/reference-venv/bin/python
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

from _common import header, print_table


OBS, ACT, BATCH = 28, 5, 256
SETTINGS = {
    # name: (hidden dims, latent, futures, flow steps, our extra InFOMConfig fields)
    "paper": ((512,) * 4, 512, 16, 10, {}),
    "cpu-preset": ((256,) * 3, 128, 8, 10, {}),
    # Ours with the critic's futures from a distilled one-step student (`student_steps=1`), against
    # the authors' code at the same sizes with its 10 Euler steps: a cheaper sampler, not the same math.
    "paper-student-1": ((512,) * 4, 512, 16, 10, {"student_steps": 1}),
    "cpu-preset-student-1": ((256,) * 3, 128, 8, 10, {"student_steps": 1}),
}


def _ours(setting: str, repeat: int, block: int) -> dict:
    """Times our updates in this process (imports JAX only here)."""
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    from _common import interleaved_medians

    import infom

    hidden, latent, futures, steps, extra = SETTINGS[setting]
    config = infom.InFOMConfig(
        network=infom.NetworkConfig(hidden_dims=hidden, latent_dim=latent),
        num_futures=futures,
        num_flow_steps=steps,
        batch_size=BATCH,
        **extra,
    )
    optim = infom.make_optimizer(config)
    rng = np.random.default_rng(0)
    n = 20_000
    terminals = np.zeros(n, bool)
    terminals[999::1000] = True
    raw = infom.Dataset.from_arrays(
        rng.normal(size=(n, OBS)).astype(np.float32),
        rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        terminals=terminals,
        rewards=-rng.uniform(0, 1, n).astype(np.float32),
    )
    normalizer = infom.fit_normalizer(raw.observations)
    dataset = infom.normalize_dataset(raw, normalizer)
    state = infom.init_train_state(OBS, ACT, normalizer, config, optim, key=jr.key(0))
    batch = infom.sample_batch(dataset, jr.key(1), BATCH)
    key = jr.key(2)
    with_actor = eqx.tree_at(lambda s: s.step, state, jnp.int32(3))  # (3 + 1) % 4 == 0
    without_actor = eqx.tree_at(lambda s: s.step, state, jnp.int32(0))
    pre = eqx.filter_jit(lambda s, b, k: infom.pretrain_step(s, b, key=k, config=config, optim=optim))
    fine = eqx.filter_jit(lambda s, b, k: infom.finetune_step(s, b, key=k, config=config, optim=optim))

    def blocks(loss):
        return eqx.filter_jit(
            lambda s, k: infom.train_block(
                infom.AGENTS["infom"], loss, s, dataset, key=k, num_updates=block, config=config, optim=optim
            )
        )

    agent = infom.AGENTS["infom"]
    pre_block, fine_block = blocks(agent.pretrain_loss), blocks(agent.finetune_loss)
    seeds = 3
    seed_states = eqx.filter_vmap(
        lambda k: infom.init_train_state(OBS, ACT, normalizer, config, optim, key=k)
    )(jr.split(jr.key(3), seeds))
    seed_keys = jr.split(jr.key(4), seeds)

    def seeds_block(loss, seed_batch=None):
        return eqx.filter_jit(
            lambda s, k: infom.seeds_block(
                agent,
                loss,
                s,
                dataset,
                keys=k,
                num_updates=block,
                config=config,
                optim=optim,
                first_step=jnp.int32(0),
                seed_batch=seed_batch,
            )
        )

    pre_seeds, fine_seeds = seeds_block(agent.pretrain_loss), seeds_block(agent.finetune_loss)
    pre_seq, fine_seq = seeds_block(agent.pretrain_loss, 1), seeds_block(agent.finetune_loss, 1)
    calls = {
        "pretrain": lambda: pre(state, batch, key),
        "finetune_actor": lambda: fine(with_actor, batch, key),
        "finetune_no_actor": lambda: fine(without_actor, batch, key),
        "pretrain_block": lambda: pre_block(state, key),
        "finetune_block": lambda: fine_block(without_actor, key),
        "pretrain_seeds": lambda: pre_seeds(seed_states, seed_keys),
        "finetune_seeds": lambda: fine_seeds(seed_states, seed_keys),
        "pretrain_seeds_seq": lambda: pre_seq(seed_states, seed_keys),
        "finetune_seeds_seq": lambda: fine_seq(seed_states, seed_keys),
    }
    medians = interleaved_medians(calls, repeat=repeat, warmup=1)
    out = {k: medians[k] for k in ("pretrain", "finetune_actor", "finetune_no_actor")}
    out["pretrain_block"] = medians["pretrain_block"] / block
    out["finetune_block"] = medians["finetune_block"] / block
    out["pretrain_seeds"] = medians["pretrain_seeds"] / (block * seeds)
    out["finetune_seeds"] = medians["finetune_seeds"] / (block * seeds)
    out["pretrain_seeds_seq"] = medians["pretrain_seeds_seq"] / (block * seeds)
    out["finetune_seeds_seq"] = medians["finetune_seeds_seq"] / (block * seeds)
    return out


# Run by the authors' interpreter with their repository on `sys.path`; prints one JSON line.
_THEIRS = textwrap.dedent(
    """
    import json, sys, statistics, timeit
    import jax, jax.numpy as jnp, numpy as np
    from agents.infom import InFOMAgent, get_config
    hidden, latent, futures, steps, obs, act, batch_size, repeat = json.loads(sys.argv[1])
    config = get_config()
    for name in ("intention_encoder", "actor", "value", "reward"):
        config[name + "_hidden_dims"] = tuple(hidden)
    config["latent_dim"], config["num_flow_goals"], config["num_flow_steps"] = latent, futures, steps
    config["batch_size"] = batch_size
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(batch_size, obs)).astype(np.float32)
    batch = dict(
        observations=observations,
        actions=rng.uniform(-1, 1, (batch_size, act)).astype(np.float32),
        next_observations=rng.normal(size=(batch_size, obs)).astype(np.float32),
        next_actions=rng.uniform(-1, 1, (batch_size, act)).astype(np.float32),
        rewards=-rng.uniform(0, 1, batch_size).astype(np.float32),
        masks=np.ones(batch_size, np.float32),
        observation_min=observations.min(axis=0) - 1.0,
        observation_max=observations.max(axis=0) + 1.0,
    )
    batch = jax.tree.map(jnp.asarray, batch)
    agent = InFOMAgent.create(0, batch["observations"][:1], batch["actions"][:1], config)
    calls = {
        "pretrain": lambda: agent.pretrain(batch),
        "finetune_actor": lambda: agent.finetune(batch, full_update=True),
        "finetune_no_actor": lambda: agent.finetune(batch, full_update=False),
    }
    for call in calls.values():
        jax.block_until_ready(call())
    times = {k: [] for k in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            times[name].append(timeit.timeit(lambda: jax.block_until_ready(call()), number=1))
    print(json.dumps({k: statistics.median(v) for k, v in times.items()}))
    """
)


def _run_theirs(args, setting: str) -> dict:
    hidden, latent, futures, steps, _ = SETTINGS[setting]
    payload = json.dumps([list(hidden), latent, futures, steps, OBS, ACT, BATCH, args.repeat])
    env = {**os.environ, "PYTHONPATH": os.path.abspath(args.reference_repo)}
    out = subprocess.run(
        [args.reference_python, "-c", _THEIRS, payload],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.abspath(args.reference_repo),
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _run_ours(args, setting: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        setting,
        "--repeat",
        str(args.repeat),
        "--block",
        str(args.block),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _fine(times: dict) -> float:
    return (3 * times["finetune_no_actor"] + times["finetune_actor"]) / 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-repo", help="a checkout of chongyi-zheng/infom")
    parser.add_argument(
        "--reference-python", help="the python of an environment with the authors' dependencies"
    )
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS)
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_ours(args.child, args.repeat, args.block)))
        return
    if not args.reference_repo or not args.reference_python:
        parser.error("--reference-repo and --reference-python are required")

    header(
        f"ours / the authors' code, each in its own process, alternating; {args.rounds} rounds, median of "
        f"{args.repeat} calls per process; batch {BATCH}, obs {OBS}, action {ACT}"
    )
    rows, ratios = [], {}
    for round_index in range(args.rounds):
        for setting in args.settings.split(","):
            theirs = _run_theirs(args, setting)
            ours = _run_ours(args, setting)
            r = {
                "pre": ours["pretrain"] / theirs["pretrain"],
                "fine": _fine(ours) / _fine(theirs),
                "pre_block": ours["pretrain_block"] / theirs["pretrain"],
                "fine_block": ours["finetune_block"] / _fine(theirs),
                "pre_seeds": ours["pretrain_seeds"] / theirs["pretrain"],
                "fine_seeds": ours["finetune_seeds"] / _fine(theirs),
                "pre_seq": ours["pretrain_seeds_seq"] / theirs["pretrain"],
                "fine_seq": ours["finetune_seeds_seq"] / _fine(theirs),
                "pre_seq_vs_lone": ours["pretrain_seeds_seq"] / ours["pretrain_block"],
                "fine_seq_vs_lone": ours["finetune_seeds_seq"] / ours["finetune_block"],
                "pre_vmap_vs_lone": ours["pretrain_seeds"] / ours["pretrain_block"],
                "fine_vmap_vs_lone": ours["finetune_seeds"] / ours["finetune_block"],
            }
            for k, v in r.items():
                ratios.setdefault(setting, {}).setdefault(k, []).append(v)
            rows.append(
                [
                    str(round_index + 1),
                    setting,
                    f"{ours['pretrain'] * 1e3:.1f} / {theirs['pretrain'] * 1e3:.1f}",
                    f"{_fine(ours) * 1e3:.1f} / {_fine(theirs) * 1e3:.1f}",
                    f"{ours['pretrain_block'] * 1e3:.1f} / {ours['finetune_block'] * 1e3:.1f}",
                    f"{ours['pretrain_seeds'] * 1e3:.1f} / {ours['finetune_seeds'] * 1e3:.1f}",
                    f"{ours['pretrain_seeds_seq'] * 1e3:.1f} / {ours['finetune_seeds_seq'] * 1e3:.1f}",
                ]
            )
            print("  " + " | ".join(rows[-1]), flush=True)
    print_table(
        [
            "round",
            "setting",
            "pre-training ms: ours / theirs",
            "fine-tuning ms (actor every 4th): ours / theirs",
            "ours in a block: pre / fine ms",
            "ours, 3 seeds vmapped, per seed: pre / fine ms",
            "ours, 3 seeds one at a time, per seed: pre / fine ms",
        ],
        rows,
    )
    print()
    print_table(
        [
            "setting",
            "single update: pre / fine",
            "ours in a block: pre / fine",
            "3 seeds vmapped, per seed: pre / fine",
            "3 seeds one at a time, per seed: pre / fine",
        ],
        [
            [
                setting,
                _median_pair(r, "pre", "fine"),
                _median_pair(r, "pre_block", "fine_block"),
                _median_pair(r, "pre_seeds", "fine_seeds"),
                _median_pair(r, "pre_seq", "fine_seq"),
            ]
            for setting, r in ratios.items()
        ],
    )
    print("\nA seed's cost in a 3-seed block over a lone seed's block (ours only; median over rounds):")
    print_table(
        ["setting", "3 seeds vmapped: pre / fine", "3 seeds one at a time: pre / fine"],
        [
            [
                setting,
                _median_pair(r, "pre_vmap_vs_lone", "fine_vmap_vs_lone"),
                _median_pair(r, "pre_seq_vs_lone", "fine_seq_vs_lone"),
            ]
            for setting, r in ratios.items()
        ],
    )


def _median_pair(ratios: dict, first: str, second: str) -> str:
    return f"{statistics.median(ratios[first]):.2f} / {statistics.median(ratios[second]):.2f}"


if __name__ == "__main__":
    main()
