"""Frozen hyper-parameter dataclasses with the paper's defaults."""

import dataclasses
from collections.abc import Callable
from typing import Literal, get_args

import diffrax

from ._heads import mean_heads, min_heads


def _check_positive_int(owner: str, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _check_positive(owner: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{owner}.{name} must be positive, got {value!r}")


def _check_hidden_dims(owner: str, value: object) -> None:
    """Hidden widths: a non-empty tuple of positive integers (every config's networks)."""
    if not isinstance(value, tuple) or len(value) == 0:
        raise ValueError(f"{owner}.hidden_dims must be a non-empty tuple of ints, got {value!r}")
    for width in value:
        _check_positive_int(owner, "hidden_dims", width)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Sizes and layer-norm choices of the five InFOM networks.

    The defaults are the paper's: every network is a GELU MLP with four hidden layers of
    512 units, the intention space has 512 dimensions, and layer norm (after each hidden
    activation) is used in the intention encoder and the reward model only.

    **Fields:**

    - `hidden_dims`: hidden layer widths shared by all networks.
    - `latent_dim`: dimension `d_z` of the intention `z`; 0 removes intentions (the
      "FOM" ablation: an occupancy model of the behaviour policy alone).
    - `encoder_layer_norm`, `field_layer_norm`, `reward_layer_norm`, `critic_layer_norm`,
      `actor_layer_norm`: whether each network uses layer norm after its hidden activations.
    - `actor_mean_init_scale`: variance-scaling factor of the actor's mean head (1e-2, so the
      initial policy is close to the zero action).
    - `num_critic_heads`: size of the critic ensemble (2).

    !!! note

        The reference code's published config also sets `value_layer_norm=True`, which
        puts layer norm in the critic and the vector field; the specification this
        library follows enables it for the encoder and reward model only. Set
        `field_layer_norm=True, critic_layer_norm=True` to reproduce the former.
    """

    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    latent_dim: int = 512
    encoder_layer_norm: bool = True
    field_layer_norm: bool = False
    reward_layer_norm: bool = True
    critic_layer_norm: bool = False
    actor_layer_norm: bool = False
    actor_mean_init_scale: float = 1e-2
    num_critic_heads: int = 2

    def __post_init__(self):
        _check_hidden_dims("NetworkConfig", self.hidden_dims)
        if not isinstance(self.latent_dim, int) or isinstance(self.latent_dim, bool) or self.latent_dim < 0:
            raise ValueError(
                f"NetworkConfig.latent_dim must be a non-negative integer, got {self.latent_dim!r}"
            )
        _check_positive_int("NetworkConfig", "num_critic_heads", self.num_critic_heads)
        if not self.actor_mean_init_scale > 0:
            raise ValueError(
                f"NetworkConfig.actor_mean_init_scale must be positive, got {self.actor_mean_init_scale!r}"
            )


PolicyExtraction = Literal["implicit_gpi", "standard_gpi", "one_step"]
CriticIntentions = Literal["prior", "encoder"]
IntentionSharing = Literal["shared", "per_future"]
IntentionContext = Literal["next_pair", "episode"]
TargetForm = Literal["infom", "td2"]
# The head aggregations a config can hold and record by name (in `config.json`, on the command line).
HEAD_AGGREGATIONS = {"min": min_heads, "mean": mean_heads}


def _check_choice(owner: str, name: str, value: object, literal: object) -> None:
    if value not in get_args(literal):
        raise ValueError(f"{owner}.{name} must be one of {get_args(literal)}, got {value!r}")


def _check_range(owner: str, name: str, value: float, low: float, high: float, *, high_open: bool) -> None:
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{owner}.{name} must lie in [{low}, {high}{bracket}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class InFOMConfig:
    """Hyper-parameters of InFOM's pre-training and fine-tuning updates (paper defaults).

    **Fields:**

    - `network`: a [`NetworkConfig`][].
    - `learning_rate` (3e-4, Adam), `batch_size` (256).
    - `gamma` (0.99): discount of the occupancy model.
    - `tau` (0.005): EMA rate of the target vector field, per update.
    - `kl_weight` (0.01): `lambda_KL`, on the KL averaged over latent dimensions.
    - `expectile` (0.9): `mu` of the implicit-GPI critic.
    - `num_futures` (16): `N`, futures per state for the Monte-Carlo Q.
    - `num_flow_steps` (10): Euler steps of every flow ODE solve.
    - `clip_futures` (True): clip generated futures to the normalised data range.
    - `target_form` ("infom"): the future term of [`sarsa_flow_loss`][] ("infom" or "td2").
    - `future_intention_gradient` (False): let the intention carry gradient into the encoder
      through the future term of [`sarsa_flow_loss`][] (the reference stops it there, which
      leaves the encoder no learning signal from the flow; see that function). With the
      default `intention_context` the intention can then carry the transition's next state
      (on the Pendulum demo: a worse policy); combine it with `intention_context="episode"`
      (`benchmarks/RESULTS.md`).
    - `intention_context` ("next_pair"), `context_window` (None): the pair the encoder infers
      the intention from: the transition's own `(s', a')` (the paper), or "episode": a pair
      drawn uniformly from the same episode within `context_window` steps (the whole episode
      if None), independently of the transition ([`sample_batch_with_context`][]); see
      [`sarsa_flow_loss`][]'s `context`.
    - `actor_freq` (4): the actor is updated every `actor_freq`-th fine-tuning update.
    - `alpha` (10): behaviour-cloning weight of the DDPG + BC actor.
    - `q_aggregation` ([`min_heads`][]): how the actor combines the critic's heads, a function
      `[..., heads] -> [...]` ([`min_heads`][] or [`mean_heads`][]; "min" / "mean" on the command
      line and in `config.json`).
    - `normalize_q_loss` (False): divide the actor's Q term by `mean |Q|` (no gradient).
    - `pretrain_bc` (True): train the actor by behaviour cloning during pre-training.
    - `policy_extraction` ("implicit_gpi"): "implicit_gpi" (expectile distillation, the
      method), "standard_gpi" (the actor maximises `max_k Q_hat(s, a, z_k)` over
      `num_gpi_intentions` prior intentions, differentiating through the ODE; no critic), or
      "one_step" (a critic regressing the Monte-Carlo Q with expectile 0.5; combine with
      `network.latent_dim = 0` for the paper's "FOM + one-step PI" ablation).
    - `critic_intentions` ("prior"): critic intentions drawn from `N(0, I)` or from the encoder
      `p_e(z | s', a')`.
    - `intention_sharing` ("shared"): one intention per state shared by its `N` futures, or
      "per_future" (one per future, what the published numbers were produced with).
    - `num_gpi_intentions` (8): intentions per state for "standard_gpi".
    - `critic_solver` (`diffrax.Euler()`), `critic_flow_steps` (`None`: `num_flow_steps`),
      `antithetic_futures` (False), `latin_hypercube_futures` (False): how the Monte-Carlo Q
      draws its `N` futures (the dominant cost of fine-tuning): a diffrax solver object
      (e.g. `diffrax.Midpoint()` or `diffrax.Heun()`, two field evaluations per step; by its
      lower-case class name on the command line and in `config.json`) and its step
      count, and whether the futures' noise comes in antithetic pairs `(x_0, -x_0)`
      (`num_futures` must then be even) or as a Latin hypercube sample over the `N` futures
      (at most one of the two; see [`sample_future`][]). The
      defaults are the paper's; `benchmarks/sample_future_solvers.py` measures the
      alternatives' accuracy and cost.
    - `student_steps` (`None`), `student_futures` (1): with `student_steps = k`, the critic's
      futures (and "standard_gpi"'s) come from a *student* field `Models.student` that takes `k`
      Euler steps, distilled during fine-tuning into the sampler it replaces (the field with
      `critic_solver` and `critic_flow_steps`) by [`sampler_distill_loss`][] on
      `student_futures` futures per state of each batch, prior intentions. The student starts
      fine-tuning as a copy of the field. `None` (the paper) samples from the field itself.
      `benchmarks/distilled_sampler.py` measures its accuracy and cost.
    """

    network: NetworkConfig = NetworkConfig()
    learning_rate: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    kl_weight: float = 0.01
    expectile: float = 0.9
    num_futures: int = 16
    num_flow_steps: int = 10
    clip_futures: bool = True
    target_form: TargetForm = "infom"
    future_intention_gradient: bool = False
    intention_context: IntentionContext = "next_pair"
    context_window: int | None = None
    actor_freq: int = 4
    alpha: float = 10.0
    q_aggregation: Callable = min_heads
    normalize_q_loss: bool = False
    pretrain_bc: bool = True
    policy_extraction: PolicyExtraction = "implicit_gpi"
    critic_intentions: CriticIntentions = "prior"
    intention_sharing: IntentionSharing = "shared"
    num_gpi_intentions: int = 8
    critic_solver: diffrax.AbstractSolver = diffrax.Euler()
    critic_flow_steps: int | None = None
    antithetic_futures: bool = False
    latin_hypercube_futures: bool = False
    student_steps: int | None = None
    student_futures: int = 1

    def __post_init__(self):
        owner = "InFOMConfig"
        if not isinstance(self.network, NetworkConfig):
            raise ValueError(f"{owner}.network must be a NetworkConfig, got {type(self.network).__name__}")
        for name in (
            "batch_size",
            "num_futures",
            "num_flow_steps",
            "actor_freq",
            "num_gpi_intentions",
            "student_futures",
        ):
            _check_positive_int(owner, name, getattr(self, name))
        if not self.learning_rate > 0:
            raise ValueError(f"{owner}.learning_rate must be positive, got {self.learning_rate!r}")
        _check_range(owner, "gamma", self.gamma, 0.0, 1.0, high_open=True)
        _check_range(owner, "tau", self.tau, 0.0, 1.0, high_open=False)
        _check_range(owner, "expectile", self.expectile, 0.5, 1.0, high_open=True)
        if self.kl_weight < 0:
            raise ValueError(f"{owner}.kl_weight must be non-negative, got {self.kl_weight!r}")
        if self.alpha < 0:
            raise ValueError(f"{owner}.alpha must be non-negative, got {self.alpha!r}")
        _check_choice(owner, "target_form", self.target_form, TargetForm)
        if not callable(self.q_aggregation):
            raise ValueError(
                f"{owner}.q_aggregation must be a function of the heads (e.g. infom.min_heads), "
                f"got {self.q_aggregation!r}"
            )
        _check_choice(owner, "policy_extraction", self.policy_extraction, PolicyExtraction)
        _check_choice(owner, "critic_intentions", self.critic_intentions, CriticIntentions)
        _check_choice(owner, "intention_sharing", self.intention_sharing, IntentionSharing)
        _check_choice(owner, "intention_context", self.intention_context, IntentionContext)
        if self.context_window is not None:
            _check_positive_int(owner, "context_window", self.context_window)
        if not isinstance(self.critic_solver, diffrax.AbstractSolver):
            raise ValueError(
                f"{owner}.critic_solver must be a diffrax solver object (e.g. diffrax.Midpoint()), "
                f"got {self.critic_solver!r}"
            )
        if self.critic_flow_steps is not None and (
            not isinstance(self.critic_flow_steps, int)
            or isinstance(self.critic_flow_steps, bool)
            or self.critic_flow_steps < 1
        ):
            raise ValueError(
                f"{owner}.critic_flow_steps must be a positive integer or None (num_flow_steps), "
                f"got {self.critic_flow_steps!r}"
            )
        if self.student_steps is not None:
            _check_positive_int(owner, "student_steps", self.student_steps)
        if self.antithetic_futures and self.num_futures % 2:
            raise ValueError(f"{owner}.antithetic_futures needs an even num_futures, got {self.num_futures}")
        if self.antithetic_futures and self.latin_hypercube_futures:
            raise ValueError(f"{owner}.latin_hypercube_futures and antithetic_futures cannot both be set")
        if self.policy_extraction == "standard_gpi" and self.network.latent_dim == 0:
            raise ValueError(
                f"{owner}.policy_extraction='standard_gpi' needs intentions (network.latent_dim > 0)"
            )
