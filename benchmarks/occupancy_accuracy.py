"""How accurate is the occupancy learned by `sarsa_flow_loss` against exact answers, and
against Monte-Carlo flow matching with the same network and budget?

Two probe problems whose discounted occupancy is known exactly (`infom.data._probes`):

- `1-D`: `LinearGaussianProbe` (`s' = 0.8 s + 0.5 a + 0.3 w`, random actions), evaluated at
  `(s, a)` in `{(1.5, 1.0), (-1.0, -0.5), (0.0, 0.0)}`.
- `2-goal`: `TwoIntentionProbe`, a 2-D point pulled towards one of two goals by a latent user
  that persists through the episode; the data mixes both users, and its `(s, a)` say nothing
  about the user while `s'` shows the user's pull (an encoder of `(s', a')` can tell the users
  apart with a Bayes error of 2.4%). Evaluated at three `(s, a)` near the goals' midpoint:
  `user u` conditions on intentions encoded from `(s', a')` drawn from user `u`'s own
  dynamics and compares with user `u`'s exact occupancy (`vs marginal` compares the same
  samples with the exact marginal occupancy: conditioning works if `distance` is near the floor
  and `vs marginal` is near the yardstick printed above the table); `marginal` encodes
  `(s', a')` drawn from both users half and half and compares with the exact marginal (the
  equal mixture of the users' occupancies); `vs switching` compares the same samples with the
  occupancy of the chain that redraws the user at every step, the SARSA fixed point of a model
  that ignores the intention.

Methods, all with the same network (vector field 3x64 GELU, intention encoder 3x64, latent 2),
the same number of updates of batch 256, Adam 1e-3, lambda_KL 0.05 and fresh transitions from the
exact process at every update:

- `infom`: `sarsa_flow_loss(target_form="infom")` (the default), EMA target with `--tau`;
- `td2`: `sarsa_flow_loss(target_form="td2")`. In both, `z` is stop-gradient in the future
  term (as in the reference code), so the encoder learns from the current term and the KL only;
- `infom-zgrad`: as `infom` with `future_intention=lambda z: z`: `z` keeps its gradient where
  it conditions the online field in the future term;
- `infom-context` (2-goal only): as `infom-zgrad`, with the intention encoded from a context
  pair of the same user drawn independently of the transition
  (`sarsa_flow_loss(..., context=...)`, `TwoIntentionProbe.sample_context_batch`) instead of
  the transition's own `(s', a')`; evaluated with intentions encoded from such pairs;
  `td2-context`: the same with the TD^2 future term;
- `mc`: Monte-Carlo conditional flow matching: the target `x_1 = s_k` is a future state of the
  same trajectory, `k ~ Geometric(1 - gamma)` on `{0, 1, ...}` (`k = 0` with probability
  `1 - gamma`), drawn with `sample_future_batch` (the exact law of the simulated process);
  `z ~ p_e(z | s', a')` with gradients into the encoder; loss
  `|| v(t, x_t, s, a, z) - (x_1 - x_0) ||^2 + lambda_KL KL / latent_dim`.

Metric: Wasserstein-1 between 4,000 model samples and 4,000 exact samples per `(s, a)` (1-D), or
sliced Wasserstein-1 (128 random directions) for 2-D, averaged over the three `(s, a)`. `floor`
is the same distance between two independent exact sample sets of the same size (the
Monte-Carlo floor). Model samples use 100 Euler steps, so the solver's error does not hide the
model's; the `10 Euler` column uses the same noise with the library's default 10 steps.
`train s` is the training time after compilation. One seed per row.

Run: `python benchmarks/occupancy_accuracy.py` (full table, 10,000 updates per model) or
`--quick` (3,000 updates). `--kl-weight`, `--latent`, `--tau` change every method's setting;
`--warmup-steps U --warmup-gamma G` first trains `U` updates at discount `G` (an annealed discount).
"""

import argparse
import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from _common import header, print_table
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

import infom
from infom.data._probes import LinearGaussianProbe, TwoIntentionProbe, sliced_wasserstein, wasserstein_1d


METHODS = ("infom", "td2", "infom-zgrad", "infom-context", "td2-context", "mc")
NUM_SAMPLES = 4000
HIDDEN, LATENT, BATCH_SIZE, LEARNING_RATE, KL_WEIGHT = (64, 64, 64), 2, 256, 1e-3, 0.05
FINE_STEPS, DEFAULT_STEPS = 100, 10


