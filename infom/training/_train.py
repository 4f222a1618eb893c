"""The training layer, common to every agent: a [`TrainState`][] over an agent's networks, one
update, a block of updates in one `lax.scan`, and the actor's update schedule.

It knows no agent: it calls the pure functions of an [`Agent`][] (`infom/agents/`), so InFOM
and its baselines share every line of it, and of the run loop built on it (`infom/_run.py`).
"""

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Bool, Float, Int, Key, PRNGKeyArray, PyTree

from ..data._dataset import Dataset, Normalizer, sample_batch
from ._sharding import SEEDS, is_single_device, shard_batch


class TrainState(eqx.Module):
    """Everything a run updates, as one pytree.

    **Fields:**

    - `models`: the agent's online networks (for InFOM, the [`Models`][]: encoder, field,
      reward, critic, actor); gradients are taken with respect to these only.
    - `target`: the agent's target networks, updated by its `update_target` (for InFOM, the
      EMA target vector field `v_bar`), or `None`.
    - `opt_state`: the optimiser state of `models` (one Adam over all networks, as in the
      reference implementation, carried from pre-training into fine-tuning).
    - `normalizer`: the observation [`Normalizer`][] fitted on the pre-training data; its
      `lower`/`upper` bound InFOM's generated futures, and policies normalise raw
      observations with it.
    - `step`: number of updates applied so far (pre-training and fine-tuning together).
    """

    models: PyTree
    target: PyTree
    opt_state: PyTree
    normalizer: Normalizer
    step: Int[Array, ""]


@functools.lru_cache(maxsize=32)
def make_optimizer(config: Any) -> optax.GradientTransformation:
    """Adam with the config's `learning_rate` (the optimiser of the paper and of its baselines).

    Cached per config, so that compiled blocks (which take the optimiser as a static
    argument) are reused across runs with equal configs.
    """
    return optax.adam(config.learning_rate)


def init_state(
    agent: Any,
    obs_dim: int,
    action_dim: int,
    normalizer: Normalizer,
    config: Any,
    optim: optax.GradientTransformation,
    *,
    key: PRNGKeyArray,
) -> TrainState:
    """A fresh [`TrainState`][] of `agent`: `agent.init` networks and a fresh optimiser state.

    Vmap it over keys (`eqx.filter_vmap`) to create the states of several seeds at once.
    """
    models, target = agent.init(obs_dim, action_dim, config, key=key)
    return TrainState(
        models=models,
        target=target,
        opt_state=optim.init(eqx.filter(models, eqx.is_array)),
        normalizer=normalizer,
        step=jnp.zeros((), dtype=jnp.int32),
    )


def begin_finetuning(
    agent: Any,
    state: TrainState,
    config: Any,
    *,
    dataset: Dataset | None = None,
    key: PRNGKeyArray | None = None,
) -> TrainState:
    """`agent.start_finetuning` applied to the state's networks, once between the two phases.

    An agent that infers its task from reward-labelled data (`agent.task_batch`, e.g. FB's
    `z_r = E[r(s) B(s)]`) gets the batch `agent.task_batch(dataset, key, config)`, drawn here
    from the fine-tuning `dataset` with the seed's `TASK` key (`infom.training._keys.task_keys`); the other
    agents get `batch=None`, and `dataset` and `key` are then unused.
    """
    batch = None
    if agent.task_batch is not None:
        if dataset is None or key is None:
            raise ValueError(
                f"agent {agent.name!r} infers its task from reward-labelled data: "
                "begin_finetuning needs `dataset=` (the fine-tuning data) and `key=`"
            )
        batch = agent.task_batch(dataset, key, config)
    models, target = agent.start_finetuning(state.models, state.target, config, batch=batch)
    return TrainState(models, target, state.opt_state, state.normalizer, state.step)


def actor_schedule(step: Int[Array, ""], config: Any) -> Bool[Array, ""]:
    """Whether the update that follows `step` updates the actor: `(step + 1) % actor_freq == 0`."""
    return (step + 1) % config.actor_freq == 0


