"""How an ensemble's heads are combined into one value: the objects `InFOMConfig.q_aggregation` holds."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def min_heads(q: Float[Array, "*batch num_heads"]) -> Float[Array, "*batch"]:
    """`min_k Q_k`: the pessimistic value of the ensemble (the paper's and the authors' choice)."""
    return jnp.min(q, axis=-1)


def mean_heads(q: Float[Array, "*batch num_heads"]) -> Float[Array, "*batch"]:
    """`mean_k Q_k`: the ensemble's average."""
    return jnp.mean(q, axis=-1)
