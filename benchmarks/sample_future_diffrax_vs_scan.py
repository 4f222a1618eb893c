"""What does diffrax cost over a hand-written `lax.scan` Euler loop in `sample_future`, and what
does precomputing the field's conditioning save?

The critic's call: 16 futures for each of 256 states (obs 28, action 5), one intention per state
shared by its futures, 10 Euler steps, drawn with the same key (so the same noise) by:

- `sample_future (diffrax)`: `infom.sample_future(field, s, a, z, key=key, shape=(16, 256))`,
  which computes the first layer's conditioning part `field.condition(s, a, z)` once per state
  and reuses it for all 10 steps x 16 futures;
- `scan, split`: the same math as a hand-written `lax.scan` over the 10 Euler steps, with the
  conditioning computed once per state and laid out as `solve_flow` does (futures and states
  flattened into one batch axis, the conditioning broadcast to it);
- `scan, split, nested vmap`: the same, vmapped over futures and over states in turn with the
  conditioning left un-broadcast (a natural way to write it; only the layout differs);
- `scan, field(t, x, s, a, z)`: a scan calling the field on the full inputs per step per
  future (`s, a, z` broadcast to every future), as user code would (XLA may hoist the invariant
  conditioning out of the loop);
- `scan, unsplit first layer` and `solve_flow, unsplit first layer`: the field evaluated as one
  MLP on the concatenation `[x, t, s, a, z]` per step per future (the reference implementation's
  cost; the first layer's weight is the split layer's blocks side by side, so the math is equal).

All outputs are asserted equal up to float32 rounding. Every function is jitted and compiled first;
times are medians of `--repeat` calls (`timeit.repeat(number=1)`), the variants timed in turn
(round robin) so that a change in machine load hits them alike; ratios are from the same run.
Two field sizes: the paper's 4x512 with latent 512, and 3x256 with latent 128 (random init).

Run: `python benchmarks/sample_future_diffrax_vs_scan.py` (about 2 minutes on 2 CPU cores).
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _common import header, interleaved_medians, print_table
from jaxtyping import Array, Float, ScalarLike

import infom


OBS_DIM, ACTION_DIM, NUM_STATES, NUM_FUTURES, NUM_STEPS = 28, 5, 256, 16, 10
SIZES = {"4x512, latent 512": ((512,) * 4, 512), "3x256, latent 128": ((256,) * 3, 128)}


class UnsplitField(infom.AbstractVectorField):
    """`v(t, x, s, a, z) = MLP([x, t, s, a, z])` with one concatenated first-layer matmul; the
    conditioning is the raw `[s, a, z]`, so nothing is precomputed."""

    weight: Float[Array, "width in_dim"]
    field: infom.VectorField

    def __init__(self, field: infom.VectorField):
        self.weight = jnp.concatenate([field.weight_x, field.weight_t[:, None], field.weight_cond], axis=1)
        self.field = field

    def condition(self, observation, action, intention):
        return jnp.concatenate([observation, action, intention])

    def velocity(
        self, t: ScalarLike, x: Float[Array, " obs_dim"], conditioning: Float[Array, " cond_dim"]
    ) -> Float[Array, " obs_dim"]:
        t = jnp.asarray(t, dtype=x.dtype)[None]
        h = jax.nn.gelu(self.weight @ jnp.concatenate([x, t, conditioning]) + self.field.bias)
        return self.field.trunk(h)


def _noise(key, s):
    return jr.normal(key, (NUM_FUTURES, *s.shape), dtype=s.dtype)  # as `sample_future` draws it


def _euler_scan(velocity, x):
    """`x_{k+1} = x_k + v(t_k, x_k) (t_{k+1} - t_k)` on `solve_flow`'s grid `linspace(0, 1, n + 1)`."""
    ts = jnp.linspace(0.0, 1.0, NUM_STEPS + 1)

    def step(x, k):
        return x + velocity(ts[k], x) * (ts[k + 1] - ts[k]), None

    return jax.lax.scan(step, x, jnp.arange(NUM_STEPS))[0]


@jax.jit
def sample_diffrax(field, s, a, z, key):
    return infom.sample_future(field, s, a, z, key=key, shape=(NUM_FUTURES, s.shape[0]))


@jax.jit
def sample_diffrax_unsplit(field, s, a, z, key):
    return infom.sample_future(UnsplitField(field), s, a, z, key=key, shape=(NUM_FUTURES, s.shape[0]))


def _flat(x):
    """`[num_futures, batch, d] -> [num_futures * batch, d]`: `solve_flow`'s layout."""
    return x.reshape(-1, x.shape[-1])


