"""The agent interface: a method is a `NamedTuple` of pure functions, like optax's
`GradientTransformation(init, update)`; no classes to subclass, no registry, no string-keyed
modules.

An agent's networks come in two pytrees: `online` (trained: the gradient is taken with respect
to it, the first argument of each loss) and `target` (EMA copies, or `None`; updated only by
`update_target`, never by the optimiser). Every loss is

    loss(online, target, batch, *, key, config, normalizer, update_actor) -> (scalar, metrics)

where `metrics` is a small `NamedTuple` of scalars the loss already computed, `normalizer` is the
run's observation [`Normalizer`][] (e.g. InFOM clips generated futures to its bounds) and
`update_actor` is the training layer's schedule, a boolean computed from an unbatched update
counter: the actor's terms are taken only when it is true (a `lax.cond`, so they cost nothing
otherwise).

An agent's config is a frozen dataclass with the authors' defaults and at least the fields the
training layer reads: `learning_rate`, `batch_size`, `actor_freq` (actor updates every that
many updates) and `tau` (the target EMA rate).
"""

from collections.abc import Callable
from typing import Any, NamedTuple


class Agent(NamedTuple):
    """An offline RL method as pure functions.

    **Fields:**

    - `name`: the name the command uses (`infom train --agent NAME`).
    - `config_type`: the agent's frozen config dataclass (its defaults are the authors').
    - `init(obs_dim, action_dim, config, *, key) -> (online, target)`: fresh networks.
    - `pretrain_loss`: the loss on reward-free data (`batch.rewards` is not used); `None` if
      the agent does not pre-train.
    - `finetune_loss`: the loss on reward-labelled data.
    - `update_target(target, online, config) -> target`: after every update (EMA).
    - `start_finetuning(online, target, config, *, batch) -> (online, target)`: once, between
      the phases; `batch` is the reward-labelled [`Batch`][] of `task_batch`, or `None`.
    - `act(online, observations) -> actions`: deterministic actions in `[-1, 1]` for a batch of
      *normalised* observations `[n, obs_dim]`.
    - `preset_config(preset) -> config`: the agent's config for a named [`Preset`][] (its
      domain's settings from the authors, its budget's network sizes); `None` if the agent
      has no presets.
    - `sample_batch(dataset, key, config) -> Batch`: how the agent's training batches are drawn
      from a [`Dataset`][] (e.g. with a context pair per transition); `None`:
      [`sample_batch`][] with `config.batch_size`.
    - `task_batch(dataset, key, config) -> Batch`: the reward-labelled batch `start_finetuning`
      infers the task from (e.g. FB's `z_r` and HILP's skill: the authors' 10,000 transitions
      of the fine-tuning data), drawn by the training layer with the seed's `TASK` key; `None`:
      `start_finetuning` gets `batch=None`.
    - `diagnose(online, target, batch, *, key, config, normalizer) -> metrics`: measurements
      of the models that no loss computes (a `NamedTuple` of scalars), taken once per training
      block by the run and written to `diagnostics.csv`; `None` if the agent has none.
    """

    name: str
    config_type: type
    init: Callable[..., tuple[Any, Any]]
    pretrain_loss: Callable[..., tuple[Any, tuple]] | None
    finetune_loss: Callable[..., tuple[Any, tuple]]
    update_target: Callable[[Any, Any, Any], Any]
    start_finetuning: Callable[[Any, Any, Any], tuple[Any, Any]]
    act: Callable[[Any, Any], Any]
    preset_config: Callable[[Any], Any] | None = None
    diagnose: Callable[..., tuple] | None = None
    sample_batch: Callable[..., Any] | None = None
    task_batch: Callable[..., Any] | None = None
