"""OGBench manipulation datasets generated locally, validated, and loaded with OGBench's own code.

OGBench's "play" datasets are normally downloaded. This module collects them with the
scripted plan oracles that ship inside the `ogbench` package, following OGBench's published
collection protocol, and writes them in OGBench's exact `.npz` format, so that
`ogbench.make_env_and_datasets` (and with it OGBench's reward relabelling) reads them as if
they had been downloaded. Nothing here ever touches the network.

`ogbench`, `gymnasium` and `tqdm` are optional dependencies (`pip install infom[envs]`); they
are imported only when a function needs them.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import multiprocessing
import multiprocessing.context
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..._errors import DatasetError
from ..._files import atomic_write_bytes, read_npz
from ._names import (
    _DOMAINS,
    DATASET_KINDS,
    DEFAULT_DATASET_DIR,
    EPISODE_LENGTH,
    OGBENCH_DOMAINS,
    REFERENCE_EPISODES,
    _Domain,
    default_val_episodes,
)


_KIND_STREAM = {"play": 0, "play-ft": 1}
_SPLIT_STREAM = {"train": 0, "val": 1}


_NAME_RE = re.compile(
    r"^(?P<domain>cube-single|cube-double|scene|puzzle-4x4)"
    r"(?:-(?P<kind>play-ft|play))?"
    r"(?P<task>-singletask(?:-task[1-5])?)?"
    r"-v0$"
)
_FILE_RE = re.compile(
    r"^(?P<domain>cube-single|cube-double|scene|puzzle-4x4)-(?:play-ft|play)-v0(?:-val)?\.npz$"
)


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset files for an OGBench task do not exist. The message names the command that makes them."""


class GenerationSummary(NamedTuple):
    """What `generate_dataset` wrote.

    **Fields:**

    - `train_path`, `val_path`: the two files written.
    - `num_train_episodes`, `num_val_episodes`: episodes in each file.
    - `num_rows`: rows (transitions) written over both files.
    - `num_retries`: episodes collected again because they failed the scene health check.
    - `seconds`: wall-clock time of the collection and the writes.
    - `num_resumed_episodes`: episodes recovered from the chunks of an interrupted call.
    """

    train_path: Path
    val_path: Path
    num_train_episodes: int
    num_val_episodes: int
    num_rows: int
    num_retries: int
    seconds: float
    num_resumed_episodes: int = 0


class DatasetSummary(NamedTuple):
    """What `validate_ogbench_file` found in a valid file.

    **Fields:**

    - `path`: the file.
    - `domain`: the domain inferred from the file name (`None` if the name is not OGBench's).
    - `num_rows`, `num_episodes`, `episode_length`: the episode structure.
    - `obs_dim`, `action_dim`: widths of `observations` and `actions`.
    - `keys`: the arrays in the file, in file order.
    """

    path: Path
    domain: str | None
    num_rows: int
    num_episodes: int
    episode_length: int
    obs_dim: int
    action_dim: int
    keys: tuple[str, ...]


class OGBenchDatasets(NamedTuple):
    """The environment and the two datasets returned by OGBench's loader.

    **Fields:**

    - `env`: the OGBench environment for the name (the single-task evaluation environment for a
      `...-singletask-...` name), as created by `ogbench.make_env_and_datasets`.
    - `train`, `val`: OGBench's dataset dicts (`observations`, `actions`, `next_observations`,
      `terminals`, and for single-task names `rewards` and `masks` relabelled by OGBench).
    """

    env: Any
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------------------


def _parse_name(env_name: str) -> tuple[str, str | None, str]:
    """Splits an OGBench manipulation name into `(domain, kind or None, task suffix)`."""
    match = _NAME_RE.match(env_name)
    if match is None:
        raise ValueError(
            f"Unsupported OGBench name {env_name!r}: expected '{{domain}}[-play|-play-ft]"
            f"[-singletask[-taskN]]-v0' with domain one of {', '.join(OGBENCH_DOMAINS)} "
            "(e.g. 'cube-single-play-singletask-task1-v0')."
        )
    return match["domain"], match["kind"], match["task"] or ""


def _check_domain(domain: str) -> _Domain:
    if domain not in _DOMAINS:
        raise ValueError(f"Unknown OGBench domain {domain!r}; expected one of {', '.join(OGBENCH_DOMAINS)}.")
    return _DOMAINS[domain]


def _check_kind(kind: str) -> None:
    if kind not in DATASET_KINDS:
        raise ValueError(f"Unknown dataset kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}.")


def _resolve_dir(dataset_dir: str | os.PathLike[str] | None) -> Path:
    return Path(os.path.expanduser(os.fspath(DEFAULT_DATASET_DIR if dataset_dir is None else dataset_dir)))


