"""Frozen hyper-parameter dataclasses with the paper's defaults."""

import dataclasses


def _check_positive_int(owner: str, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Sizes and layer-norm choices of the five InFOM networks.

    The defaults are the paper's: every network is a GELU MLP with four hidden layers of
    512 units, the intention space has 512 dimensions, and layer norm (after each hidden
    activation) is used in the intention encoder and the reward model only.

    **Fields:**

    - `hidden_dims`: hidden layer widths shared by all networks.
    - `latent_dim`: dimension `d_z` of the intention `z`.
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
        if not isinstance(self.hidden_dims, tuple) or len(self.hidden_dims) == 0:
            raise ValueError(
                f"NetworkConfig.hidden_dims must be a non-empty tuple of ints, got {self.hidden_dims!r}"
            )
        for width in self.hidden_dims:
            _check_positive_int("NetworkConfig", "hidden_dims", width)
        _check_positive_int("NetworkConfig", "latent_dim", self.latent_dim)
        _check_positive_int("NetworkConfig", "num_critic_heads", self.num_critic_heads)
        if not self.actor_mean_init_scale > 0:
            raise ValueError(
                "NetworkConfig.actor_mean_init_scale must be positive, "
                f"got {self.actor_mean_init_scale!r}"
            )
