"""The five InFOM networks as final Equinox modules that hold parameters only.

Every module's `__call__` takes one example; callers batch with `jax.vmap`.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, Scalar, ScalarLike

from ._config import NetworkConfig


def variance_scaling_uniform(
    key: PRNGKeyArray, out_dim: int, in_dim: int, scale: float = 1.0
) -> Float[Array, "out_dim in_dim"]:
    """Variance-scaling initialiser, fan-average mode, uniform distribution.

    Draws `W ~ U(-l, l)` with `l = sqrt(3 * scale / ((in_dim + out_dim) / 2))`, which is
    `flax.linen.initializers.variance_scaling(scale, "fan_avg", "uniform")`, the
    reference implementation's default kernel initialiser.
    """
    if out_dim == 0 or in_dim == 0:  # e.g. an intention of size 0 (FOM); JAX's fans divide by the size
        return jnp.zeros((out_dim, in_dim), jnp.float32)
    init = jax.nn.initializers.variance_scaling(scale, "fan_avg", "uniform", in_axis=-1, out_axis=-2)
    return init(key, (out_dim, in_dim), jnp.float32)


def _linear(in_dim: int, out_dim: int, *, key: PRNGKeyArray, scale: float = 1.0) -> eqx.nn.Linear:
    """An `eqx.nn.Linear` with the variance-scaling kernel and a zero bias."""
    # Only the structure of `eqx.nn.Linear` is built (no default initialisation is computed):
    # both of its leaves are replaced below.
    layer = eqx.filter_eval_shape(eqx.nn.Linear, in_dim, out_dim, key=key)
    weight = variance_scaling_uniform(key, out_dim, in_dim, scale)
    return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, jnp.zeros((out_dim,))))


def _check_input_dims(owner: str, expected: int, **inputs: Array) -> None:
    """Raises a `ValueError` naming the inputs if their last dimensions do not add up to `expected`."""
    total = sum(x.shape[-1] for x in inputs.values())
    if total != expected:
        got = ", ".join(f"`{name}` {x.shape[-1]}" for name, x in inputs.items())
        raise ValueError(f"{owner} expects input dimensions summing to {expected}, got {got}")


def _layer_norm(width: int) -> eqx.nn.LayerNorm:
    # eps matches flax.linen.LayerNorm, the reference's layer norm.
    return eqx.nn.LayerNorm(width, eps=1e-6)


class MLP(eqx.Module):
    """GELU multi-layer perceptron with optional layer norm after each activation.

    Computes `h_0 = x`, `h_{i+1} = LN(gelu(W_i h_i + b_i))` for hidden layers (layer norm
    only if enabled) and a linear last layer (also activated if `activate_final`).
    """

    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.LayerNorm, ...]
    activate_final: bool = eqx.field(static=True)

    def __init__(
        self,
        in_dim: int,
        widths: tuple[int, ...],
        *,
        layer_norm: bool,
        activate_final: bool = False,
        final_scale: float = 1.0,
        key: PRNGKeyArray,
    ):
        keys = jr.split(key, len(widths))
        dims = (in_dim, *widths)
        last = len(widths) - 1
        self.layers = tuple(
            _linear(dims[i], dims[i + 1], key=keys[i], scale=final_scale if i == last else 1.0)
            for i in range(len(widths))
        )
        num_activated = len(widths) if activate_final else len(widths) - 1
        self.norms = tuple(_layer_norm(w) for w in widths[:num_activated]) if layer_norm else ()
        self.activate_final = activate_final

    def __call__(self, x: Float[Array, " in_dim"]) -> Float[Array, " out_dim"]:
        return _mlp_forward(self.layers, self.norms, self.activate_final, x)


def _mlp_forward(
    layers: tuple[eqx.nn.Linear, ...],
    norms: tuple[eqx.nn.LayerNorm, ...],
    activate_final: bool,
    x: Array,
) -> Array:
    num = len(layers)
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < num - 1 or activate_final:
            x = jax.nn.gelu(x)
            if norms:
                x = norms[i](x)
    return x


class IntentionEncoder(eqx.Module):
    """The intention encoder `p_e(z | s', a') = N(mu_e(s', a'), diag(sigma_e(s', a')^2))`.

    An MLP trunk over `[s', a']` (activated last layer, layer norm by default) followed by
    two linear heads for the mean and the log standard deviation. The log-std is not
    clipped, as in the reference implementation.
    """

    trunk: MLP
    mean_head: eqx.nn.Linear
    log_std_head: eqx.nn.Linear

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int,
        hidden_dims: tuple[int, ...],
        *,
        layer_norm: bool = True,
        key: PRNGKeyArray,
    ):
        trunk_key, mean_key, log_std_key = jr.split(key, 3)
        self.trunk = MLP(
            obs_dim + action_dim, hidden_dims, layer_norm=layer_norm, activate_final=True, key=trunk_key
        )
        self.mean_head = _linear(hidden_dims[-1], latent_dim, key=mean_key)
        self.log_std_head = _linear(hidden_dims[-1], latent_dim, key=log_std_key)

    def __call__(
        self, next_observation: Float[Array, " obs_dim"], next_action: Float[Array, " action_dim"]
    ) -> tuple[Float[Array, " latent_dim"], Float[Array, " latent_dim"]]:
        """Returns `(mean, log_std)` of the intention posterior for one `(s', a')`."""
        _check_input_dims(
            "IntentionEncoder",
            self.trunk.layers[0].in_features,
            next_observation=next_observation,
            next_action=next_action,
        )
        h = self.trunk(jnp.concatenate([next_observation, next_action]))
        return self.mean_head(h), self.log_std_head(h)


class AbstractVectorField(eqx.Module):
    """Interface of an occupancy vector field `v(t, x, s, a, z)` split as
    `velocity(t, x, condition(s, a, z))`.

    `condition` maps the conditioning `(s, a, z)` to an array that [`sample_future`][] computes
    once per conditioning input and reuses for every ODE step and every future; `velocity`
    evaluates the field at `(t, x)`. Subclass this to plug an analytic or custom field into
    [`sarsa_flow_loss`][], [`sample_future`][] and [`solve_flow`][].
    """

    @abc.abstractmethod
    def condition(
        self,
        observation: Float[Array, " obs_dim"],
        action: Float[Array, " action_dim"],
        intention: Float[Array, " latent_dim"],
    ) -> Float[Array, " cond_dim"]:
        """The part of the field that depends on `(s, a, z)` only."""

    @abc.abstractmethod
    def velocity(
        self, t: ScalarLike, x: Float[Array, " obs_dim"], conditioning: Float[Array, " cond_dim"]
    ) -> Float[Array, " obs_dim"]:
        """`v(t, x, s, a, z)` given `conditioning = condition(s, a, z)`."""

    def __call__(
        self,
        t: ScalarLike,
        x: Float[Array, " obs_dim"],
        observation: Float[Array, " obs_dim"],
        action: Float[Array, " action_dim"],
        intention: Float[Array, " latent_dim"],
    ) -> Float[Array, " obs_dim"]:
        """`v(t, x, s, a, z)` for one example."""
        return self.velocity(t, x, self.condition(observation, action, intention))


class VectorField(AbstractVectorField):
    """The occupancy vector field `v(t, x, s, a, z)`, an MLP over `[x, t, s, a, z]`.

    Mathematically this is one MLP applied to the concatenation `[x, t, s, a, z]`. Its first
    layer is stored split by input block, `W [x; t; c] + b = W_x x + w_t t + (W_c c + b)`
    with `c = [s, a, z]`, so that the conditioning part `W_c c + b`, which is constant along
    an ODE solve and across all futures drawn for one `(s, a, z)`, can be computed once by
    [`VectorField.condition`][] and reused by every call of [`VectorField.velocity`][].
    The initialisation is that of the unsplit layer (fan-average over all inputs).
    """

    weight_x: Float[Array, "width obs_dim"]
    weight_t: Float[Array, " width"]
    weight_cond: Float[Array, "width cond_dim"]
    bias: Float[Array, " width"]
    first_norm: tuple[eqx.nn.LayerNorm, ...]
    trunk: MLP

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int,
        hidden_dims: tuple[int, ...],
        *,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        first_key, trunk_key = jr.split(key)
        width = hidden_dims[0]
        cond_dim = obs_dim + action_dim + latent_dim
        weight = variance_scaling_uniform(first_key, width, obs_dim + 1 + cond_dim)
        self.weight_x = weight[:, :obs_dim]
        self.weight_t = weight[:, obs_dim]
        self.weight_cond = weight[:, obs_dim + 1 :]
        self.bias = jnp.zeros((width,))
        self.first_norm = (_layer_norm(width),) if layer_norm else ()
        self.trunk = MLP(width, (*hidden_dims[1:], obs_dim), layer_norm=layer_norm, key=trunk_key)

    def condition(
        self,
        observation: Float[Array, " obs_dim"],
        action: Float[Array, " action_dim"],
        intention: Float[Array, " latent_dim"],
    ) -> Float[Array, " width"]:
        """The first layer's conditioning part `W_c [s, a, z] + b` for one `(s, a, z)`."""
        _check_input_dims(
            "VectorField.condition",
            self.weight_cond.shape[1],
            observation=observation,
            action=action,
            intention=intention,
        )
        return self.weight_cond @ jnp.concatenate([observation, action, intention]) + self.bias

    def velocity(
        self, t: ScalarLike, x: Float[Array, " obs_dim"], conditioning: Float[Array, " width"]
    ) -> Float[Array, " obs_dim"]:
        """`v(t, x, s, a, z)` given `conditioning = condition(s, a, z)`."""
        _check_input_dims("VectorField.velocity", self.weight_x.shape[1], x=x)
        _check_input_dims("VectorField.velocity", self.bias.shape[0], conditioning=conditioning)
        h = self.weight_x @ x + self.weight_t * jnp.asarray(t, dtype=x.dtype) + conditioning
        h = jax.nn.gelu(h)
        if self.first_norm:
            h = self.first_norm[0](h)
        return self.trunk(h)


