"""Helpers on pytrees shared by the tests."""

import equinox as eqx
import jax
import jax.numpy as jnp


def is_zero(tree) -> bool:
    """Whether every floating array of `tree` (e.g. a gradient) is zero everywhere."""
    return all(bool(jnp.all(leaf == 0)) for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array)))
