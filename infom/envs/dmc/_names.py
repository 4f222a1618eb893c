"""ExORL's task names and domain sizes: plain constants, importable without JAX or dm_control (the
`infom` command builds its argument parser and presets from them)."""

import types
from collections.abc import Mapping
from typing import NamedTuple


DEFAULT_EXORL_DIR = "~/.exorl/expl_datasets"
"""ExORL's dataset root by default: its own data sit in `<root>/<domain>/rnd/buffer`, locally
generated data in `<root>/<domain>/<algorithm>/buffer` (e.g. `ou_noise`)."""


EXORL_TASKS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "walker": ("stand", "walk", "run", "flip"),
        "cheetah": ("run", "run_backward", "walk", "walk_backward"),
        "quadruped": ("jump", "run", "stand", "walk"),
        "jaco": ("reach_top_left", "reach_top_right", "reach_bottom_left", "reach_bottom_right"),
    }
)
"""ExORL's state-based benchmark as used by InFOM: domain -> its four tasks (a task's full name is
`f"{domain}_{task}"`, e.g. `"cheetah_run_backward"`)."""

TASK_NAMES: tuple[str, ...] = tuple(
    f"{domain}_{task}" for domain, tasks in EXORL_TASKS.items() for task in tasks
)
"""All 16 task names, domain by domain."""

# The tasks the DeepMind Control suite has; the others are ExORL's (URLB's custom_dmc_tasks).
_SUITE_TASKS = frozenset(
    {"walker_stand", "walker_walk", "walker_run", "cheetah_run", "quadruped_walk", "quadruped_run"}
)


class DomainSpec(NamedTuple):
    """The sizes and time structure of one ExORL domain (the same for its four tasks).

    **Fields:**

    - `obs_dim`: width of the flat float32 observation (walker 24, cheetah 17, quadruped 78, jaco 42).
    - `action_dim`: width of the action, in `[-1, 1]` (walker 6, cheetah 6, quadruped 12, jaco 9).
    - `physics_dim`: width of `physics.get_state()` (`qpos`, `qvel`, `act`; walker 18, cheetah 18,
      quadruped 57, jaco 18).
    - `episode_length`: ExORL's time limit in steps (time limit / control timestep: walker 25 s /
      0.025 s, cheetah 10 s / 0.01 s, quadruped 20 s / 0.02 s, all 1000; jaco 10 s / 0.04 s = 250).
    - `control_timestep`: seconds of simulation per action.
    """

    obs_dim: int
    action_dim: int
    physics_dim: int
    episode_length: int
    control_timestep: float


DOMAINS: Mapping[str, DomainSpec] = types.MappingProxyType(
    {
        "walker": DomainSpec(
            obs_dim=24, action_dim=6, physics_dim=18, episode_length=1000, control_timestep=0.025
        ),
        "cheetah": DomainSpec(
            obs_dim=17, action_dim=6, physics_dim=18, episode_length=1000, control_timestep=0.01
        ),
        "quadruped": DomainSpec(
            obs_dim=78, action_dim=12, physics_dim=57, episode_length=1000, control_timestep=0.02
        ),
        "jaco": DomainSpec(
            obs_dim=42, action_dim=9, physics_dim=18, episode_length=250, control_timestep=0.04
        ),
    }
)
"""Domain -> its `DomainSpec`. Observation sizes are those of dm-control 1.0.52 with MuJoCo 4."""


def split_task_name(name: str) -> tuple[str, str]:
    """Splits an ExORL task name into `(domain, task)`, e.g. `"cheetah_run_backward"` ->
    `("cheetah", "run_backward")`.

    **Raises:** `ValueError` naming the valid task names if `name` is not one of them.
    """
    if name not in TASK_NAMES:
        raise ValueError(f"Unknown ExORL task {name!r}; expected one of: {', '.join(TASK_NAMES)}")
    domain, task = name.split("_", 1)
    return domain, task


def check_domain(domain: str) -> DomainSpec:
    """The `DomainSpec` of a domain; a `ValueError` naming the valid domains otherwise."""
    if domain not in DOMAINS:
        raise ValueError(f"Unknown ExORL domain {domain!r}; expected one of: {', '.join(DOMAINS)}")
    return DOMAINS[domain]