def _per_future(x, num_states):
    """`[batch, d]` broadcast (materialised) to every future, in the flat layout."""
    return _flat(jnp.broadcast_to(x, (NUM_FUTURES, num_states, x.shape[-1])))


@jax.jit
def sample_scan_split(field, s, a, z, key):
    noise = _noise(key, s)
    conditioning = _per_future(jax.vmap(field.condition)(s, a, z), s.shape[0])  # once per state
    velocity = jax.vmap(field.velocity, in_axes=(None, 0, 0))
    return _euler_scan(lambda t, x: velocity(t, x, conditioning), _flat(noise)).reshape(noise.shape)


@jax.jit
def sample_scan_split_nested(field, s, a, z, key):
    conditioning = jax.vmap(field.condition)(s, a, z)  # once per state, not broadcast
    per_state = jax.vmap(field.velocity, in_axes=(None, 0, 0))
    per_future = jax.vmap(per_state, in_axes=(None, 0, None))
    return _euler_scan(lambda t, x: per_future(t, x, conditioning), _noise(key, s))


@jax.jit
def sample_scan_call(field, s, a, z, key):
    noise = _noise(key, s)
    s_f, a_f, z_f = (_per_future(v, s.shape[0]) for v in (s, a, z))
    call = jax.vmap(field, in_axes=(None, 0, 0, 0, 0))
    return _euler_scan(lambda t, x: call(t, x, s_f, a_f, z_f), _flat(noise)).reshape(noise.shape)


@jax.jit
def sample_scan_unsplit(field, s, a, z, key):
    noise = _noise(key, s)
    unsplit = UnsplitField(field)
    c = _per_future(jnp.concatenate([s, a, z], axis=-1), s.shape[0])
    velocity = jax.vmap(unsplit.velocity, in_axes=(None, 0, 0))
    return _euler_scan(lambda t, x: velocity(t, x, c), _flat(noise)).reshape(noise.shape)


DIFFRAX, SCAN = "sample_future (diffrax), split", "scan, split"
VARIANTS = {
    DIFFRAX: sample_diffrax,
    SCAN: sample_scan_split,
    "scan, split, nested vmap": sample_scan_split_nested,
    "scan, field(t, x, s, a, z)": sample_scan_call,
    "scan, unsplit first layer": sample_scan_unsplit,
    "solve_flow, unsplit first layer": sample_diffrax_unsplit,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per variant (median)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    header(
        f"{NUM_FUTURES} futures x {NUM_STATES} states, obs {OBS_DIM}, action {ACTION_DIM}, {NUM_STEPS} Euler "
        f"steps, float32; median of {args.repeat} calls after compiling, variants timed in turn"
    )
    rows, summary = [], []
    for size, (hidden, latent) in SIZES.items():
        field = infom.VectorField(OBS_DIM, ACTION_DIM, latent, hidden, key=jr.key(args.seed))
        s_key, a_key, z_key, key = jr.split(jr.key(args.seed + 1), 4)
        s = jr.normal(s_key, (NUM_STATES, OBS_DIM))
        a = jr.uniform(a_key, (NUM_STATES, ACTION_DIM), minval=-1.0, maxval=1.0)
        z = jr.normal(z_key, (NUM_STATES, latent))
        inputs = (field, s, a, z, key)
        outputs = {name: np.asarray(fn(*inputs)) for name, fn in VARIANTS.items()}
        reference = outputs["sample_future (diffrax), split"]
        for name, out in outputs.items():
            np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4, err_msg=name)
        calls = {name: functools.partial(fn, *inputs) for name, fn in VARIANTS.items()}
        ms = {name: 1e3 * seconds for name, seconds in interleaved_medians(calls, repeat=args.repeat).items()}
        base = ms[SCAN]
        for name in VARIANTS:
            diff = float(np.max(np.abs(outputs[name] - reference)))
            rows.append((size, name, f"{ms[name]:.2f}", f"{ms[name] / base:.2f}", f"{diff:.1e}"))
        summary.append(
            f"{size}: diffrax / scan = {ms[DIFFRAX] / base:.2f}; unsplit / split: "
            f"scan {ms['scan, unsplit first layer'] / base:.2f}, "
            f"diffrax {ms['solve_flow, unsplit first layer'] / ms[DIFFRAX]:.2f}; "
            f"field(t, x, s, a, z) per step / split: {ms['scan, field(t, x, s, a, z)'] / base:.2f}"
        )
    print_table(("field", "sampler", "ms / call", "vs scan, split", "max |diff| vs diffrax"), rows)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