class Problem(NamedTuple):
    name: str
    obs_dim: int
    sample_batch: Callable[[PRNGKeyArray, int], infom.Batch]
    sample_future_batch: Callable[[PRNGKeyArray, int, Scalar], tuple[infom.Batch, Array]]
    points: tuple[tuple[np.ndarray, np.ndarray], ...]


LINEAR = LinearGaussianProbe()
TWO = TwoIntentionProbe()
PROBLEMS = (
    Problem(
        "1-D",
        1,
        LINEAR.sample_batch,
        LINEAR.sample_future_batch,
        tuple((np.array([s]), np.array([a])) for s, a in ((1.5, 1.0), (-1.0, -0.5), (0.0, 0.0))),
    ),
    Problem(
        "2-goal",
        2,
        TWO.sample_batch,
        TWO.sample_future_batch,
        tuple(
            (TWO.center + np.array(ds), np.array(a))
            for ds, a in (((0.0, 0.0), (0.0, 0.0)), ((0.3, -0.2), (0.2, 0.1)), ((-0.2, 0.3), (-0.3, 0.0)))
        ),
    ),
)


def mc_flow_loss(
    field: infom.VectorField,
    encoder: infom.IntentionEncoder,
    batch: infom.Batch,
    futures: Float[Array, "batch obs_dim"],
    *,
    key: PRNGKeyArray,
    kl_weight: float,
) -> Scalar:
    """Monte-Carlo conditional flow matching towards sampled future states `x_1 = s_k`."""
    latent_key, time_key, noise_key = jr.split(key, 3)
    intention = infom.encode(encoder, batch.next_observations, batch.next_actions, key=latent_key)
    t = jr.uniform(time_key, futures.shape[:-1])
    x0 = jr.normal(noise_key, futures.shape)
    x_t = t[:, None] * futures + (1.0 - t[:, None]) * x0
    velocity = jax.vmap(field)(t, x_t, batch.observations, batch.actions, intention.sample)
    flow = jnp.mean(jnp.square(velocity - (futures - x0)))
    kl = jnp.mean(infom.kl_to_prior(intention.mean, intention.log_std)) / intention.mean.shape[-1]
    return flow + kl_weight * kl


def make_trainer(problem: Problem, method: str, *, steps: int, tau: float, kl_weight: float = KL_WEIGHT):
    """A compiled `(models, key, gamma) -> models` that runs `steps` updates in one `lax.scan`."""
    optim = optax.adam(LEARNING_RATE)

    def loss_fn(trainable, target, key, gamma):
        field, encoder = trainable
        batch_key, loss_key = jr.split(key)
        if method == "mc":
            batch, futures = problem.sample_future_batch(batch_key, BATCH_SIZE, gamma)
            return mc_flow_loss(field, encoder, batch, futures, key=loss_key, kl_weight=kl_weight)
        context = None
        if method.endswith("-context"):
            batch, context = TWO.sample_context_batch(batch_key, BATCH_SIZE)
        else:
            batch = problem.sample_batch(batch_key, BATCH_SIZE)
        loss, _ = infom.sarsa_flow_loss(
            field,
            encoder,
            target,
            batch,
            key=loss_key,
            gamma=gamma,
            kl_weight=kl_weight,
            target_form="td2" if method.startswith("td2") else "infom",
            future_intention=jax.lax.stop_gradient if method in ("infom", "td2") else (lambda z: z),
            context=context,
        )
        return loss

    def run(trainable, key, gamma):
        def step(carry, key):
            trainable, target, opt_state = carry
            loss, grads = eqx.filter_value_and_grad(loss_fn)(trainable, target, key, gamma)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes dtypes in Adam's bias correction
                updates, opt_state = optim.update(grads, opt_state)
            trainable = eqx.apply_updates(trainable, updates)
            return (trainable, infom.ema_update(target, trainable[0], tau), opt_state), loss

        carry = (trainable, trainable[0], optim.init(eqx.filter(trainable, eqx.is_array)))
        (trainable, _, _), losses = jax.lax.scan(step, carry, jr.split(key, steps))
        return trainable, losses

    return run


def init(problem: Problem, seed: int, latent: int = LATENT):
    config = infom.NetworkConfig(hidden_dims=HIDDEN, latent_dim=latent)
    models = infom.init_models(problem.obs_dim, problem.obs_dim, config, key=jr.key(seed))
    return models.field, models.encoder


