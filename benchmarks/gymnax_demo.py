"""Does fine-tuned InFOM beat behaviour cloning on Pendulum, and how long does the whole demo take?

Runs `infom.run_pendulum_demo` with the default setting `infom.PENDULUM_DEMO` (or
`PENDULUM_DEMO_QUICK` with `--quick`): reward-free data from the five `pendulum_behaviours`,
pre-training, fine-tuning on Pendulum's reward, and the BC baselines trained on the same data
with the same budget, all seeds vmapped in one compiled program per phase. Prints the returns
per seed, their mean +- std and median over seeds, the behaviours' own returns, diagnostics
of the fine-tuned models, and the wall time of each phase (compilation included; the demo is
one cold run, so it is timed once).

Run: `python benchmarks/gymnax_demo.py [--quick] [--seeds N] [--seed S] [--baselines NAME ...]
[--set AGENT.KEY=VALUE ...]`.
"""

import argparse
import dataclasses

from _common import header

import infom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick setting (pipeline check)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the setting's)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    parser.add_argument(
        "--baselines", nargs="*", default=None, help="agents compared with InFOM (default: the setting's)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="AGENT.KEY=VALUE",
        help="a change to a baseline's config, e.g. rebrac.alpha_actor=0 (repeatable)",
    )
    args = parser.parse_args()
    config = infom.PENDULUM_DEMO_QUICK if args.quick else infom.PENDULUM_DEMO
    if args.baselines is not None:
        config = dataclasses.replace(config, baselines=tuple(args.baselines))
    if args.overrides:
        config = dataclasses.replace(config, baseline_overrides=tuple(args.overrides))
    header(
        f"Pendulum-v1 demo, setting {'PENDULUM_DEMO_QUICK' if args.quick else 'PENDULUM_DEMO'}: "
        f"{args.seeds or config.num_seeds} seeds, {config.pretrain_updates} pre-training + "
        f"{config.finetune_updates} fine-tuning updates, {config.eval_episodes} evaluation episodes "
        "per policy"
    )
    result = infom.run_pendulum_demo(config=config, seed=args.seed, num_seeds=args.seeds, log=print)
    print(infom.format_demo_result(result))


if __name__ == "__main__":
    main()