class RewardModel(eqx.Module):
    """The reward model `r_phi(s)`: an MLP (layer norm by default) with a scalar output."""

    mlp: MLP

    def __init__(
        self, obs_dim: int, hidden_dims: tuple[int, ...], *, layer_norm: bool = True, key: PRNGKeyArray
    ):
        self.mlp = MLP(obs_dim, (*hidden_dims, 1), layer_norm=layer_norm, key=key)

    def __call__(self, observation: Float[Array, " obs_dim"]) -> Scalar:
        _check_input_dims("RewardModel", self.mlp.layers[0].in_features, observation=observation)
        return self.mlp(observation)[0]


class Critic(eqx.Module):
    """The distilled critic `Q_psi(s, a)`: an ensemble of MLPs, one scalar per head.

    The heads' parameters are stacked along a leading axis (built with `eqx.filter_vmap`),
    so all heads are evaluated in one batched computation.
    """

    heads: MLP

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        *,
        num_heads: int = 2,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        make = lambda k: MLP(obs_dim + action_dim, (*hidden_dims, 1), layer_norm=layer_norm, key=k)
        self.heads = eqx.filter_vmap(make)(jr.split(key, num_heads))

    def __call__(
        self, observation: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]
    ) -> Float[Array, " num_heads"]:
        _check_input_dims(
            "Critic", self.heads.layers[0].weight.shape[-1], observation=observation, action=action
        )
        x = jnp.concatenate([observation, action])
        return eqx.filter_vmap(lambda head: head(x)[0])(self.heads)


