"""A fast end-to-end demo on gymnax's `Pendulum-v1`: multi-user reward-free data, pre-training,
fine-tuning on the swing-up reward, and evaluation against behaviour cloning, every phase
compiled and every seed vmapped in one program.

**The users and the task.** The five [`pendulum_behaviours`][] are the "users": two swing up
slowly and hold the pole 14 degrees off upright (return about -240), two spin (about -1,550),
one swings below the top (about -1,200). The downstream task is Pendulum's own reward. None of
the users solves it, and behaviour cloning of their mixture averages incompatible actions
(about -1,000 to -1,200), while acting greedily on the best user's value at every step would
reach about -140 (an exact one-step greedy policy on `max_k Q^k` at `gamma = 0.95`, computed by
simulation). That gap is what InFOM's fine-tuning can close.

**Rewards.** Pendulum's reward `-(theta^2 + 0.1 theta'^2 + 0.001 u^2)` is computed by the
environment from the state *before* the step, and [`collect_gymnax_dataset`][] stores it on the
row of that state, so it matches InFOM's `r(s)` convention; the action cost (at most 0.004 per
step, against a per-step range of about [-16, 0]) cannot be seen by `r_phi(s)` and is left in
as a small label noise. Returns are always measured with the environment's full reward.

**The setting [`PENDULUM_DEMO`][]** (chosen in exploratory runs of two to four seeds at 10,000
pre-training updates; `benchmarks/gymnax_demo.py` measures the result):

- Networks of 3 x 64 GELU units and an 8-dimensional intention: the observation has three
  dimensions and the action one; the paper's 4 x 512 networks would be about a hundred times
  slower on two CPU cores.
- `gamma = 0.95`, a horizon of about 20 steps (one second): long enough for a one-step greedy
  policy on the behaviours' values to swing up, and short enough for the occupancy model to
  train within the budget (the demo's `q_correlation` diagnostic checks it).
- `kl_weight = 0.01`: a smaller weight lets the posterior intentions drift away from the prior,
  so the critic's prior intentions `z ~ N(0, I)` produce futures off the data.
- `learning_rate = 1e-3` (paper 3e-4) and `num_flow_steps = 5` (paper 10): the short budget.
- `num_futures = 8`, `finetune_updates = 10,000`, `actor_freq = 1` (paper: every 4th update):
  the actor follows the critic within the short run.
- `alpha = 1` with `normalize_q_loss = True`: the Q term is divided by `mean |Q|`, so `alpha` is
  a scale-free trade-off.
- `expectile = 0.9`, batch 128.
- Data: 40 reward-free and 8 reward-labelled episodes of 200 steps per behaviour (40,000 and
  8,000 rows), action noise 0.1.

`benchmarks/gymnax_demo.py` runs the default setting and `benchmarks/RESULTS.md` records its
returns next to behaviour cloning's.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._config import InFOMConfig, NetworkConfig
from .._losses import critic_values
from .._networks import Actor
from ..agents import AGENTS
from ..agents._base import Agent
from ..agents.infom import (
    AGENT as INFOM,
    mc_q_targets,
    policy_actions,
)
from ..data._dataset import Dataset, batch_at, fit_normalizer, normalize_dataset
from ..envs.gymnax._adapter import Policy, collect_gymnax_dataset, evaluate_gymnax
from ..training import _keys
from ..training._keys import DATA, DIAGNOSTICS, EVALUATION, run_key
from ..training._train import (
    TrainState,
    agent_actions,
    begin_finetuning,
    init_state,
    make_optimizer,
    seeds_block,
    seeds_diagnostics,
)


PENDULUM = "Pendulum-v1"
_EPISODE_LENGTH = 200  # Pendulum-v1's `max_steps_in_episode`
_DIAGNOSTIC_FUTURES = 32


@dataclasses.dataclass(frozen=True)
class PendulumDemoConfig:
    """The setting of [`run_pendulum_demo`][]: InFOM's hyper-parameters, the data and the budget.

    **Fields:**

    - `infom`: the [`InFOMConfig`][] used for pre-training and fine-tuning.
    - `num_seeds`: seeds trained together (vmapped in one compiled program).
    - `pretrain_updates`, `finetune_updates`: updates of each phase, each one compiled block.
    - `pretrain_episodes`, `finetune_episodes`: episodes *per behaviour* (of 200 steps) in the
      reward-free pre-training data and the reward-labelled fine-tuning data.
    - `action_noise`: standard deviation of the Gaussian noise on the behaviours' actions.
    - `eval_episodes`: evaluation episodes per policy (deterministic actions).
    - `baselines`: the agents of `infom.AGENTS` compared with InFOM, each on the same data and
      budget, with the demo's network widths, learning rate, batch size and discount and its
      own defaults otherwise (`demo_baseline_config`).
    - `baseline_overrides`: `"AGENT.KEY=VALUE"` changes to a baseline's config, applied after the
      demo's (e.g. `"rebrac.alpha_actor=0"`), in the syntax of `infom train --set`.
    """

    infom: InFOMConfig
    num_seeds: int = 4
    pretrain_updates: int = 10_000
    finetune_updates: int = 10_000
    pretrain_episodes: int = 40
    finetune_episodes: int = 8
    action_noise: float = 0.1
    eval_episodes: int = 50
    baselines: tuple[str, ...] = ("bc", "iql", "rebrac")
    baseline_overrides: tuple[str, ...] = ()

    def __post_init__(self):
        for name in (
            "num_seeds",
            "pretrain_updates",
            "finetune_updates",
            "pretrain_episodes",
            "finetune_episodes",
            "eval_episodes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PendulumDemoConfig.{name} must be a positive integer, got {value!r}")
        if not self.action_noise >= 0:
            raise ValueError(
                f"PendulumDemoConfig.action_noise must be non-negative, got {self.action_noise!r}"
            )
        from ..agents import AGENTS

        unknown = [name for name in self.baselines if name not in AGENTS or name == "infom"]
        if unknown:
            raise ValueError(
                f"PendulumDemoConfig.baselines: unknown {unknown}; choose from "
                f"{sorted(set(AGENTS) - {'infom'})}"
            )
        for item in self.baseline_overrides:
            name, dot, _ = item.partition(".")
            if not dot or name not in self.baselines:
                raise ValueError(
                    f"PendulumDemoConfig.baseline_overrides: {item!r} must read AGENT.KEY=VALUE with AGENT "
                    f"one of the baselines {self.baselines}"
                )
        if self.baseline_overrides:  # a bad key or value fails here, naming it
            for name in self.baselines:
                demo_baseline_config(AGENTS[name], self)


PENDULUM_DEMO = PendulumDemoConfig(
    infom=InFOMConfig(
        network=NetworkConfig(hidden_dims=(64, 64, 64), latent_dim=8),
        learning_rate=1e-3,
        batch_size=128,
        gamma=0.95,
        kl_weight=0.01,
        expectile=0.9,
        num_futures=8,
        num_flow_steps=5,
        actor_freq=1,
        alpha=1.0,
        normalize_q_loss=True,
    ),
    num_seeds=4,
    pretrain_updates=10_000,
    finetune_updates=10_000,
)
"""The default demo setting; the module docstring of `infom.run._demo` explains each choice."""

PENDULUM_DEMO_QUICK = dataclasses.replace(
    PENDULUM_DEMO,
    num_seeds=2,
    pretrain_updates=1_000,
    finetune_updates=500,
    pretrain_episodes=10,
    finetune_episodes=4,
    eval_episodes=20,
)
"""A quick check of the whole pipeline (under a minute on two CPU cores); too short to train well."""


class DemoResult(NamedTuple):
    """What [`run_pendulum_demo`][] measured.

    **Fields:**

    - `config`, `seed`: the setting and the first seed (seeds are `seed, seed + 1, ...`).
    - `infom_returns`: `[num_seeds]` mean undiscounted return of the fine-tuned InFOM policy.
    - `bc_returns`: `[num_seeds]` the pre-trained behaviour-cloning actor (InFOM's actor
      before fine-tuning: BC on the pre-training data for `pretrain_updates` updates).
    - `baseline_returns`: `{agent name: [num_seeds]}` for each of `config.baselines`, trained
      on the same data with the same budget through the common training layer (`"bc"`:
      behaviour cloning on both datasets, the same data and budget as InFOM).
    - `behaviour_returns`: mean return of each behaviour (deterministic, no action noise).
    - `diagnostics`: per-seed `[num_seeds]` checks of the fine-tuned models (see
      [`DemoDiagnostics`][]).
    - `states`: the fine-tuned [`TrainState`][]s, stacked over seeds (index a seed with
      `jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, states)`).
    - `seconds`: wall time of each phase (`"collect"`, `"pretrain"`, `"finetune"`, `"bc"`,
      `"evaluate"`, `"total"`), compilation included.
    """

    config: PendulumDemoConfig
    seed: int
    infom_returns: np.ndarray
    bc_returns: np.ndarray
    baseline_returns: dict[str, np.ndarray]
    behaviour_returns: dict[str, float]
    diagnostics: "DemoDiagnostics"
    seconds: dict[str, float]
    states: TrainState


class DemoDiagnostics(NamedTuple):
    """Per-seed checks of the fine-tuned models on 1,024 rows of the fine-tuning data, `[num_seeds]` each.

    - `reward_r2`: coefficient of determination of `r_phi(s)` against the data's rewards.
    - `q_correlation`, `q_bias`: correlation and mean difference between the Monte-Carlo
      `Q_hat(s, a, z)` with `z` encoded from the row's own `(s', a')` (the behaviour's value) and
      the true discounted return-to-go of the row in its episode (32 futures; rows with at least
      `3 / (1 - gamma)` steps left, so that the truncation at the episode end is negligible).
    - `gpi_gain`: mean of `Q_hat` with prior intentions, expectile-distilled by the critic
      (`min_heads Q_psi(s, a)`), minus the true return-to-go: positive when the critic
      values the data's actions above what the data's own behaviour achieved.
    - `action_change`: mean `|mu_finetuned(s) - mu_pretrained(s)|` on the rows (how far the
      actor moved from behaviour cloning).
    - `intention_kl`, `future_shift`, `q_shift`: how much the fine-tuned occupancy model uses
      its intention ([`IntentionDiagnostics`][], on one batch of the fine-tuning data): the
      posterior's KL summed over latent dimensions, and how far futures and Monte-Carlo Q move
      when only `z` changes, in units of their Monte-Carlo noise (0 if `z` is ignored).
    """

    reward_r2: np.ndarray
    q_correlation: np.ndarray
    q_bias: np.ndarray
    gpi_gain: np.ndarray
    action_change: np.ndarray
    intention_kl: np.ndarray
    future_shift: np.ndarray
    q_shift: np.ndarray


def demo_baseline_config(agent: Agent, config: PendulumDemoConfig):
    """A baseline's config in the demo: its defaults, with the demo's network widths, learning
    rate, batch size and discount, representations (`latent_dim` of CRL + IS, FB and HILP,
    `encoder_dims` of DINO) of the demo's widths, as their presets take them, and MBPO's model
    rollouts from every state of a batch (where the agent has such fields); then the demo's
    `baseline_overrides` for this agent."""
    shared = {
        "hidden_dims": config.infom.network.hidden_dims,
        "latent_dim": config.infom.network.hidden_dims[-1],
        "encoder_dims": config.infom.network.hidden_dims,
        "num_model_rollouts": config.infom.batch_size,
        "learning_rate": config.infom.learning_rate,
        "batch_size": config.infom.batch_size,
        "gamma": config.infom.gamma,
    }
    fields = {f.name for f in dataclasses.fields(agent.config_type)}
    baseline = agent.config_type(**{k: v for k, v in shared.items() if k in fields})
    prefix = f"{agent.name}."
    overrides = [item.removeprefix(prefix) for item in config.baseline_overrides if item.startswith(prefix)]
    if overrides:
        from ._presets import RunConfig, apply_overrides

        baseline, _ = apply_overrides(baseline, RunConfig(), overrides)
    return baseline


# --------------------------------------------------------------------------- Pendulum behaviours

# Pendulum-v1's dynamics (gymnax defaults): theta'' = 15 sin(theta) + 3 u, |u| <= 2 (u = 2 a),
# theta = 0 upright. Its energy E = theta'^2 / 2 + 15 cos(theta) is 15 at rest upright, and
# dE/dt = 3 u theta'.
_GRAVITY = 15.0
_GAIN = 3.0
_MAX_TORQUE = 2.0
_UPRIGHT_ENERGY = _GRAVITY


def _pendulum_state(obs: Float[Array, " 3"]) -> tuple[Array, Array, Array]:
    theta = jnp.arctan2(obs[1], obs[0])
    theta_dot = obs[2]
    energy = 0.5 * theta_dot**2 + _GRAVITY * obs[0]
    return theta, theta_dot, energy


def _wrap(angle: Array) -> Array:
    return jnp.mod(angle + jnp.pi, 2 * jnp.pi) - jnp.pi


def _direction(theta_dot: Array) -> Array:
    # sign(theta_dot) with sign(0) = 1, so that a pendulum at rest starts moving.
    return jnp.where(theta_dot >= 0.0, 1.0, -1.0)


def _swing_up_and_hold(obs: Float[Array, " 3"], target: float, pump_limit: float) -> Float[Array, " 1"]:
    """Pumps energy up to the upright level with at most `pump_limit` of the torque, then holds
    the pole at `target` radians with gravity compensation and PD."""
    theta, theta_dot, energy = _pendulum_state(obs)
    error = _wrap(theta - target)
    hold = (-_GRAVITY * jnp.sin(theta) / _GAIN - 8.0 * error - 4.0 * theta_dot) / _MAX_TORQUE
    pump = jnp.clip(0.5 * (_UPRIGHT_ENERGY - energy), -pump_limit, pump_limit) * _direction(theta_dot)
    near = jnp.cos(theta) > 0.9
    return jnp.clip(jnp.where(near, hold, pump), -1.0, 1.0)[None]


def _spin(obs: Float[Array, " 3"], direction: float) -> Float[Array, " 1"]:
    """Pushes only while the pole moves in `direction` (coasting otherwise): the swing grows until
    the pole goes over the top, then it spins at full torque."""
    _, theta_dot, _ = _pendulum_state(obs)
    along = theta_dot * direction >= 0.0
    return jnp.where(along, direction, 0.0)[None]


def _swing(obs: Float[Array, " 3"], energy: float) -> Float[Array, " 1"]:
    """Keeps the pendulum swinging at a fixed energy level (an amplitude below the top)."""
    _, theta_dot, current = _pendulum_state(obs)
    return (jnp.clip(0.5 * (energy - current), -1.0, 1.0) * _direction(theta_dot))[None]


def pendulum_behaviours() -> dict[str, Policy]:
    """Five distinct controllers for gymnax's `Pendulum-v1`, the "users" of a multi-intention dataset.

    Each maps one observation `(cos theta, sin theta, theta')` to an action in `[-1, 1]`
    (`theta = 0` is upright):

    - `"hold_left"` / `"hold_right"`: swing up by energy pumping at half torque, then hold the
        pole 0.25 rad (14 degrees) left / right of upright with gravity compensation and PD.
        The slow swing-up and the offset make them clearly worse than the task's optimum
        (a full-torque swing-up, then upright at rest).
    - `"spin_ccw"` / `"spin_cw"`: push only while moving counter-clockwise / clockwise until the
        pole goes over the top, then spin that way at full torque (passing upright fast).
    - `"swing"`: keep swinging through the bottom with amplitude about 90 degrees (energy level 0).

    Together they cover the upright region (holds and spins) and the swing-up, but none of
    them solves the task, so an offline RL method can beat behaviour cloning on their mixture.

    **Returns:** an ordered dict from name to policy; pass it (or its values) to
    [`collect_gymnax_dataset`][].
    """
    return {
        "hold_left": eqx.Partial(_swing_up_and_hold, target=0.25, pump_limit=0.5),
        "hold_right": eqx.Partial(_swing_up_and_hold, target=-0.25, pump_limit=0.5),
        "spin_ccw": eqx.Partial(_spin, direction=1.0),
        "spin_cw": eqx.Partial(_spin, direction=-1.0),
        "swing": eqx.Partial(_swing, energy=0.0),
    }


# --------------------------------------------------------------------------- data


def pendulum_state_reward(observations: Float[Array, "*batch 3"]) -> Float[Array, "*batch"]:
    """Pendulum's reward without its action cost: `-(theta^2 + 0.1 theta'^2)`, `theta` in `[-pi, pi)`.

    Pendulum-v1's own reward is `-(theta^2 + 0.1 theta'^2 + 0.001 u^2)` for the state
    *before* the step and the torque `u = 2 a`; the action term is at most 0.004 per step.
    """
    theta = jnp.arctan2(observations[..., 1], observations[..., 0])
    return -(jnp.square(theta) + 0.1 * jnp.square(observations[..., 2]))


def _split_episodes(dataset: Dataset, num_behaviours: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the first `first` episodes of every behaviour, and of the rest."""
    rows = np.arange(dataset.observations.shape[0]).reshape(num_behaviours, -1, _EPISODE_LENGTH)
    return rows[:, :first].reshape(-1), rows[:, first:].reshape(-1)


def _subset(dataset: Dataset, rows: np.ndarray, *, with_rewards: bool, source: str) -> Dataset:
    return Dataset.from_arrays(
        np.asarray(dataset.observations)[rows],
        np.asarray(dataset.actions)[rows],
        terminals=np.asarray(dataset.terminals)[rows],
        rewards=np.asarray(dataset.rewards)[rows] if with_rewards else None,
        masks=np.asarray(dataset.masks)[rows],
        source=source,
    )


def collect_pendulum_data(config: PendulumDemoConfig, *, key: PRNGKeyArray) -> tuple[Dataset, Dataset]:
    """The demo's two datasets, collected in one jitted call from [`pendulum_behaviours`][].

    **Returns:** `(pretrain, finetune)`: `config.pretrain_episodes` episodes per behaviour
    without rewards (reward-free, "many users"), and `config.finetune_episodes` other episodes
    per behaviour labelled with Pendulum's own per-row reward, which `collect_gymnax_dataset`
    computes from the observation of the row (the state *before* the step): it is InFOM's
    `r(s)` up to the action cost `0.001 u^2 <= 0.004` per step, which `r_phi(s)` cannot see
    and which the demo leaves in as a small label noise.
    """
    behaviours = pendulum_behaviours()
    episodes = config.pretrain_episodes + config.finetune_episodes
    data, _ = collect_gymnax_dataset(
        PENDULUM,
        behaviours,
        key=key,
        episodes_per_behaviour=episodes,
        episode_length=_EPISODE_LENGTH,
        action_noise=config.action_noise,
    )
    pretrain_rows, finetune_rows = _split_episodes(data, len(behaviours), config.pretrain_episodes)
    pretrain = _subset(data, pretrain_rows, with_rewards=False, source="pendulum-demo-pretrain")
    finetune = _subset(data, finetune_rows, with_rewards=True, source="pendulum-demo-finetune")
    return pretrain, finetune


# --------------------------------------------------------------------------- training


@eqx.filter_jit
def _init_seeds(agent: Agent, config, normalizer, keys: Array) -> TrainState:
    optim = make_optimizer(config)
    return eqx.filter_vmap(lambda key: init_state(agent, 3, 1, normalizer, config, optim, key=key))(keys)


@eqx.filter_jit
def _begin_finetuning_seeds(
    agent: Agent, config, states: TrainState, finetune: Dataset, keys: Array
) -> TrainState:
    return eqx.filter_vmap(
        lambda state, key: begin_finetuning(agent, state, config, dataset=finetune, key=key)
    )(states, keys)


def _train_seeds(
    agent: Agent,
    config,
    pretrain: Dataset,
    finetune: Dataset,
    normalizer,
    keys: tuple[Array, Array, Array, Array],
    pretrain_updates: int,
    finetune_updates: int,
    lap: Callable[[str], None] | None = None,
) -> tuple[TrainState, TrainState]:
    """Any agent on the demo's data with the demo's budget, every seed vmapped, through the
    common training layer (as `infom train --agent` runs it): `agent.init`, `pretrain_updates`
    updates of its pre-training loss on the reward-free data, then `finetune_updates` of its
    fine-tuning loss on the reward-labelled data. `keys` are the seeds' (init, pre-training,
    fine-tuning, task-inference) keys. Returns the pre-trained and the fine-tuned states."""
    init_keys, pretrain_keys, finetune_keys, task_keys = keys
    optim = make_optimizer(config)
    common = dict(config=config, optim=optim)
    states = _init_seeds(agent, config, normalizer, init_keys)
    pretrained, _ = _block(
        seeds_block(
            agent,
            agent.pretrain_loss,
            states,
            pretrain,
            keys=pretrain_keys,
            num_updates=pretrain_updates,
            first_step=jnp.int32(0),
            **common,
        )
    )
    if lap is not None:
        lap("pretrain")
    finetuned, _ = _block(
        seeds_block(
            agent,
            agent.finetune_loss,
            _begin_finetuning_seeds(agent, config, pretrained, finetune, task_keys),
            finetune,
            keys=finetune_keys,
            num_updates=finetune_updates,
            first_step=jnp.int32(pretrain_updates),
            **common,
        )
    )
    if lap is not None:
        lap("finetune")
    return pretrained, finetuned


def _with_actor(states: TrainState, actors: Actor) -> TrainState:
    return eqx.tree_at(lambda s: s.models.actor, states, actors)


# --------------------------------------------------------------------------- evaluation


class _Behaviour(eqx.Module):
    """The `index`-th of `policies`, so that all behaviours are evaluated in one vmapped call."""

    policies: tuple[Callable, ...]
    index: Int[Array, ""]

    def __call__(self, observation: Float[Array, " 3"]) -> Float[Array, " 1"]:
        branches = [lambda obs, policy=policy: policy(obs) for policy in self.policies]
        return jax.lax.switch(self.index, branches, observation)


@eqx.filter_jit
def _evaluate_states(states: TrainState, key: PRNGKeyArray, num_episodes: int) -> Array:
    """Mean return of `policy_actions(state, .)` for each of the stacked states, `[num_states]`."""

    def one(state):
        returns, _ = evaluate_gymnax(
            PENDULUM, eqx.Partial(policy_actions, state), key=key, num_episodes=num_episodes
        )
        return jnp.mean(returns)

    return eqx.filter_vmap(one)(states)


@eqx.filter_jit
def _evaluate_agent(agent: Agent, states: TrainState, key: PRNGKeyArray, num_episodes: int) -> Array:
    """Mean return of `agent.act` for each seed's state, `[num_seeds]` (the same episodes as
    every other policy: common random numbers)."""

    def one(state):
        policy = eqx.Partial(agent_actions, agent, state)
        returns, _ = evaluate_gymnax(PENDULUM, policy, key=key, num_episodes=num_episodes)
        return jnp.mean(returns)

    return eqx.filter_vmap(one)(states)


@eqx.filter_jit
def _evaluate_behaviours(policies, key: PRNGKeyArray, num_episodes: int) -> Array:
    def one(index):
        policy = _Behaviour(policies, index)
        returns, _ = evaluate_gymnax(PENDULUM, policy, key=key, num_episodes=num_episodes)
        return jnp.mean(returns)

    return jax.vmap(one)(jnp.arange(len(policies)))


def _discounted_returns(dataset: Dataset, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the discounted return-to-go within its episode and the number of steps left."""
    rewards = np.asarray(dataset.rewards, np.float64).reshape(-1, _EPISODE_LENGTH)
    returns = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[0])
    for t in range(_EPISODE_LENGTH - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    steps_left = np.broadcast_to(np.arange(_EPISODE_LENGTH, 0, -1), rewards.shape)
    return returns.reshape(-1), steps_left.reshape(-1)


@eqx.filter_jit
def _diagnostic_values(states, pretrained_actors, dataset, rows, key, config: InFOMConfig):
    """Per seed: `Q_hat` with encoded intentions, `min_heads Q_psi`, `r_phi` on `rows`, and the
    mean change of the actor's mean since pre-training."""
    batch = batch_at(dataset, rows)
    # More futures than the critic's targets use, so that the Monte-Carlo noise stays small.
    encoder_config = dataclasses.replace(
        config, critic_intentions="encoder", num_futures=max(config.num_futures, _DIAGNOSTIC_FUTURES)
    )

    def one(state, pretrained, key):
        clip = (state.normalizer.lower, state.normalizer.upper) if config.clip_futures else None
        q_behaviour = mc_q_targets(state.models, batch, key=key, config=encoder_config, clip=clip)
        q_critic = jnp.min(critic_values(state.models.critic, batch.observations, batch.actions), axis=-1)
        reward = jax.vmap(state.models.reward)(batch.observations)
        moved = jax.vmap(state.models.actor)(batch.observations) - jax.vmap(pretrained)(batch.observations)
        return q_behaviour, q_critic, reward, jnp.mean(jnp.abs(moved))

    num_seeds = jax.tree.leaves(eqx.filter(states, eqx.is_array))[0].shape[0]
    return eqx.filter_vmap(one)(states, pretrained_actors, jr.split(key, num_seeds))


def _diagnostics(
    states, pretrained_actors, dataset: Dataset, key: PRNGKeyArray, config: InFOMConfig, num_rows: int = 1024
) -> DemoDiagnostics:
    returns, steps_left = _discounted_returns(dataset, config.gamma)
    eligible = np.flatnonzero(steps_left > 3.0 / (1.0 - config.gamma))
    rows_key, q_key, usage_key = jr.split(key, 3)
    size = min(num_rows, len(eligible))
    rows = np.asarray(jr.choice(rows_key, jnp.asarray(eligible), (size,), replace=False))
    values = _diagnostic_values(states, pretrained_actors, dataset, jnp.asarray(rows), q_key, config)
    q_behaviour, q_critic, reward, change = (np.asarray(x, np.float64) for x in values)
    true_q = returns[rows]
    true_r = np.asarray(dataset.rewards, np.float64)[rows]
    r2 = 1.0 - np.mean(np.square(reward - true_r[None]), axis=1) / np.var(true_r)
    correlation = np.array([np.corrcoef(q, true_q)[0, 1] for q in q_behaviour])
    usage = seeds_diagnostics(INFOM, states, dataset, key=usage_key, config=config)
    return DemoDiagnostics(
        reward_r2=r2,
        q_correlation=correlation,
        q_bias=np.mean(q_behaviour - true_q[None], axis=1),
        gpi_gain=np.mean(q_critic - true_q[None], axis=1),
        action_change=change,
        intention_kl=np.asarray(usage.intention_kl, np.float64),
        future_shift=np.asarray(usage.future_shift, np.float64),
        q_shift=np.asarray(usage.q_shift, np.float64),
    )


# --------------------------------------------------------------------------- the demo


def _block(value):
    return jax.block_until_ready(value)


def run_pendulum_demo(
    *,
    config: PendulumDemoConfig = PENDULUM_DEMO,
    seed: int = 0,
    num_seeds: int | None = None,
    pretrain_updates: int | None = None,
    finetune_updates: int | None = None,
    eval_episodes: int | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Pre-trains InFOM on reward-free multi-user Pendulum data, fine-tunes it on the swing-up
    reward, and compares it with behaviour cloning, all seeds in one compiled program.

    1. Collects [`pendulum_behaviours`][] episodes in JAX ([`collect_pendulum_data`][]):
       reward-free pre-training data and a smaller reward-labelled fine-tuning set.
    2. Fits the z-score [`Normalizer`][] on the pre-training observations, pre-trains
       ([`pretrain_block`][], which also behaviour-clones the actor), resets the target field
       ([`start_finetuning`][]) and fine-tunes ([`finetune_block`][]) on the fine-tuning data;
       each phase is one `lax.scan`, `eqx.filter_vmap`ped over seeds.
    3. Trains the BC baseline with the same data and budget: the pre-trained actor, then
       `finetune_updates` more BC updates on the fine-tuning data.
    4. Evaluates every policy with [`evaluate_gymnax`][] (deterministic [`policy_actions`][],
       the same episodes for every policy) and the behaviours themselves.

    **Arguments:**

    - `config`: a [`PendulumDemoConfig`][]; [`PENDULUM_DEMO`][] by default.
    - `seed`: first seed; seeds `seed, ..., seed + num_seeds - 1` share the datasets, which
      are collected with `seed`.
    - `num_seeds`, `pretrain_updates`, `finetune_updates`, `eval_episodes`: override the
      config's values.
    - `log`: called with a line of progress after each phase (e.g. `print`); silent if `None`.

    **Returns:** a [`DemoResult`][].

    !!! Example

        ```python
        result = infom.run_pendulum_demo(config=infom.PENDULUM_DEMO_QUICK)
        print(infom.format_demo_result(result))
        ```
    """
    overrides = dict(
        num_seeds=num_seeds,
        pretrain_updates=pretrain_updates,
        finetune_updates=finetune_updates,
        eval_episodes=eval_episodes,
    )
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    say = log or (lambda message: None)
    infom_config = config.infom
    seconds = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        seconds[name] = time.perf_counter() - start - sum(seconds.values())
        say(f"{name}: {seconds[name]:.1f} s")

    # The key tree of `infom/_keys.py`: each phase is one block of the seeds' BLOCKS streams.
    data_key, eval_key, diag_key = (run_key(seed, s) for s in (DATA, EVALUATION, DIAGNOSTICS))
    init_keys = _keys.init_keys(seed, config.num_seeds)
    pretrain_keys, finetune_keys = (_keys.block_keys(seed, config.num_seeds, block) for block in range(2))

    pretrain_raw, finetune_raw = collect_pendulum_data(config, key=data_key)
    normalizer = fit_normalizer(pretrain_raw.observations)
    pretrain = normalize_dataset(pretrain_raw, normalizer)
    finetune = normalize_dataset(finetune_raw, normalizer)
    lap("collect")

    pretrained, finetuned = _train_seeds(
        INFOM,
        infom_config,
        pretrain,
        finetune,
        normalizer,
        (init_keys, pretrain_keys, finetune_keys, _keys.task_keys(seed, config.num_seeds)),
        config.pretrain_updates,
        config.finetune_updates,
        lap=lap,
    )
    pretrained_actors = pretrained.models.actor

    # Baselines on the same data, budget and evaluation episodes. Keys: baseline `a` (1, 2, ...)
    # takes blocks 10a (init), 10a + 1 (pre-training), 10a + 2 (fine-tuning) and 10a + 3 (the
    # task-inference batch) of the seeds' BLOCKS streams (InFOM uses blocks 0 and 1 and TASK).
    baseline_returns = {}
    for index, name in enumerate(config.baselines, start=1):
        agent = AGENTS[name]
        keys = tuple(_keys.block_keys(seed, config.num_seeds, 10 * index + k) for k in range(4))
        _, baseline_states = _train_seeds(
            agent,
            demo_baseline_config(agent, config),
            pretrain,
            finetune,
            normalizer,
            keys,
            config.pretrain_updates,
            config.finetune_updates,
        )
        baseline_returns[name] = np.asarray(
            _evaluate_agent(agent, baseline_states, eval_key, config.eval_episodes)
        )
        lap(name)

    policies = jax.tree.map(
        lambda *xs: jnp.concatenate(xs) if eqx.is_array(xs[0]) else xs[0],
        finetuned,
        _with_actor(finetuned, pretrained_actors),
    )
    returns = np.asarray(_evaluate_states(policies, eval_key, config.eval_episodes))
    returns = returns.reshape(2, config.num_seeds)
    behaviours = pendulum_behaviours()
    behaviour_returns = np.asarray(
        _evaluate_behaviours(tuple(behaviours.values()), eval_key, config.eval_episodes)
    )
    diagnostics = _diagnostics(finetuned, pretrained_actors, finetune, diag_key, infom_config)
    lap("evaluate")
    seconds["total"] = time.perf_counter() - start

    return DemoResult(
        config=config,
        seed=seed,
        infom_returns=returns[0],
        bc_returns=returns[1],
        baseline_returns=baseline_returns,
        behaviour_returns={name: float(r) for name, r in zip(behaviours, behaviour_returns, strict=True)},
        diagnostics=diagnostics,
        seconds=seconds,
        states=finetuned,
    )


def format_demo_result(result: DemoResult) -> str:
    """The demo's results as a Markdown table: per seed, then mean +- std and median."""
    lines = []
    header = [
        "policy",
        *(f"seed {result.seed + i}" for i in range(len(result.infom_returns))),
        "mean +- std",
        "median",
    ]
    rows = []
    labels = {
        "bc": "BC (+ fine-tuning data)",
        "iql": "IQL",
        "rebrac": "ReBRAC",
        "crl_is": "CRL + IS",
        "fb_iql": "FB + IQL",
        "hilp_iql": "HILP + IQL",
        "dino_rebrac": "DINO + ReBRAC",
        "mbpo_rebrac": "MBPO + ReBRAC",
    }
    for name, values in (
        ("InFOM (fine-tuned)", result.infom_returns),
        ("BC (pre-trained actor)", result.bc_returns),
        *((labels.get(agent, agent), values) for agent, values in result.baseline_returns.items()),
    ):
        rows.append(
            [
                name,
                *(f"{v:.1f}" for v in values),
                f"{np.mean(values):.1f} +- {np.std(values):.1f}",
                f"{np.median(values):.1f}",
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    behaviours = ", ".join(f"{name} {value:.0f}" for name, value in result.behaviour_returns.items())
    lines.append(f"behaviours (no action noise): {behaviours}")
    d = result.diagnostics
    lines.append(
        f"diagnostics (mean over seeds): reward R^2 {np.mean(d.reward_r2):.3f}, MC-Q vs return corr "
        f"{np.mean(d.q_correlation):.3f} (bias {np.mean(d.q_bias):+.1f}), "
        f"GPI gain {np.mean(d.gpi_gain):+.1f}, "
        f"actor change {np.mean(d.action_change):.3f}; intention: KL {np.mean(d.intention_kl):.2f} nats, "
        f"future shift {np.mean(d.future_shift):.3f}, Q shift {np.mean(d.q_shift):.2f}"
    )
    lines.append("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    return "\n".join(lines)
