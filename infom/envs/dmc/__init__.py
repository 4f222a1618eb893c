"""ExORL's DeepMind Control benchmark: the 16 tasks, ExORL's episode format, a local exploration-data
generator and batched parallel evaluation.

ExORL (Yarats et al., 2022) is the state-based half of InFOM's benchmark: walker (stand, walk, run,
flip), cheetah (run, run_backward, walk, walk_backward), quadruped (jump, run, stand, walk) and jaco
(reach_top_left, reach_top_right, reach_bottom_left, reach_bottom_right).

- `make_env` builds a task (dm_control's suite, URLB's custom tasks reimplemented on dm_control's
  classes, jaco on dm_control's manipulation library); `task_reward` recomputes its reward from
  saved physics states, as ExORL relabels its data.
- `write_episode`, `read_episode` and `load_exorl` handle ExORL's per-episode `.npz` files;
  `to_dataset` turns them into an `infom.Dataset`.
- `generate_exorl` collects local reward-free data in that format (a cheap substitute for ExORL's
  RND data: results are not comparable with the paper's).
- `evaluate_dmc` rolls a batched policy out in worker processes, `evaluate_dmc_policies` several
  policies (a run's seeds) in one pool.

dm-control (`>=1.0.52` with `mujoco>=4.0.1`) and tqdm are optional dependencies
(`pip install infom[envs]`), imported only when needed. The names below are imported on first
use, so that the task names (`infom/envs/dmc/_names.py`) load without JAX.
"""

import importlib
from typing import Any


_EXPORTS = {
    "DMCEvalResult": "_evaluation",
    "DMCEvaluationPool": "_evaluation",
    "evaluate_dmc": "_evaluation",
    "evaluate_dmc_policies": "_evaluation",
    "EPISODE_KEYS": "_format",
    "ExorlData": "_format",
    "ExorlEpisode": "_format",
    "buffer_dir": "_format",
    "episode_filename": "_format",
    "load_exorl": "_format",
    "read_episode": "_format",
    "to_dataset": "_format",
    "write_episode": "_format",
    "COLLECTION_TASKS": "_generate",
    "EXPLORERS": "_generate",
    "AbstractExplorer": "_generate",
    "GenerationSummary": "_generate",
    "OUNoiseExplorer": "_generate",
    "UniformExplorer": "_generate",
    "exorl_episodes_present": "_generate",
    "generate_exorl": "_generate",
    "DEFAULT_EXORL_DIR": "_names",
    "DOMAINS": "_names",
    "EXORL_TASKS": "_names",
    "TASK_NAMES": "_names",
    "DomainSpec": "_names",
    "DMCEnv": "_tasks",
    "DMCStep": "_tasks",
    "make_env": "_tasks",
    "task_reward": "_tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