@functools.partial(jax.jit, static_argnames="num_steps")
def sample_futures(field, encoder, s, a, s_next, a_next, key, num_steps):
    """`s_f ~ q(. | s, a, z)`, `z ~ p_e(z | s', a')`, one future per row."""
    z_key, x_key = jr.split(key)
    z = infom.encode(encoder, s_next, a_next, key=z_key).sample
    return infom.sample_future(field, s, a, z, key=x_key, num_steps=num_steps)


def next_pairs(problem: Problem, key, s, a, user: int | None):
    """`(s', a')` from the process given `(s, a)`: user `user`'s, or either user half and half."""
    if problem.name == "1-D":
        return LINEAR.sample_next(key, s, a)
    if user is not None:
        return TWO.sample_next(key, s, a, user)
    user_key, key0, key1 = jr.split(key, 3)
    first = jr.bernoulli(user_key, 0.5, s.shape[:-1])[:, None]
    (s0, a0), (s1, a1) = TWO.sample_next(key0, s, a, 0), TWO.sample_next(key1, s, a, 1)
    return jnp.where(first, s0, s1), jnp.where(first, a0, a1)


def exact_samples(problem: Problem, seed: int, s, a, gamma: float, user: int | None) -> np.ndarray:
    if problem.name == "1-D":
        return LINEAR.sample_occupancy(seed, float(s[0]), float(a[0]), gamma, NUM_SAMPLES)[:, None]
    return TWO.sample_occupancy(seed, s, a, gamma, NUM_SAMPLES, user)


def distance(x: np.ndarray, y: np.ndarray) -> float:
    return wasserstein_1d(x, y) if x.shape[-1] == 1 else sliced_wasserstein(x, y)


def evaluate(
    problem: Problem, models, gamma: float, seed: int, context: bool = False
) -> list[tuple[str, ...]]:
    """Rows `(target, distance at 100 steps, at 10 steps, floor, vs marginal, vs switching)`."""
    field, encoder = models
    targets = (None,) if problem.name == "1-D" else (0, 1, None)
    rows = []
    for user in targets:
        fine, coarse, floor, other = [], [], [], []
        for i, (s, a) in enumerate(problem.points):
            next_key, sample_key = jr.split(jr.fold_in(jr.key(seed + 1000), i))
            s_vec = jnp.tile(jnp.asarray(s, jnp.float32), (NUM_SAMPLES, 1))
            a_vec = jnp.tile(jnp.asarray(a, jnp.float32), (NUM_SAMPLES, 1))
            if context:  # intentions from independent pairs of the user (of either user: marginal)
                s_next, a_next = TWO.sample_context_batch(next_key, NUM_SAMPLES, user)[1]
            else:
                s_next, a_next = next_pairs(problem, next_key, s_vec, a_vec, user)
            samples = {
                steps: np.asarray(
                    sample_futures(field, encoder, s_vec, a_vec, s_next, a_next, sample_key, steps)
                )
                for steps in (FINE_STEPS, DEFAULT_STEPS)
            }
            exact = exact_samples(problem, 2 * i, s, a, gamma, user)
            fine.append(distance(samples[FINE_STEPS], exact))
            coarse.append(distance(samples[DEFAULT_STEPS], exact))
            floor.append(distance(exact_samples(problem, 2 * i + 1, s, a, gamma, user), exact))
            if problem.name == "1-D":
                continue
            if user is None:
                other.append(
                    distance(
                        samples[FINE_STEPS], TWO.sample_switching_occupancy(99, s, a, gamma, NUM_SAMPLES)
                    )
                )
            else:
                other.append(distance(samples[FINE_STEPS], exact_samples(problem, 99, s, a, gamma, None)))
        if problem.name == "1-D":
            name, vs_marginal, vs_switching = "1-D", "", ""
        else:
            name = f"2-goal: {'marginal' if user is None else f'user {user}'}"
            vs_marginal = f"{np.mean(other):.3f}" if user is not None else ""
            vs_switching = f"{np.mean(other):.3f}" if user is None else ""
        numbers = (f"{np.mean(x):.3f}" for x in (fine, coarse, floor))
        rows.append((name, *numbers, vs_marginal, vs_switching))
    return rows


