"""The key tree of a run: every random draw of a run comes from its seeds through these functions.

Each seed `s` of a run (the `seed` column of every CSV) has its own root `jax.random.key(s)`,
so a seed's numbers do not depend on which other seeds are trained beside it. From the root,
children are taken with `fold_in` only, at fixed indices:

```
jax.random.key(s)
├── fold_in(., INIT = 0)        network initialisation (init_models splits it per network)
├── fold_in(., BLOCKS = 1)      training: fold_in(., b) is block b, split into its K updates,
│                               each update split into (batch, loss)
├── fold_in(., TASK = 3)        the reward-labelled batch an agent infers its task from between
│                               the phases (the agent's `task_batch`; e.g. FB's `z_r`)
└── fold_in(., RUN = 2)         draws shared by all seeds of a run, taken from the run's first
                                seed only: fold_in(., DATA = 0) collects data,
                                fold_in(., EVALUATION = 1) draws evaluation episodes (the same
                                for every policy: common random numbers),
                                fold_in(., DIAGNOSTICS = 2) samples diagnostics:
                                fold_in(., b) those after block b, split into
                                (batch, measurement)
```

Why only `fold_in`: with JAX's partitionable threefry (the default), `split(k, n)[i]` equals
`fold_in(k, i)`, so a node that is both split and folded into reuses keys. Every node of the tree
is therefore either folded into (at distinct indices) or split (once), never both, and each leaf
feeds exactly one draw. OGBench evaluations seed their environments with integers, not keys:
seed `s` uses episode seeds `10_000 * (s + 1) + episode`.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Key


INIT, BLOCKS, RUN, TASK = 0, 1, 2, 3
DATA, EVALUATION, DIAGNOSTICS = 0, 1, 2


def seed_roots(seed: int, num_seeds: int) -> Key[Array, " num_seeds"]:
    """The roots `key(seed), ..., key(seed + num_seeds - 1)` of a run's seeds, stacked."""
    return jnp.stack([jr.key(seed + i) for i in range(num_seeds)])


def child(roots: Key[Array, "*seeds"], index: int) -> Key[Array, "*seeds"]:
    """`fold_in(root, index)` for every root (`INIT` or `BLOCKS`)."""
    return jax.vmap(lambda root: jr.fold_in(root, index))(roots.reshape(-1)).reshape(roots.shape)


def init_keys(seed: int, num_seeds: int) -> Key[Array, " num_seeds"]:
    """Each seed's initialisation key."""
    return child(seed_roots(seed, num_seeds), INIT)


def task_keys(seed: int, num_seeds: int) -> Key[Array, " num_seeds"]:
    """Each seed's key of the task-inference batch drawn once between the phases."""
    return child(seed_roots(seed, num_seeds), TASK)


def block_keys(seed: int, num_seeds: int, block_index: int) -> Key[Array, " num_seeds"]:
    """Each seed's key of training block `block_index` (a pure function of seed and block, so a
    resumed run draws exactly the numbers of an uninterrupted one)."""
    blocks = child(seed_roots(seed, num_seeds), BLOCKS)
    return jax.vmap(lambda k: jr.fold_in(k, block_index))(blocks)


def run_key(seed: int, stream: int) -> Key[Array, ""]:
    """A draw shared by every seed of a run whose first seed is `seed` (`DATA`, `EVALUATION` or
    `DIAGNOSTICS`)."""
    return jr.fold_in(jr.fold_in(jr.key(seed), RUN), stream)


def diagnostics_key(seed: int, block_index: int) -> Key[Array, ""]:
    """The key of the diagnostics taken after training block `block_index`, shared by the seeds
    of a run whose first seed is `seed`."""
    return jr.fold_in(run_key(seed, DIAGNOSTICS), block_index)