def train_step(
    agent: Any,
    loss_fn: Callable[..., tuple[Any, tuple]],
    state: TrainState,
    batch: PyTree,
    *,
    key: PRNGKeyArray,
    config: Any,
    optim: optax.GradientTransformation,
    update_actor: Bool[Array, ""] | bool | None = None,
) -> tuple[TrainState, tuple]:
    """One update: gradients of `loss_fn` (the agent's `pretrain_loss` or `finetune_loss`)
    with respect to `state.models` only, an optimiser step, then `agent.update_target`.

    `update_actor` defaults to [`actor_schedule`][]`(state.step)`. Under a vmap over seeds
    `state.step` is batched, which turns the actor's `lax.cond` into a select that runs the
    actor terms on every update; the blocks therefore pass it from an unbatched counter.
    """
    if update_actor is None:
        update_actor = actor_schedule(state.step, config)
    grads, metrics = eqx.filter_grad(
        lambda models: loss_fn(
            models,
            state.target,
            batch,
            key=key,
            config=config,
            normalizer=state.normalizer,
            update_actor=update_actor,
        ),
        has_aux=True,
    )(state.models)
    params = eqx.filter(state.models, eqx.is_array)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        updates, opt_state = optim.update(grads, state.opt_state, params)
    models = eqx.apply_updates(state.models, updates)
    new_state = TrainState(
        models=models,
        target=agent.update_target(state.target, models, config),
        opt_state=opt_state,
        normalizer=state.normalizer,
        step=state.step + 1,
    )
    return new_state, metrics


def _agent_batch(agent: Any, dataset: Dataset, key: PRNGKeyArray, config: Any) -> PyTree:
    """A training batch as the agent draws it (`agent.sample_batch`, e.g. a [`Batch`][] with goals),
    or [`sample_batch`][]."""
    if agent.sample_batch is not None:
        return agent.sample_batch(dataset, key, config)
    return sample_batch(dataset, key, config.batch_size)


def train_block(
    agent: Any,
    loss_fn: Callable[..., tuple[Any, tuple]],
    state: TrainState,
    dataset: Dataset,
    *,
    key: PRNGKeyArray,
    num_updates: int,
    config: Any,
    optim: optax.GradientTransformation,
    first_step: Int[Array, ""] | None = None,
    mesh: Mesh | None = None,
) -> tuple[TrainState, tuple]:
    """`num_updates` [`train_step`][]s on batches sampled in-jit from `dataset`, as one
    `lax.scan`; returns the final state and every update's metrics (stacked).

    Keys: `split(key, num_updates)[u]` is update `u`'s, split into `(batch, loss)`.
    `first_step` (default `state.step`) counts the updates done before the block: when
    vmapping over seeds, pass it unbatched (it is the same for every seed), so that the
    actor's schedule stays a branch instead of a select that runs both sides. With a `mesh`
    ([`make_mesh`][]), each sampled batch is split over its `data` axis (the batch is the same
    whatever the mesh: it is drawn from the same key).
    """
    if first_step is None:
        first_step = state.step
    steps = first_step + jnp.arange(num_updates, dtype=jnp.int32)

    def body(state, inputs):
        key, step = inputs
        batch_key, step_key = jr.split(key)
        batch = shard_batch(_agent_batch(agent, dataset, batch_key, config), mesh)
        return train_step(
            agent,
            loss_fn,
            state,
            batch,
            key=step_key,
            config=config,
            optim=optim,
            update_actor=actor_schedule(step, config),
        )

    return jax.lax.scan(body, state, (jr.split(key, num_updates), steps))


def agent_actions(
    agent: Any, state: TrainState, observations: Float[Array, "*batch obs_dim"]
) -> Float[Array, "*batch action_dim"]:
    """Deterministic evaluation actions `agent.act(normalize(s))` for raw observations."""
    normalized = state.normalizer.normalize(observations)
    lead = observations.shape[:-1]
    actions = agent.act(state.models, normalized.reshape(-1, observations.shape[-1]))
    return actions.reshape(lead + actions.shape[-1:])