def yardsticks(gammas: tuple[float, ...]) -> None:
    """Distances between exact occupancies, to read the table's distances against."""
    for gamma in gammas:
        one, two = PROBLEMS
        wrong_gamma = np.mean(
            [
                distance(
                    exact_samples(one, 0, s, a, gamma, None), exact_samples(one, 1, s, a, gamma**2, None)
                )
                for s, a in one.points
            ]
        )
        user_marginal, switching_marginal = [], []
        for s, a in two.points:
            marginal = exact_samples(two, 1, s, a, gamma, None)
            user_marginal.append(distance(exact_samples(two, 0, s, a, gamma, 0), marginal))
            switching = TWO.sample_switching_occupancy(0, s, a, gamma, NUM_SAMPLES)
            switching_marginal.append(distance(switching, marginal))
        print(
            f"  gamma={gamma}: 1-D exact occupancy at gamma vs at gamma^2: W1 {wrong_gamma:.3f}; "
            f"2-goal exact user 0 vs exact marginal: SW {np.mean(user_marginal):.3f}; "
            f"switching chain vs exact marginal: SW {np.mean(switching_marginal):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 updates per model instead of --steps")
    parser.add_argument("--steps", type=int, default=10_000, help="updates per model")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.9, 0.95, 0.99])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--problems", nargs="+", default=[p.name for p in PROBLEMS], choices=[p.name for p in PROBLEMS]
    )
    parser.add_argument("--tau", type=float, default=0.02, help="EMA rate of the target field")
    parser.add_argument("--kl-weight", type=float, default=KL_WEIGHT, help="lambda_KL of every method")
    parser.add_argument("--latent", type=int, default=LATENT, help="latent dimension of the intention")
    parser.add_argument(
        "--warmup-steps", type=int, default=0, help="updates at --warmup-gamma before the --steps updates"
    )
    parser.add_argument("--warmup-gamma", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps = 3000 if args.quick else args.steps

    header(
        f"{steps:,} updates of batch {BATCH_SIZE} per model; field/encoder {HIDDEN}, latent {args.latent}, "
        f"lambda_KL {args.kl_weight}, tau {args.tau}; "
        f"{NUM_SAMPLES:,} samples per (s, a); distances: W1 (1-D), sliced W1 (2-D), mean over 3 (s, a)"
    )
    print("yardsticks:")
    yardsticks(tuple(args.gammas))
    rows = []
    for problem in (p for p in PROBLEMS if p.name in args.problems):
        for method in args.methods:
            if method.endswith("-context") and problem.name != "2-goal":
                continue
            run = make_trainer(problem, method, steps=steps, tau=args.tau, kl_weight=args.kl_weight)
            models = init(problem, args.seed, args.latent)
            if args.warmup_steps:  # a first phase at another discount (the target restarts after it)
                warmup = make_trainer(
                    problem, method, steps=args.warmup_steps, tau=args.tau, kl_weight=args.kl_weight
                )
                key = jr.key(args.seed + 2)
                models, _ = jax.jit(warmup)(models, key, jnp.asarray(args.warmup_gamma, jnp.float32))
            gamma0 = jnp.asarray(args.gammas[0], jnp.float32)
            start = time.perf_counter()
            compiled = jax.jit(run).lower(models, jr.key(args.seed + 1), gamma0).compile()
            compile_seconds = time.perf_counter() - start
            for gamma in args.gammas:
                start = time.perf_counter()
                trained, losses = jax.block_until_ready(
                    compiled(models, jr.key(args.seed + 1), jnp.asarray(gamma, jnp.float32))
                )
                seconds = time.perf_counter() - start
                if not bool(jnp.all(jnp.isfinite(losses))):
                    raise FloatingPointError(f"{problem.name} {method} gamma={gamma}: non-finite loss")
                context = method.endswith("-context")
                for name, *numbers in evaluate(problem, trained, gamma, args.seed, context):
                    rows.append((name, gamma, method, *numbers, f"{seconds:.1f}"))
                print(
                    f"  trained {problem.name} {method} gamma={gamma} in {seconds:.1f} s "
                    f"(+{compile_seconds:.1f} s compile, once per method): {rows[-1][3:6]}",
                    flush=True,
                )
    print()
    print_table(
        (
            "problem: target",
            "gamma",
            "method",
            "distance (100 Euler)",
            "10 Euler",
            "MC floor",
            "vs marginal",
            "vs switching",
            "train s",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
