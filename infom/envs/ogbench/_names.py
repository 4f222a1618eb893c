"""OGBench's domains, dataset kinds and sizes: plain constants, importable without JAX (the
`infom` command builds its argument parser from them)."""

import dataclasses


DEFAULT_DATASET_DIR = "~/.ogbench/data"
"""Where OGBench (and therefore `load_ogbench`) looks for dataset files by default."""

EPISODE_LENGTH = 1001
"""Rows per episode in OGBench's manipulation datasets."""

DATASET_KINDS = ("play", "play-ft")
"""`play`: the pre-training dataset. `play-ft`: the separate fine-tuning dataset."""

REFERENCE_EPISODES = {"play": 1000, "play-ft": 500}
"""Training episodes of the published datasets (validation files hold 10% more)."""


@dataclasses.dataclass(frozen=True)
class _Domain:
    """Facts about one OGBench manipulation domain (checked against the environments)."""

    collection_env: str
    obs_dim: int
    qpos_dim: int
    qvel_dim: int
    num_buttons: int  # width of `button_states`; 0 when the file has no such key
    oracles: tuple[str, ...]  # task kinds the data-collection env asks for
    eval_episode_length: int
    action_dim: int = 5  # the arm's end-effector displacement, yaw and gripper


_DOMAINS: dict[str, _Domain] = {
    "cube-single": _Domain("cube-single-v0", 28, 21, 20, 0, ("cube",), 200),
    "cube-double": _Domain("cube-double-v0", 37, 28, 26, 0, ("cube",), 500),
    "scene": _Domain("scene-v0", 40, 25, 24, 2, ("cube", "button", "drawer", "window"), 750),
    "puzzle-4x4": _Domain("puzzle-4x4-v0", 83, 30, 30, 16, ("button",), 500),
}
OGBENCH_DOMAINS = tuple(_DOMAINS)
"""The four state-based OGBench manipulation domains InFOM is evaluated on."""


def default_val_episodes(num_episodes: int) -> int:
    """OGBench's validation size: 10% of the training episodes (at least one)."""
    return max(1, num_episodes // 10)