def seeds_block(
    agent: Any,
    loss_fn: Callable[..., tuple[Any, tuple]],
    states: TrainState,
    dataset: Dataset,
    *,
    keys: Key[Array, " num_seeds"],
    num_updates: int,
    config: Any,
    optim: optax.GradientTransformation,
    first_step: Int[Array, ""],
    mesh: Mesh | None = None,
    seed_batch: int | None = None,
) -> tuple[TrainState, tuple]:
    """[`train_block`][] for every seed in one compiled program, over the stacked `states` and
    `keys` (one per seed), with `first_step` shared by the seeds (unbatched, so the actor's
    schedule stays a branch). Returns the new states and every seed's metrics
    `[num_seeds, num_updates]`.

    `seed_batch` seeds are vmapped together and such groups run one after another inside the
    program (`lax.map` with `batch_size`); `None` (the default) vmaps all of them. The updates are
    the same either way; only their cost differs. Vmapped seeds share each kernel launch, which
    pays where one seed leaves the device idle (accelerators, small networks); on a CPU whose
    cores one seed's matrix products already fill, a vmapped seed's fine-tuning update costs
    more than a lone seed's (`benchmarks/RESULTS.md`), so the CPU presets run one at a time
    (`seed_batch=1`).

    With a `mesh` ([`make_mesh`][]; `states` placed with [`place_states`][], `dataset` with
    [`place_replicated`][]) the seed axis is split over the mesh's `seeds` axis
    (`spmd_axis_name`; `seed_batch` then counts the seeds of one device) and every batch over its
    `data` axis; the numbers are one device's up to the order of floating-point reductions."""
    if seed_batch is not None and (
        not isinstance(seed_batch, int) or isinstance(seed_batch, bool) or seed_batch < 1
    ):
        raise ValueError(f"seeds_block: `seed_batch` must be a positive integer or None, got {seed_batch!r}")
    # Checked here, outside the compiled function: its cache would take `True` for `1`.
    return _seeds_block(
        agent,
        loss_fn,
        states,
        dataset,
        keys=keys,
        num_updates=num_updates,
        config=config,
        optim=optim,
        first_step=first_step,
        mesh=mesh,
        seed_batch=seed_batch,
    )


@eqx.filter_jit
def _seeds_block(
    agent, loss_fn, states, dataset, *, keys, num_updates, config, optim, first_step, mesh, seed_batch
):
    arrays, static = eqx.partition(states, eqx.is_array)

    def one_seed(arrays, key):
        new_state, metrics = train_block(
            agent,
            loss_fn,
            eqx.combine(arrays, static),
            dataset,
            key=key,
            num_updates=num_updates,
            config=config,
            optim=optim,
            first_step=first_step,
            mesh=mesh,
        )
        return eqx.filter(new_state, eqx.is_array), metrics

    def device_seeds(arrays, keys):
        """The seeds of one device: vmapped in groups of `seed_batch`, the groups in sequence."""
        num_seeds = keys.shape[0]
        if seed_batch is None or seed_batch >= num_seeds:
            return jax.vmap(one_seed)(arrays, keys)
        return jax.lax.map(
            lambda args: one_seed(*args), (arrays, keys), batch_size=None if seed_batch == 1 else seed_batch
        )

    if is_single_device(mesh):
        new_arrays, metrics = device_seeds(arrays, keys)
    else:
        # [num_seeds, ...] -> [seed devices, seeds per device, ...]: each device's contiguous
        # block of seeds (as `place_states` splits them) is one row, mapped by `device_seeds`.
        devices = mesh.shape[SEEDS]
        split = lambda x: x.reshape(devices, x.shape[0] // devices, *x.shape[1:])
        merge = lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        new_arrays, metrics = jax.vmap(device_seeds, spmd_axis_name=SEEDS)(
            jax.tree.map(split, arrays), jax.tree.map(split, keys)
        )
        new_arrays, metrics = jax.tree.map(merge, (new_arrays, metrics))
    return eqx.combine(new_arrays, static), metrics


@eqx.filter_jit
def seeds_diagnostics(
    agent: Any,
    states: TrainState,
    dataset: Dataset,
    *,
    key: PRNGKeyArray,
    config: Any,
) -> tuple:
    """`agent.diagnose` for every seed of the stacked `states`, on one batch of `dataset` shared
    by the seeds (common random numbers: the seeds' numbers differ only by their models).
    `key` is split into `(batch, measurement)`. Returns the agent's diagnostics, each field
    `[num_seeds]`."""
    batch_key, measure_key = jr.split(key)
    batch = _agent_batch(agent, dataset, batch_key, config)
    return eqx.filter_vmap(
        lambda state: agent.diagnose(
            state.models, state.target, batch, key=measure_key, config=config, normalizer=state.normalizer
        )
    )(states)
