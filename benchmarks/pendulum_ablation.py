"""Does the intention matter for control? InFOM variants on the Pendulum demo, 4 seeds each.

Each row is `infom.run_pendulum_demo` (the demo's data, budget of 10,000 pre-training + 10,000
fine-tuning updates, 50 evaluation episodes per seed, all from the same key tree, so every row
sees the same data and evaluation episodes) with InFOM's demo config changed as the row says,
and without the baselines. Reported: the fine-tuned policy's mean undiscounted return per seed,
and the fine-tuned model's intention diagnostics (`infom.IntentionDiagnostics`, mean over
seeds): the posterior's KL summed over latent dimensions, and how far futures (`future shift`)
and Monte-Carlo Q (`Q shift`) move when only `z` changes, in units of their Monte-Carlo noise.

Rows (`--rows`, any of):

- `reference`: the demo's config: `z` stop-gradient in the SARSA future term (the paper's code),
  prior intentions for the critic, tau 0.005.
- `z-gradient`: `future_intention_gradient=True`: the intention learns from the future term.
- `episode-context`: `z-gradient` with the intention encoded from a pair drawn from the same
  episode (`intention_context="episode"`), independently of the transition.
- `episode-context-kl0`: as `episode-context` with `kl_weight = 0`.
- `episode-context-encoder`, `episode-context-kl0-encoder`: the two above with the critic's
  intentions from the encoder (of the same episode context) instead of the prior.
- `fom`: no intention (`network.latent_dim = 0`): a flow occupancy model of the behaviour.
- `critic-encoder`: the critic's intentions from the encoder `p_e(z | s', a')`, not the prior.
- `tau-0.02`, `tau-0.05`: the reference with a faster target EMA.
- `z-gradient-tau-0.02`: both changes.

Run: `python benchmarks/pendulum_ablation.py [--rows reference fom ...]`.
"""

import argparse
import dataclasses

import numpy as np
from _common import header, print_table

import infom


BASE = infom.PENDULUM_DEMO.infom
ROWS = {
    "reference": {},
    "z-gradient": {"future_intention_gradient": True},
    "episode-context": {"future_intention_gradient": True, "intention_context": "episode"},
    "episode-context-kl0": {
        "future_intention_gradient": True,
        "intention_context": "episode",
        "kl_weight": 0.0,
    },
    "episode-context-encoder": {
        "future_intention_gradient": True,
        "intention_context": "episode",
        "critic_intentions": "encoder",
    },
    "episode-context-kl0-encoder": {
        "future_intention_gradient": True,
        "intention_context": "episode",
        "kl_weight": 0.0,
        "critic_intentions": "encoder",
    },
    "fom": {"network": dataclasses.replace(BASE.network, latent_dim=0)},
    "critic-encoder": {"critic_intentions": "encoder"},
    "tau-0.02": {"tau": 0.02},
    "tau-0.05": {"tau": 0.05},
    "z-gradient-tau-0.02": {"future_intention_gradient": True, "tau": 0.02},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    demo = infom.PENDULUM_DEMO
    header(
        f"Pendulum demo, {demo.num_seeds} seeds, {demo.pretrain_updates} + {demo.finetune_updates} updates, "
        f"{demo.eval_episodes} evaluation episodes per seed; InFOM only"
    )
    rows = []
    for name in args.rows:
        config = dataclasses.replace(demo, infom=dataclasses.replace(BASE, **ROWS[name]), baselines=())
        result = infom.run_pendulum_demo(config=config, seed=args.seed)
        returns, d = result.infom_returns, result.diagnostics
        rows.append(
            [
                name,
                f"{np.mean(returns):.1f} +- {np.std(returns):.1f}",
                " ".join(f"{r:.1f}" for r in returns),
                f"{np.mean(d.intention_kl):.2f}",
                f"{np.mean(d.future_shift):.3f}",
                f"{np.mean(d.q_shift):.2f}",
                f"{np.mean(d.q_correlation):.3f}",
                f"{result.seconds['total']:.0f}",
            ]
        )
        print("  " + " | ".join(rows[-1]), flush=True)
    print()
    print_table(
        [
            "row",
            "return mean +- std",
            "per seed",
            "intention KL",
            "future shift",
            "Q shift",
            "MC-Q corr",
            "wall s",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
