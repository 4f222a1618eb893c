"""Typed containers shared by the losses, the samplers and the training steps."""

import equinox as eqx
from jaxtyping import Array, Float


class Batch(eqx.Module):
    """A batch of SARSA transitions `(s, a, r, s', a', mask)`.

    `(s', a')` is the next state-action pair *of the same episode*; `rewards` are `r(s)` for
    the fine-tuning task (zeros for reward-free data) and `masks` are `1 - success`.
    All fields share the leading `batch` axis; constructing a `Batch` with inconsistent
    shapes raises an error that names the field.

    `context_observations` / `context_actions` (optional) are another pair `(s_c, a_c)` of the
    same episode, for encoders that infer the intention from it instead of from `(s', a')`
    (see [`sample_batch_with_context`][]).
    """

    observations: Float[Array, "batch obs_dim"]
    actions: Float[Array, "batch action_dim"]
    next_observations: Float[Array, "batch obs_dim"]
    next_actions: Float[Array, "batch action_dim"]
    rewards: Float[Array, " batch"]
    masks: Float[Array, " batch"]
    context_observations: Float[Array, "batch obs_dim"] | None = None
    context_actions: Float[Array, "batch action_dim"] | None = None