def val_path_for(path: str | os.PathLike[str]) -> Path:
    """The validation file that goes with a training file: `NAME.npz` -> `NAME-val.npz`.

    **Arguments:**

    - `path`: a training file path ending in `.npz`.

    **Returns:**

    The path of its `-val.npz` companion, in the same directory.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"OGBench dataset files end in '.npz', got {str(path)!r}")
    return path.with_name(path.stem + "-val.npz")


def dataset_paths(
    env_name: str, dataset_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, Path, Path, Path]:
    """The four dataset files behind an OGBench manipulation task.

    **Arguments:**

    - `env_name`: an OGBench name such as `cube-single-play-singletask-task1-v0`,
      `cube-single-play-v0` or `cube-single-singletask-task1-v0`; only its domain matters.
    - `dataset_dir`: the dataset directory (default `~/.ogbench/data`, OGBench's default).

    **Returns:**

    `(play, play_val, play_ft, play_ft_val)`: the paths of `{domain}-play-v0.npz`,
    `{domain}-play-v0-val.npz`, `{domain}-play-ft-v0.npz` and `{domain}-play-ft-v0-val.npz`.

    !!! Example

        ```python
        train, val, ft_train, ft_val = dataset_paths("scene-play-singletask-task2-v0", "data")
        # data/scene-play-v0.npz, data/scene-play-v0-val.npz, data/scene-play-ft-v0.npz, ...
        ```
    """
    domain, _, _ = _parse_name(env_name)
    root = _resolve_dir(dataset_dir)
    play = root / f"{domain}-play-v0.npz"
    play_ft = root / f"{domain}-play-ft-v0.npz"
    return play, val_path_for(play), play_ft, val_path_for(play_ft)


def generate_command(
    domain: str,
    kind: str,
    dataset_dir: str | os.PathLike[str] | None = None,
    *,
    identity: "DatasetIdentity | None" = None,
    overwrite: bool = False,
) -> str:
    """The `infom data generate ...` command line that writes a domain's dataset files.

    With `identity`, the command makes exactly that dataset (its episodes, validation
    episodes, episode length and seed, where they differ from the command's defaults).
    """
    command = f"infom data generate {domain} --kind {kind}"
    if identity is not None:
        if identity.num_episodes != REFERENCE_EPISODES[kind]:
            command += f" --episodes {identity.num_episodes}"
        if identity.num_val_episodes != default_val_episodes(identity.num_episodes):
            command += f" --val-episodes {identity.num_val_episodes}"
        if identity.episode_length != EPISODE_LENGTH:
            command += f" --episode-length {identity.episode_length}"
        if identity.seed != 0:
            command += f" --seed {identity.seed}"
    if dataset_dir is not None and _resolve_dir(dataset_dir) != _resolve_dir(None):
        command += f" --dataset-dir {os.fspath(dataset_dir)}"
    if overwrite:
        command += " --overwrite"
    return command


# ---------------------------------------------------------------------------------------
# Identity: what made a dataset, written beside it
# ---------------------------------------------------------------------------------------

GENERATOR = "infom-plan-oracle"
"""The name of this module's collection procedure, recorded in every identity."""

GENERATOR_VERSION = 1
"""Bumped whenever the collection procedure changes what it writes for the same request."""


class DatasetMismatchError(DatasetError):
    """Dataset files exist but were made for another request (size, episode length, seed or
    generator); the message names the file and the command that makes the requested data."""


@dataclasses.dataclass(frozen=True)
class DatasetIdentity:
    """What made a dataset: enough to make the same bytes again.

    **Fields:**

    - `domain`, `kind`: e.g. `"cube-single"`, `"play"`.
    - `num_episodes`, `num_val_episodes`: episodes in the training and validation files.
    - `episode_length`: rows per episode.
    - `seed`: the base seed of [`generate_dataset`][].
    - `generator`, `generator_version`: the collection procedure (`GENERATOR`,
      `GENERATOR_VERSION`); `"unrecorded"` for files that came without an identity
      (e.g. OGBench's published files).
    """

    domain: str
    kind: str
    num_episodes: int
    num_val_episodes: int
    episode_length: int
    seed: int = 0
    generator: str = GENERATOR
    generator_version: int = GENERATOR_VERSION

    def describe(self) -> str:
        """One line, e.g. `300 + 30 episodes x 1001 steps, seed 0 (infom-plan-oracle v1)`."""
        origin = (
            "origin unrecorded"
            if self.generator == "unrecorded"
            else f"seed {self.seed}, {self.generator} v{self.generator_version}"
        )
        return (
            f"{self.num_episodes} + {self.num_val_episodes} episodes x {self.episode_length} steps, {origin}"
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> "DatasetIdentity":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def requested_identity(
    domain: str, kind: str, num_episodes: int, *, episode_length: int = EPISODE_LENGTH, seed: int = 0
) -> DatasetIdentity:
    """The identity of the dataset [`generate_dataset`][] makes for this request (validation
    episodes: OGBench's 10%)."""
    return DatasetIdentity(
        domain=domain,
        kind=kind,
        num_episodes=num_episodes,
        num_val_episodes=default_val_episodes(num_episodes),
        episode_length=episode_length,
        seed=seed,
    )


def identity_path(train_path: str | os.PathLike[str]) -> Path:
    """The identity record of a dataset: `NAME.npz` -> `NAME.identity.json` (it covers both
    `NAME.npz` and `NAME-val.npz`)."""
    train_path = Path(train_path)
    return train_path.with_name(train_path.stem + ".identity.json")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _identity_record(identity: DatasetIdentity, files: dict[str, bytes | Path]) -> dict[str, Any]:
    import ogbench

    record = identity.to_json()
    record["ogbench_version"] = getattr(ogbench, "__version__", "unknown")
    record["files"] = {}
    for name, content in files.items():
        if isinstance(content, Path):
            record["files"][name] = {"bytes": content.stat().st_size, "sha256": file_sha256(content)}
        else:
            record["files"][name] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    return record


def read_identity(train_path: str | os.PathLike[str]) -> tuple[DatasetIdentity, dict[str, Any]] | None:
    """The identity recorded beside a dataset and its file records (`{name: {bytes, sha256}}`),
    or `None` if there is no identity file.

    **Raises:** `DatasetError` naming the identity file if it cannot be read.
    """
    path = identity_path(train_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return DatasetIdentity.from_json(record), dict(record["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{path}: not a readable dataset identity record ({error})") from None


def _count_episodes(train_path: Path) -> tuple[int, int]:
    """`(episodes, rows per episode)` of a file, from its `terminals` alone."""
    try:
        with np.load(train_path, allow_pickle=False) as archive:
            terminals = archive["terminals"]
    except Exception as error:
        raise DatasetError(f"{train_path}: key 'terminals' could not be read ({error})") from None
    ends = np.flatnonzero(terminals)
    if len(ends) == 0:
        raise DatasetError(f"{train_path}: key 'terminals' marks no episode end")
    return len(ends), int(ends[0]) + 1


def existing_identity(train_path: str | os.PathLike[str]) -> DatasetIdentity | None:
    """The identity of the dataset at `train_path`: the recorded one, or, for files that came
    without a record (such as OGBench's published files), one read off the files with
    `generator="unrecorded"`. `None` if either file is missing."""
    train_path = Path(train_path)
    val_path = val_path_for(train_path)
    if not (train_path.is_file() and val_path.is_file()):
        return None
    recorded = read_identity(train_path)
    if recorded is not None:
        return recorded[0]
    match = _FILE_RE.match(train_path.name)
    episodes, length = _count_episodes(train_path)
    val_episodes, _ = _count_episodes(val_path)
    return DatasetIdentity(
        domain=match["domain"] if match else "unknown",
        kind="play-ft" if "-play-ft-" in train_path.name else "play",
        num_episodes=episodes,
        num_val_episodes=val_episodes,
        episode_length=length,
        seed=-1,
        generator="unrecorded",
        generator_version=0,
    )


def check_dataset(
    train_path: str | os.PathLike[str],
    wanted: DatasetIdentity,
    dataset_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Whether the requested dataset is at `train_path` (`True`) or missing (`False`).

    Files with an identity record must match `wanted` exactly; files without one (e.g.
    OGBench's published files) are accepted when their episode counts and length match.

    **Raises:** `DatasetMismatchError` naming the file, what it holds, what was asked for and
    the command that makes the right data, when the files hold another dataset.
    """
    train_path = Path(train_path)
    have = existing_identity(train_path)
    if have is None:
        return False
    if have.generator == "unrecorded":
        same = (have.num_episodes, have.num_val_episodes, have.episode_length) == (
            wanted.num_episodes,
            wanted.num_val_episodes,
            wanted.episode_length,
        )
    else:
        same = have == wanted
    if not same:
        command = generate_command(wanted.domain, wanted.kind, dataset_dir, identity=wanted, overwrite=True)
        raise DatasetMismatchError(
            f"{train_path} holds another dataset than this run asks for:\n"
            f"    found:     {have.describe()}\n"
            f"    requested: {wanted.describe()}\n"
            "Make the requested data (this replaces the files) with:\n"
            f"    {command}\n"
            "or keep these files and give the run another --dataset-dir."
        )
    return True


def verify_files(train_path: str | os.PathLike[str]) -> dict[str, str]:
    """The SHA-256 of a dataset's two files, `{file name: hex digest}`, checked against the
    identity record where there is one.

    **Raises:** `DatasetError` naming the file whose bytes differ from its record.
    """
    train_path = Path(train_path)
    recorded = read_identity(train_path)
    digests = {}
    for path in (train_path, val_path_for(train_path)):
        digests[path.name] = file_sha256(path)
        if recorded is not None:
            expected = recorded[1].get(path.name, {}).get("sha256")
            if expected != digests[path.name]:
                raise DatasetError(
                    f"{path}: its bytes differ from {identity_path(train_path).name} (sha256 "
                    f"{digests[path.name][:12]}..., recorded {str(expected)[:12]}...): the file was changed "
                    "or damaged after it was generated; generate it again with --overwrite"
                )
    return digests


# ---------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------


def _seed_pair(seed: int, kind: str, split: str, index: int, attempt: int) -> tuple[int, int]:
    """Two independent 32-bit seeds (environment, NumPy global RNG) for one episode attempt."""
    spawn_key = (_KIND_STREAM[kind], _SPLIT_STREAM[split], index, attempt)
    sequence = np.random.SeedSequence(seed, spawn_key=spawn_key)
    env_seed, numpy_seed = sequence.generate_state(2)
    return int(env_seed), int(numpy_seed)


def _scene_is_healthy(qpos: np.ndarray) -> bool:
    """OGBench's health check for scene episodes: the cube stays visible unless it is in the drawer."""
    block_xyz = qpos[:, 14:17]
    too_far_right = bool((block_xyz[:, 1] >= 0.29).any())
    left_outside_drawer = (block_xyz[:, 1] <= -0.3) & ((block_xyz[:, 2] < 0.06) | (block_xyz[:, 2] > 0.08))
    return not too_far_right and not bool(left_outside_drawer.any())


class _Collector:
    """One data-collection environment and its plan oracles (one per process)."""

    def __init__(self, domain: str, episode_length: int):
        import gymnasium
        import ogbench.manipspace  # noqa: F401  (registers the environments)
        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
        from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

        self.domain = domain
        self.episode_length = episode_length
        with _quiet_gymnasium():
            self.env = gymnasium.make(
                _DOMAINS[domain].collection_env,
                terminate_at_goal=False,
                mode="data_collection",
                max_episode_steps=episode_length,
            )
        # OGBench's protocol: plan oracles with noise 0.1 and noise smoothing 0.5.
        noise = dict(noise=0.1, noise_smoothing=0.5)
        classes = {
            "cube": CubePlanOracle,
            "button": ButtonPlanOracle,
            "drawer": DrawerPlanOracle,
            "window": WindowPlanOracle,
        }
        if domain == "puzzle-4x4":
            self.oracles = {"button": ButtonPlanOracle(env=self.env, gripper_always_closed=True, **noise)}
        else:
            self.oracles = {task: classes[task](env=self.env, **noise) for task in _DOMAINS[domain].oracles}

    def _p_stack(self) -> float:
        # OGBench's per-episode cube-stacking probability (drawn from NumPy's global RNG).
        if self.domain == "cube-single":
            return 0.0
        if self.domain == "cube-double":
            return float(np.random.uniform(0.0, 0.25))
        return 0.5

    def episode(self, env_seed: int, numpy_seed: int) -> dict[str, np.ndarray]:
        """Collects one episode; rows are `(s_t, a_t)` with the state before the action."""
        np.random.seed(numpy_seed)
        env = self.env
        with _quiet_gymnasium():
            ob, info = env.reset(seed=env_seed)
        p_stack = self._p_stack()
        oracle = self.oracles[info["privileged/target_task"]]
        oracle.reset(ob, info)
        rows: dict[str, list] = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": []}
        has_buttons = _DOMAINS[self.domain].num_buttons > 0
        if has_buttons:
            rows["button_states"] = []
        done = False
        while not done:
            action = np.clip(np.asarray(oracle.select_action(ob, info)), -1.0, 1.0)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = bool(terminated or truncated)
            if oracle.done:
                # A new target as soon as the oracle has finished its plan.
                target_ob, target_info = env.unwrapped.set_new_target(p_stack=p_stack)
                oracle = self.oracles[target_info["privileged/target_task"]]
                oracle.reset(target_ob, target_info)
            rows["observations"].append(ob)
            rows["actions"].append(action)
            rows["terminals"].append(done)
            rows["qpos"].append(info["prev_qpos"])
            rows["qvel"].append(info["prev_qvel"])
            if has_buttons:
                rows["button_states"].append(info["prev_button_states"])
            ob = next_ob
        return {key: np.asarray(value, dtype=_DTYPES[key]) for key, value in rows.items()}

    def healthy_episode(
        self, seed: int, kind: str, split: str, index: int
    ) -> tuple[dict[str, np.ndarray], int]:
        """Collects episode `index`, again with fresh seeds until it passes OGBench's health check."""
        for attempt in range(1000):
            episode = self.episode(*_seed_pair(seed, kind, split, index, attempt))
            if len(episode["terminals"]) != self.episode_length:
                raise RuntimeError(f"{self.domain} episode {index} has {len(episode['terminals'])} rows")
            if self.domain != "scene" or _scene_is_healthy(episode["qpos"]):
                return episode, attempt
        raise RuntimeError(f"{self.domain} episode {index} failed the health check 1000 times")


_DTYPES = {
    "observations": np.float32,
    "actions": np.float32,
    "terminals": np.bool_,
    "qpos": np.float32,
    "qvel": np.float32,
    "button_states": np.int64,
}


@contextlib.contextmanager
def _quiet_gymnasium() -> Iterator[None]:
    """Silences gymnasium's float64-to-float32 `Box` precision warning for OGBench's spaces."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*precision lowered by casting to float32", category=UserWarning
        )
        yield


def _prepare_worker_process() -> None:
    """Settings for worker processes only (never the caller's process).

    Workers never render, so MuJoCo's OpenGL set-up (and its warning when there is no display)
    is skipped, and gymnasium's `Box` precision warning about OGBench's float64 bounds is silenced.
    """
    import signal
    import warnings

    os.environ.setdefault("MUJOCO_GL", "disable")
    warnings.filterwarnings(
        "ignore", message=r".*precision lowered by casting to float32", category=UserWarning
    )
    # Ctrl-C reaches the whole process group: only the parent handles it (it then stops the
    # workers), so an interruption prints one line instead of a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_WORKER_COLLECTOR: _Collector | None = None


def _init_worker(domain: str, episode_length: int) -> None:
    global _WORKER_COLLECTOR
    _prepare_worker_process()
    _WORKER_COLLECTOR = _Collector(domain, episode_length)


def _worker_episode(task: tuple[int, str, str, int]) -> tuple[dict[str, np.ndarray], int]:
    assert _WORKER_COLLECTOR is not None
    return _WORKER_COLLECTOR.healthy_episode(*task)


def _process_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context for environment workers: `forkserver` (never `fork`).

    The parent may have initialised JAX, which must not be forked. Workers fork from a
    server process that has imported `infom` once, so starting a worker costs milliseconds
    rather than a fresh interpreter's imports.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - non-POSIX
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["infom.envs.ogbench._datasets", "infom.envs.ogbench._evaluation"])
    return context


def _collect(
    domain: str,
    tasks: list[tuple[int, str, str, int]],
    episode_length: int,
    num_workers: int,
    on_episode: Callable[[], None],
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Yields `(episode, retries)` for each task, in task order."""
    if num_workers == 1:
        # In this process; NumPy's global RNG (used by the oracles) is restored afterwards.
        state = np.random.get_state()
        try:
            collector = _Collector(domain, episode_length)
            for task in tasks:
                yield collector.healthy_episode(*task)
                on_episode()
        finally:
            np.random.set_state(state)
        return
    pool = _process_context().Pool(num_workers, initializer=_init_worker, initargs=(domain, episode_length))
    with pool:
        for result in pool.imap(_worker_episode, tasks, chunksize=1):
            yield result
            on_episode()
        pool.close()
        pool.join()


class GenerationInterrupted(KeyboardInterrupt):
    """Generation was interrupted (Ctrl-C or SIGTERM); the completed chunks of episodes are kept
    and the same call (or command) continues from them. The message says how many."""


def partial_dir_for(path: str | os.PathLike[str]) -> Path:
    """Where [`generate_dataset`][] keeps the completed chunks of an unfinished dataset:
    `DIR/.NAME.partial/` next to `DIR/NAME.npz`."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial")


def generate_dataset(
    domain: str,
    path: str | os.PathLike[str],
    *,
    num_episodes: int,
    num_val_episodes: int | None = None,
    kind: str = "play",
    seed: int = 0,
    num_workers: int = 2,
    episode_length: int = EPISODE_LENGTH,
    overwrite: bool = False,
    progress: bool = True,
    on_episode: Callable[[bool], None] | None = None,
    chunk_episodes: int = 10,
) -> GenerationSummary:
    """Collects an OGBench "play" dataset with the scripted plan oracles and writes it in OGBench's format.

    Follows OGBench's collection protocol (its `generate_manipspace.py`): the data-collection
    environment `gymnasium.make(f"{domain}-v0", terminate_at_goal=False,
    mode="data_collection", max_episode_steps=episode_length)`; plan oracles with noise 0.1 and
    smoothing 0.5 (puzzle: the button oracle with `gripper_always_closed=True`); a cube-stacking
    probability of 0 (cube-single), `U(0, 0.25)` per episode (cube-double) or 0.5 (otherwise);
    a new target from `set_new_target` whenever the oracle finishes; scene episodes that fail
    OGBench's health check are collected again. Each row holds the state *before* its action
    (`observations`, `qpos`, `qvel`, `button_states`), the clipped action, and `terminals`
    (True on each episode's last row).

    Every episode attempt is seeded on its own (environment and NumPy's global RNG, which the
    oracles use) from `(seed, kind, split, episode, attempt)`, so the files are identical for a
    given seed whatever the number of workers, `play` and `play-ft` never share an episode, and
    a smaller dataset is a prefix of a larger one. The files are written byte for byte
    reproducibly (fixed zip timestamps).

    **Interruption and resumption.** Episodes are kept in chunks of `chunk_episodes` in
    `DIR/.NAME.partial/` (see `partial_dir_for`) as they complete; an interrupted call
    (Ctrl-C, SIGTERM turned into `KeyboardInterrupt`, a crash) loses at most the chunk in
    progress, and the same call again continues from the last completed chunk, ending with the
    same bytes as an uninterrupted one. Chunks of a different request are discarded.

    **Writes.** Both files are written atomically (a temporary file in the same directory, then
    `os.replace`), validation file first, then the identity record `NAME.identity.json`
    ([`DatasetIdentity`][] plus each file's size and SHA-256); the chunks are removed last.

    **Arguments:**

    - `domain`: one of `cube-single`, `cube-double`, `scene`, `puzzle-4x4`.
    - `path`: the training file, e.g. `~/.ogbench/data/cube-single-play-v0.npz`; the
      validation file is written next to it as `...-val.npz`.
    - `num_episodes`: training episodes.
    - `num_val_episodes`: validation episodes (default: 10% of `num_episodes`, at least 1).
    - `kind`: `"play"` or `"play-ft"`; selects an independent seed stream.
    - `seed`: the base seed.
    - `num_workers`: worker processes, one per core; `1` collects in this process.
    - `episode_length`: rows per episode (OGBench's 1001; smaller only for tests).
    - `overwrite`: replace existing files instead of raising `FileExistsError`.
    - `progress`: show a progress bar over episodes (on stderr).
    - `on_episode`: called once per episode, with `True` when it was collected and `False`
      when it was recovered from a chunk (for a caller's own progress display).
    - `chunk_episodes`: episodes per kept chunk.

    **Returns:**

    A `GenerationSummary`.

    **Raises:** `GenerationInterrupted` (a `KeyboardInterrupt`) saying what was kept.

    !!! Example

        ```python
        train, val, _, _ = infom.dataset_paths("cube-single-play-singletask-task1-v0")
        infom.generate_dataset("cube-single", train, num_episodes=1000, seed=0)
        ```
    """
    _check_domain(domain)
    _check_kind(kind)
    for name, value in (("num_episodes", num_episodes), ("num_workers", num_workers)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if num_val_episodes is None:
        num_val_episodes = default_val_episodes(num_episodes)
    if num_val_episodes < 1:
        raise ValueError(f"num_val_episodes must be at least 1, got {num_val_episodes}")
    if episode_length < 2:
        raise ValueError(f"episode_length must be at least 2, got {episode_length}")
    if chunk_episodes < 1:
        raise ValueError(f"chunk_episodes must be at least 1, got {chunk_episodes}")
    train_path = Path(os.path.expanduser(os.fspath(path)))
    val_path = val_path_for(train_path)
    if not overwrite:
        for existing in (train_path, val_path):
            if existing.exists():
                raise FileExistsError(
                    f"{existing} already exists; pass overwrite=True (--overwrite) to replace it."
                )
    identity = DatasetIdentity(
        domain=domain,
        kind=kind,
        num_episodes=num_episodes,
        num_val_episodes=num_val_episodes,
        episode_length=episode_length,
        seed=seed,
    )
    train_path.parent.mkdir(parents=True, exist_ok=True)
    chunks = _ChunkStore(partial_dir_for(train_path), identity, chunk_episodes)

    start = time.perf_counter()
    counts = {"train": num_episodes, "val": num_val_episodes}
    # Episodes already kept from an interrupted call, then the rest, collected in task order.
    done: dict[tuple[str, int], tuple[dict[str, np.ndarray], np.ndarray]] = chunks.load()
    tasks = [
        (seed, kind, split, i)
        for split in ("train", "val")
        for i in range(counts[split])
        if (split, i // chunk_episodes) not in done
    ]
    resumed = sum(len(attempts) for _, attempts in done.values())
    total = num_episodes + num_val_episodes
    with _progress_bar(total, f"{domain}-{kind}", progress) as bar:
        bar.update(resumed)
        for _ in range(resumed if on_episode is not None else 0):
            on_episode(False)
        pending: dict[tuple[str, int], list[tuple[dict[str, np.ndarray], int]]] = {}
        collected = 0
        try:
            if tasks:
                results = _collect(domain, tasks, episode_length, min(num_workers, len(tasks)), bar.update)
                for (_, _, split, index), result in zip(tasks, results, strict=True):
                    collected += 1
                    if on_episode is not None:
                        on_episode(True)
                    chunk = (split, index // chunk_episodes)
                    pending.setdefault(chunk, []).append(result)
                    if len(pending[chunk]) == chunks.size(chunk, counts[split]):
                        done[chunk] = chunks.save(chunk, pending.pop(chunk))
        except KeyboardInterrupt:
            kept = sum(len(attempts) for _, attempts in done.values())
            raise GenerationInterrupted(
                f"generation of {train_path.name} interrupted: {kept} of {total} episodes are kept in "
                f"{chunks.directory} ({resumed + collected - kept} in an unfinished chunk were dropped); "
                "the same command continues from there"
            ) from None
    splits = {}
    for split in ("train", "val"):
        parts = [done[(split, c)][0] for c in range(-(-counts[split] // chunk_episodes))]
        splits[split] = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    retries = int(sum(int(attempts.sum()) for _, attempts in done.values()))
    _write_pair_atomic(train_path, splits["train"], val_path, splits["val"], identity)
    chunks.remove()
    return GenerationSummary(
        train_path=train_path,
        val_path=val_path,
        num_train_episodes=num_episodes,
        num_val_episodes=num_val_episodes,
        num_rows=(num_episodes + num_val_episodes) * episode_length,
        num_retries=retries,
        seconds=time.perf_counter() - start,
        num_resumed_episodes=resumed,
    )


class _ChunkStore:
    """The completed chunks of an unfinished dataset: `{split}-{chunk:05d}.npz` files (rows of
    `chunk_episodes` episodes plus their `_attempts`) and the request they belong to."""

    def __init__(self, directory: Path, identity: DatasetIdentity, chunk_episodes: int):
        self.directory = directory
        self.chunk_episodes = chunk_episodes
        self.request = {**identity.to_json(), "chunk_episodes": chunk_episodes}
        request_file = directory / "request.json"
        if directory.exists():
            try:
                same = json.loads(request_file.read_text()) == self.request
            except (OSError, ValueError):
                same = False
            if not same:  # chunks of another request (or a torn request file): start over
                self.remove()
        directory.mkdir(parents=True, exist_ok=True)
        if not request_file.exists():
            atomic_write_bytes(request_file, (json.dumps(self.request, sort_keys=True) + "\n").encode())

    def size(self, chunk: tuple[str, int], count: int) -> int:
        return min(self.chunk_episodes, count - chunk[1] * self.chunk_episodes)

    def _path(self, chunk: tuple[str, int]) -> Path:
        return self.directory / f"{chunk[0]}-{chunk[1]:05d}.npz"

    def load(self) -> dict[tuple[str, int], tuple[dict[str, np.ndarray], np.ndarray]]:
        kept = {}
        length = self.request["episode_length"]
        for file in sorted(self.directory.glob("*.npz")):
            match = re.fullmatch(r"(train|val)-(\d{5})\.npz", file.name)
            if match is None:
                continue
            chunk = (match[1], int(match[2]))
            count = self.request["num_episodes" if chunk[0] == "train" else "num_val_episodes"]
            try:
                with np.load(file, allow_pickle=False) as archive:
                    arrays = {key: archive[key] for key in archive.files}
                attempts = arrays.pop("_attempts")
                if len(attempts) != self.size(chunk, count) or any(
                    len(v) != len(attempts) * length for v in arrays.values()
                ):
                    raise ValueError("wrong size")
            except Exception:  # a damaged chunk is collected again
                file.unlink(missing_ok=True)
                continue
            kept[chunk] = (arrays, attempts)
        return kept

    def save(
        self, chunk: tuple[str, int], results: list[tuple[dict[str, np.ndarray], int]]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        arrays = {key: np.concatenate([episode[key] for episode, _ in results]) for key in results[0][0]}
        attempts = np.array([attempt for _, attempt in results], dtype=np.int64)
        buffer = io.BytesIO()
        _write_npz(buffer, {**arrays, "_attempts": attempts}, compress=False)
        atomic_write_bytes(self._path(chunk), buffer.getvalue())
        return arrays, attempts

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def _progress_bar(total: int, description: str, enabled: bool) -> Iterator[Any]:
    # tqdm.auto picks the notebook widget in Jupyter, which warns without ipywidgets even when
    # disabled: a disabled bar needs no widget.
    if enabled:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="episode", disable=not enabled, dynamic_ncols=True) as bar:
        yield bar


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _write_npz(file: Any, arrays: dict[str, np.ndarray], *, compress: bool = True) -> None:
    """`np.savez[_compressed]` with fixed member timestamps, so equal arrays give equal bytes.

    The result is an ordinary `.npz` archive (one `KEY.npy` member per array) that `np.load`
    and OGBench's loader read as usual.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(file, mode="w", compression=method, allowZip64=True) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(value), allow_pickle=False)


def _write_pair_atomic(
    train_path: Path,
    train: dict[str, np.ndarray],
    val_path: Path,
    val: dict[str, np.ndarray],
    identity: DatasetIdentity,
) -> None:
    """Writes both files and then their identity record, each atomically (validation file first)."""
    contents = {}
    for path, arrays in ((val_path, val), (train_path, train)):
        buffer = io.BytesIO()
        _write_npz(buffer, arrays)
        contents[path] = buffer.getvalue()
    identity_file = identity_path(train_path)
    identity_file.unlink(missing_ok=True)  # files never sit beside a stale identity
    for path, content in contents.items():
        atomic_write_bytes(path, content)
    record = _identity_record(identity, {path.name: content for path, content in contents.items()})
    atomic_write_bytes(identity_file, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

_REQUIRED = {
    "observations": (np.float32, 2),
    "actions": (np.float32, 2),
    "terminals": (np.bool_, 1),
    "qpos": (np.float32, 2),
    "qvel": (np.float32, 2),
}
_OPTIONAL = {"button_states": (np.int64, 2)}


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    return read_npz(path)


def validate_ogbench_file(
    path: str | os.PathLike[str], *, episode_length: int | None = None
) -> DatasetSummary:
    """Checks that a file is a well-formed OGBench manipulation dataset.

    Checks the required keys (`observations`, `actions`, `terminals`, `qpos`, `qvel`, plus
    `button_states` for scene and puzzle-4x4) and their dtypes and ranks, equal row counts,
    the episode structure (`terminals` True exactly on each episode's last row, all episodes
    of one length), finite values, actions in `[-1, 1]`, and, when the file name is OGBench's
    (`{domain}-play[-ft]-v0[-val].npz`), the widths of that domain.

    **Arguments:**

    - `path`: the `.npz` file.
    - `episode_length`: the required episode length (default: inferred from the first
      episode; every episode must have that length).

    **Returns:**

    A `DatasetSummary`.

    **Raises:**

    `DatasetError` (a `ValueError`) whose message names the file and, where it applies, the key.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    arrays = _read_arrays(path)

    def fail(message: str) -> DatasetError:
        return DatasetError(f"{path}: {message}")

    match = _FILE_RE.match(path.name)
    domain = match["domain"] if match else None
    required = dict(_REQUIRED)
    if domain is not None and _DOMAINS[domain].num_buttons > 0:
        required.update(_OPTIONAL)
    for key in required:
        if key not in arrays:
            raise fail(f"missing required key {key!r} (found {sorted(arrays)})")
    for key, (dtype, ndim) in {**required, **_OPTIONAL}.items():
        if key not in arrays:
            continue
        array = arrays[key]
        if array.dtype != dtype:
            raise fail(f"key {key!r} has dtype {array.dtype}, expected {np.dtype(dtype)}")
        if array.ndim != ndim:
            raise fail(f"key {key!r} has shape {array.shape}, expected {ndim} dimension(s)")

    num_rows = len(arrays["observations"])
    for key in [*required, *(k for k in _OPTIONAL if k in arrays)]:
        if len(arrays[key]) != num_rows:
            raise fail(f"key {key!r} has {len(arrays[key])} rows but 'observations' has {num_rows}")
    if num_rows == 0:
        raise fail("key 'observations' has no rows")

    if domain is not None:
        spec = _DOMAINS[domain]
        widths = {
            "observations": spec.obs_dim,
            "actions": spec.action_dim,
            "qpos": spec.qpos_dim,
            "qvel": spec.qvel_dim,
        }
        if spec.num_buttons:
            widths["button_states"] = spec.num_buttons
        for key, width in widths.items():
            if arrays[key].shape[1] != width:
                raise fail(f"key {key!r} has width {arrays[key].shape[1]}, expected {width} for {domain}")

    for key in ("observations", "actions", "qpos", "qvel"):
        bad = ~np.isfinite(arrays[key])
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise fail(f"key {key!r} has {int(bad.sum())} non-finite values (first in row {row})")
    actions = arrays["actions"]
    if actions.min() < -1.0 or actions.max() > 1.0:
        raise fail(f"key 'actions' has values outside [-1, 1] (min {actions.min()}, max {actions.max()})")

    ends = np.flatnonzero(arrays["terminals"])
    if len(ends) == 0 or ends[-1] != num_rows - 1:
        raise fail("key 'terminals' must be True on the last row (each episode ends with a terminal row)")
    lengths = np.diff(np.concatenate([[-1], ends]))
    expected = int(lengths[0]) if episode_length is None else episode_length
    wrong = np.flatnonzero(lengths != expected)
    if len(wrong):
        raise fail(
            f"key 'terminals' gives episode {int(wrong[0])} a length of {int(lengths[wrong[0]])}, "
            f"expected {expected} (rows per episode)"
        )
    return DatasetSummary(
        path=path,
        domain=domain,
        num_rows=num_rows,
        num_episodes=len(ends),
        episode_length=expected,
        obs_dim=int(arrays["observations"].shape[1]),
        action_dim=int(actions.shape[1]),
        keys=tuple(arrays),
    )


# ---------------------------------------------------------------------------------------
# Loading through OGBench
# ---------------------------------------------------------------------------------------


def load_ogbench(
    env_name: str,
    *,
    dataset_dir: str | os.PathLike[str] | None = None,
    kind: str | None = None,
    compact_dataset: bool = False,
    add_info: bool = False,
    validate: bool = True,
    **env_kwargs: Any,
) -> OGBenchDatasets:
    """Loads locally generated OGBench files with OGBench's own loader; never downloads.

    Maps the name to its files (`dataset_paths`), checks that both the training and the
    validation file exist (and, with `validate`, that they are well-formed), then calls
    `ogbench.make_env_and_datasets(name, dataset_path=...)`. OGBench therefore builds the
    environment and, for `...-singletask-...` names, relabels rewards and masks with its own
    `relabel_dataset`. Passing `dataset_path` keeps OGBench from ever reaching its download code.

    **Arguments:**

    - `env_name`: e.g. `cube-single-play-singletask-task1-v0` (a `-play-ft-` name selects the
      fine-tuning files, as in the InFOM reference code).
    - `dataset_dir`: the dataset directory (default `~/.ogbench/data`).
    - `kind`: `"play"` (pre-training files) or `"play-ft"` (fine-tuning files); default: from
      the name, else `"play"`. An explicit `kind` wins over the name, so one task name serves
      both phases: `load_ogbench(task)` and `load_ogbench(task, kind="play-ft")`.
    - `compact_dataset`, `add_info`, `**env_kwargs`: passed to `ogbench.make_env_and_datasets`.
    - `validate`: run `validate_ogbench_file` on both files first.

    **Returns:**

    An `OGBenchDatasets` `(env, train, val)`.

    **Raises:**

    `DatasetNotFoundError` naming the `infom data generate ...` command when a file is missing;
    `DatasetError` when a file is malformed.
    """
    domain, name_kind, task = _parse_name(env_name)
    if kind is None:
        kind = name_kind or "play"
    _check_kind(kind)
    play, play_val, play_ft, play_ft_val = dataset_paths(env_name, dataset_dir)
    train_path, val_path = (play, play_val) if kind == "play" else (play_ft, play_ft_val)
    missing = [p for p in (train_path, val_path) if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"OGBench dataset file(s) not found: {', '.join(map(str, missing))}. These datasets are "
            "generated locally, never downloaded. Create them with:\n"
            f"    {generate_command(domain, kind, dataset_dir)}"
        )
    if os.fspath(train_path).replace(".npz", "-val.npz") != os.fspath(val_path):
        # OGBench derives the validation path with str.replace, which a '.npz' elsewhere would break.
        raise DatasetError(f"{train_path}: the dataset directory must not contain '.npz' in its name")
    if validate:
        validate_ogbench_file(train_path)
        validate_ogbench_file(val_path)

    import ogbench

    # OGBench's name parser expects exactly one dataset-type word before 'singletask'.
    ogbench_name = f"{domain}-play{task}-v0"
    with _quiet_gymnasium():
        env, train, val = ogbench.make_env_and_datasets(
            ogbench_name,
            dataset_path=os.fspath(train_path),
            compact_dataset=compact_dataset,
            add_info=add_info,
            **env_kwargs,
        )
    return OGBenchDatasets(env=env, train=train, val=val)


def eval_episode_length(domain: str) -> int:
    """OGBench's evaluation time limit: cube-single 200, cube-double 500, scene 750, puzzle-4x4 500 steps."""
    return _check_domain(domain).eval_episode_length