class Actor(eqx.Module):
    """The actor `pi(a | s) = N(mu(s), I)`: a Gaussian with learned mean and unit std.

    The mean head is initialised at a small scale (1e-2) and is not squashed; the policy's
    log standard deviation is the constant 0, as in the reference implementation.
    Evaluation uses `clip(mu(s), -1, 1)`.
    """

    trunk: MLP
    mean_head: eqx.nn.Linear

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        *,
        layer_norm: bool = False,
        mean_init_scale: float = 1e-2,
        key: PRNGKeyArray,
    ):
        trunk_key, head_key = jr.split(key)
        self.trunk = MLP(obs_dim, hidden_dims, layer_norm=layer_norm, activate_final=True, key=trunk_key)
        self.mean_head = _linear(hidden_dims[-1], action_dim, key=head_key, scale=mean_init_scale)

    def __call__(self, observation: Float[Array, " obs_dim"]) -> Float[Array, " action_dim"]:
        """The policy mean `mu(s)` (unclipped)."""
        _check_input_dims("Actor", self.trunk.layers[0].in_features, observation=observation)
        return self.mean_head(self.trunk(observation))


class Models(eqx.Module):
    """All trainable InFOM networks in one pytree (the target field lives elsewhere).

    `student` is `None` unless the critic samples its futures from a distilled student field
    (`InFOMConfig.student_steps`, [`sampler_distill_loss`][]).
    """

    encoder: IntentionEncoder
    field: VectorField
    reward: RewardModel
    critic: Critic
    actor: Actor
    student: VectorField | None = None


def init_models(
    obs_dim: int, action_dim: int, config: NetworkConfig = NetworkConfig(), *, key: PRNGKeyArray
) -> Models:
    """Creates the five networks with the sizes of `config`.

    **Arguments:**

    - `obs_dim`, `action_dim`: sizes of an observation and an action.
    - `config`: a [`NetworkConfig`][]; the paper's sizes by default.
    - `key`: a JAX PRNG key.

    **Returns:** a [`Models`][] pytree.

    !!! Example

        ```python
        models = infom.init_models(28, 5, infom.NetworkConfig(hidden_dims=(64, 64), latent_dim=8),
                                   key=jax.random.key(0))
        ```
    """
    if obs_dim < 1 or action_dim < 1:
        raise ValueError(f"obs_dim and action_dim must be positive, got {obs_dim} and {action_dim}")
    enc_key, field_key, reward_key, critic_key, actor_key = jr.split(key, 5)
    hidden = config.hidden_dims
    return Models(
        encoder=IntentionEncoder(
            obs_dim, action_dim, config.latent_dim, hidden, layer_norm=config.encoder_layer_norm, key=enc_key
        ),
        field=VectorField(
            obs_dim, action_dim, config.latent_dim, hidden, layer_norm=config.field_layer_norm, key=field_key
        ),
        reward=RewardModel(obs_dim, hidden, layer_norm=config.reward_layer_norm, key=reward_key),
        critic=Critic(
            obs_dim,
            action_dim,
            hidden,
            num_heads=config.num_critic_heads,
            layer_norm=config.critic_layer_norm,
            key=critic_key,
        ),
        actor=Actor(
            obs_dim,
            action_dim,
            hidden,
            layer_norm=config.actor_layer_norm,
            mean_init_scale=config.actor_mean_init_scale,
            key=actor_key,
        ),
    )
