"""ExORL's on-disk episode format: writing, validating and loading it as an offline dataset.

ExORL publishes each exploration episode as one `np.savez_compressed` file
`<root>/<domain>/<algorithm>/buffer/episode_{index}_{length}.npz` holding `length + 1` rows of

- `observation`: `float32[length + 1, obs_dim]`, row 0 the reset's observation, row `t` the
  observation after the `t`-th step;
- `action`: `float32[length + 1, action_dim]`, row `t >= 1` the action of the `t`-th step (row 0
  a placeholder);
- `reward`, `discount`: `float32[length + 1, 1]` (URLB's replay-buffer specs), row `t >= 1` the
  reward and discount of the `t`-th step (row 0 placeholders);
- `physics`: `float64[length + 1, physics_dim]`, `physics.get_state()` after each row's step.

Other keys (an exploration agent's meta data, such as a skill) may be present and are ignored.
"""

import os
import re
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Bool, Float, Float32, Float64

from ..._errors import DatasetError
from ..._files import atomic_write_bytes, read_npz
from ._names import check_domain, split_task_name
from ._tasks import task_reward


EPISODE_KEYS = ("observation", "action", "reward", "discount", "physics")
"""The arrays every ExORL episode file holds."""

# ExORL's published names (`episode_{index}_{length}.npz`) and URLB's replay buffer's
# (`{%Y%m%dT%H%M%S}_{index}_{length}.npz`), which the paper's data scripts also read.
_EPISODE_RE = re.compile(r"^(?:episode|\d{8}T\d{6})_(?P<index>\d+)_(?P<length>\d+)\.npz$")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_DTYPES = {
    "observation": np.float32,
    "action": np.float32,
    "reward": np.float32,
    "discount": np.float32,
    "physics": np.float64,
}


class ExorlEpisode(NamedTuple):
    """One ExORL episode file, validated: `rows = length + 1`, row 0 is the reset.

    **Fields:** `observation` `float32[rows, obs_dim]`, `action` `float32[rows, action_dim]`,
    `reward` `float32[rows]`, `discount` `float32[rows]`, `physics` `float64[rows, physics_dim]`
    (`reward` and `discount` are flattened from the file's `[rows, 1]`).
    """

    observation: Float32[np.ndarray, "rows obs_dim"]
    action: Float32[np.ndarray, "rows action_dim"]
    reward: Float32[np.ndarray, " rows"]
    discount: Float32[np.ndarray, " rows"]
    physics: Float64[np.ndarray, "rows physics_dim"]


class ExorlData(NamedTuple):
    """ExORL episodes laid out as transitions for an offline dataset (InFOM's layout).

    Episode `e` with rows `0..L` gives `L` transitions `t = 0..L-1`:
    `observations[t] = observation[t]`, `actions[t] = action[t + 1]`,
    `next_observations[t] = observation[t + 1]`, `rewards[t] = r(physics[t + 1])`,
    `masks[t] = discount[t + 1]` (1: ExORL's episodes end only at their time limit, they never
    terminate) and `terminals[t]` True on `t = L - 1`, the episode's last transition (a time-limit
    boundary, not a termination).

    **Fields:**

    - `observations`, `next_observations`: `float32[n, obs_dim]`.
    - `actions`: `float32[n, action_dim]`.
    - `rewards`: `float32[n]` relabelled with [`task_reward`][] for `load_exorl(..., task=...)`, or
      `None` for reward-free data (`task=None`).
    - `masks`: `float32[n]`.
    - `terminals`: `bool[n]`.
    - `num_episodes`: episodes read.
    - `source`: the buffer directory (for error messages).
    """

    observations: Float32[np.ndarray, "n obs_dim"]
    actions: Float32[np.ndarray, "n action_dim"]
    next_observations: Float32[np.ndarray, "n obs_dim"]
    rewards: Float32[np.ndarray, " n"] | None
    masks: Float32[np.ndarray, " n"]
    terminals: Bool[np.ndarray, " n"]
    num_episodes: int
    source: str


# ---------------------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------------------


def episode_filename(index: int, length: int) -> str:
    """ExORL's file name for episode `index` of `length` steps: `episode_{index:06d}_{length}.npz`."""
    if index < 0 or length < 1:
        raise ValueError(f"episode index must be >= 0 and length >= 1, got index={index}, length={length}")
    return f"episode_{index:06d}_{length}.npz"


def parse_episode_filename(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """`(index, length)` from an ExORL episode file name, or `None` if the name is not one."""
    match = _EPISODE_RE.match(Path(path).name)
    return None if match is None else (int(match["index"]), int(match["length"]))


def buffer_dir(root: str | os.PathLike[str], domain: str, algorithm: str) -> Path:
    """ExORL's episode directory `<root>/<domain>/<algorithm>/buffer`."""
    check_domain(domain)
    if not algorithm or os.sep in algorithm or algorithm in (".", ".."):
        raise ValueError(f"algorithm must be a plain directory name, got {algorithm!r}")
    return Path(os.path.expanduser(os.fspath(root))) / domain / algorithm / "buffer"


def episode_files(directory: str | os.PathLike[str]) -> list[tuple[int, int, Path]]:
    """The ExORL episode files in a buffer directory as `(index, length, path)`, by index.

    Names are ExORL's `episode_{index}_{length}.npz` or URLB's `{timestamp}_{index}_{length}.npz`;
    other files (temporary files, notes) are ignored. Episodes are ordered by their index as a number
    (the paper's scripts sort the names as strings, which is the same order for zero-padded indices).

    **Raises:** `DatasetError` naming both files when two files have the same index.
    """
    found: dict[int, tuple[int, int, Path]] = {}
    for path in Path(directory).iterdir():
        parsed = parse_episode_filename(path)
        if parsed is None or not path.is_file():
            continue
        index, length = parsed
        if index in found:
            raise DatasetError(f"{path}: episode index {index} is also in {found[index][2].name}")
        found[index] = (index, length, path)
    return [found[index] for index in sorted(found)]


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed `.npz` archive (as `np.savez_compressed` writes) with fixed member timestamps,
    so equal arrays give equal bytes."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(value), allow_pickle=False)
    return buffer.getvalue()


def write_episode(
    path: str | os.PathLike[str],
    observation: Float[np.ndarray, "rows obs_dim"],
    action: Float[np.ndarray, "rows action_dim"],
    reward: Float[np.ndarray, " rows"],
    discount: Float[np.ndarray, " rows"],
    physics: Float[np.ndarray, "rows physics_dim"],
) -> Path:
    """Writes one episode in ExORL's format, atomically.

    The arrays are stored as ExORL stores them (`observation`, `action` float32; `reward`,
    `discount` float32 of shape `[rows, 1]`; `physics` float64) in a compressed `.npz` with fixed
    timestamps (equal arrays give equal bytes), written to a temporary file in the same directory
    and moved into place with `os.replace`: a crash leaves the complete file or none.

    **Arguments:**

    - `path`: the file, named `episode_{index}_{length}.npz` with `length = rows - 1` (see
      `episode_filename`); its directory must exist.
    - `observation`, `action`, `reward`, `discount`, `physics`: `rows = length + 1` rows each, row 0
      the reset (its `action`, `reward` and `discount` are placeholders, ExORL uses 0, 0 and 1).

    **Returns:** the path written.

    **Raises:** `DatasetError` naming the file and the key for a name that disagrees with the
    rows, fewer than 2 rows, or non-finite values.
    """
    path = Path(path)
    arrays = {"observation": observation, "action": action, "reward": reward, "discount": discount}
    arrays["physics"] = physics
    rows = len(observation)
    parsed = parse_episode_filename(path)
    if parsed is None:
        raise DatasetError(f"{path}: not an ExORL episode file name ('episode_{{index}}_{{length}}.npz')")
    if rows < 2:
        raise DatasetError(f"{path}: key 'observation' has {rows} rows; an episode needs at least 2")
    if parsed[1] != rows - 1:
        raise DatasetError(
            f"{path}: the file name says length {parsed[1]} but key 'observation' has {rows} rows "
            f"(length + 1 = {parsed[1] + 1} expected)"
        )
    stored = {}
    for key, value in arrays.items():
        value = np.asarray(value, dtype=_DTYPES[key])
        if not np.isfinite(value).all():
            raise DatasetError(f"{path}: key {key!r} has non-finite values")
        stored[key] = value.reshape(rows, 1) if key in ("reward", "discount") else value
    atomic_write_bytes(path, _npz_bytes(stored))
    return path


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file does not exist")
    return read_npz(path, EPISODE_KEYS)  # other keys (an agent's meta data, e.g. a skill) are not needed


def read_episode(path: str | os.PathLike[str], *, domain: str | None = None) -> ExorlEpisode:
    """Reads and validates one ExORL episode file.

    Checks that the name is `episode_{index}_{length}.npz`, that the five keys are present with a
    floating dtype and the right rank (`reward`, `discount`: `[rows]` or `[rows, 1]`), that all
    have `rows = length + 1` rows (at least 2), that every value is finite, that actions (rows
    `1..`) lie in `[-1, 1]` and discounts in `[0, 1]`, and, with `domain`, the widths of that
    domain (`DOMAINS[domain]`).

    **Arguments:**

    - `path`: the `.npz` file.
    - `domain`: check the widths of this domain (e.g. `"walker"`), or `None`.

    **Returns:** an [`ExorlEpisode`][].

    **Raises:** `FileNotFoundError` if the file does not exist; `DatasetError` (a `ValueError`)
    whose message names the file and, where it applies, the key.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    parsed = parse_episode_filename(path)
    if parsed is None:
        raise DatasetError(f"{path}: not an ExORL episode file name ('episode_{{index}}_{{length}}.npz')")
    arrays = _read_npz(path)

    def fail(message: str) -> DatasetError:
        return DatasetError(f"{path}: {message}")

    for key in EPISODE_KEYS:
        if key not in arrays:
            raise fail(f"missing required key {key!r} (found {sorted(arrays)})")
    for key in EPISODE_KEYS:
        array = arrays[key]
        if not np.issubdtype(array.dtype, np.floating):
            raise fail(f"key {key!r} has dtype {array.dtype}, expected a floating dtype")
        if key in ("reward", "discount"):
            if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
                raise fail(f"key {key!r} has shape {array.shape}, expected [rows] or [rows, 1]")
        elif array.ndim != 2:
            raise fail(f"key {key!r} has shape {array.shape}, expected 2 dimensions")
    rows = len(arrays["observation"])
    for key in EPISODE_KEYS[1:]:
        if len(arrays[key]) != rows:
            raise fail(f"key {key!r} has {len(arrays[key])} rows but 'observation' has {rows}")
    if rows < 2:
        raise fail(f"key 'observation' has {rows} rows; an episode needs at least 2")
    if rows != parsed[1] + 1:
        raise fail(
            f"key 'observation' has {rows} rows but the file name says length {parsed[1]} "
            f"({parsed[1] + 1} rows: the reset plus one per step)"
        )
    for key in EPISODE_KEYS:
        bad = ~np.isfinite(arrays[key])
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise fail(f"key {key!r} has {int(bad.sum())} non-finite values (first in row {row})")
    steps = arrays["action"][1:]
    if steps.min() < -1.0 or steps.max() > 1.0:
        raise fail(f"key 'action' has values outside [-1, 1] (min {steps.min()}, max {steps.max()})")
    discount = arrays["discount"][1:]
    if discount.min() < 0.0 or discount.max() > 1.0:
        raise fail(f"key 'discount' has values outside [0, 1] (min {discount.min()}, max {discount.max()})")
    if domain is not None:
        spec = check_domain(domain)
        widths = {"observation": spec.obs_dim, "action": spec.action_dim, "physics": spec.physics_dim}
        for key, width in widths.items():
            if arrays[key].shape[1] != width:
                raise fail(f"key {key!r} has width {arrays[key].shape[1]}, expected {width} for {domain}")
    return ExorlEpisode(
        observation=arrays["observation"].astype(np.float32, copy=False),
        action=arrays["action"].astype(np.float32, copy=False),
        reward=arrays["reward"].reshape(rows).astype(np.float32, copy=False),
        discount=arrays["discount"].reshape(rows).astype(np.float32, copy=False),
        physics=arrays["physics"].astype(np.float64, copy=False),
    )


def _episode_transitions(path: Path, domain: str, task: str | None) -> dict[str, Any]:
    """One validated episode as InFOM's transition rows (see `ExorlData`)."""
    episode = read_episode(path, domain=domain)
    length = len(episode.observation) - 1
    terminals = np.zeros(length, dtype=bool)
    terminals[-1] = True
    transitions = {
        "observations": episode.observation[:-1],
        "actions": episode.action[1:],
        "next_observations": episode.observation[1:],
        "masks": episode.discount[1:],
        "terminals": terminals,
    }
    if task is not None:
        transitions["rewards"] = task_reward(task, episode.physics[1:]).astype(np.float32)
    return transitions


def load_exorl(
    root: str | os.PathLike[str],
    domain: str,
    algorithm: str,
    *,
    task: str | None = None,
    first_episode: int = 0,
    max_episodes: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> ExorlData:
    """Loads ExORL episode files as transitions, optionally relabelled with a task's reward.

    Reads `<root>/<domain>/<algorithm>/buffer/episode_*.npz` in index order (the first
    `max_episodes`), validates each file (`read_episode` with the domain's widths) and lays the
    episodes out as InFOM's reference code does (`ExorlData`): rewards are recomputed from the
    stored physics states with [`task_reward`][], the reward of a transition being the task's
    reward at the state it ends in (`rewards[t] = r(physics[t + 1])`), as ExORL relabels its data.
    The files' own `reward` (the collecting environment's task) is ignored.

    **Arguments:**

    - `root`: ExORL's dataset root, e.g. `~/.exorl/expl_datasets`.
    - `domain`: `"walker"`, `"cheetah"`, `"quadruped"` or `"jaco"`.
    - `algorithm`: the exploration algorithm's directory, e.g. `"rnd"` or `"ou_noise"`.
    - `task`: a task of `domain` to relabel rewards with (e.g. `"walker_run"`), or `None` for
      reward-free data (`rewards` is then `None`; [`to_dataset`][] stores zeros).
    - `first_episode`: skip the episodes before this position in index order (ExORL's
      fine-tuning data are the episodes after the pre-training ones).
    - `max_episodes`: read at most this many episodes (the lowest indices from `first_episode`
      on); `None` reads all.
    - `workers`: processes that read and relabel episodes (`1`: in this process).
    - `progress`: show a progress bar over episodes (on stderr).

    **Returns:** an [`ExorlData`][].

    **Raises:** `FileNotFoundError` naming the directory when it holds no episode; `DatasetError`
    naming the file and key of a malformed episode; `ValueError` for a task of another domain.

    !!! Example

        ```python
        data = load_exorl("~/.exorl/expl_datasets", "walker", "rnd", task="walker_run")
        dataset = to_dataset(data)  # an infom.Dataset
        ```
    """
    check_domain(domain)
    if task is not None and split_task_name(task)[0] != domain:
        raise ValueError(f"task {task!r} is not a {domain} task")
    if isinstance(first_episode, bool) or not isinstance(first_episode, int) or first_episode < 0:
        raise ValueError(f"first_episode must be a non-negative integer, got {first_episode!r}")
    if max_episodes is not None and max_episodes < 1:
        raise ValueError(f"max_episodes must be at least 1 (or None), got {max_episodes}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    directory = buffer_dir(root, domain, algorithm)
    files = episode_files(directory) if directory.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"{directory}: no ExORL episode files (episode_{{index}}_{{length}}.npz). Download ExORL's data "
            f"there, or collect local exploration data with infom.envs.dmc.generate_exorl({str(root)!r}, "
            f"{domain!r}, ...)"
        )
    files = files[first_episode:]
    if not files:
        raise DatasetError(f"{directory}: no episode from position {first_episode} on")
    files = files[:max_episodes]
    paths = [path for _, _, path in files]

    from ._workers import map_in_workers

    parts = map_in_workers(
        _episode_transitions,
        [(path, domain, task) for path in paths],
        workers=workers,
        progress=progress,
        description=f"{domain}/{algorithm}",
    )
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return ExorlData(
        observations=arrays["observations"],
        actions=arrays["actions"],
        next_observations=arrays["next_observations"],
        rewards=arrays.get("rewards"),
        masks=arrays["masks"],
        terminals=arrays["terminals"],
        num_episodes=len(paths),
        source=str(directory),
    )


def to_dataset(data: ExorlData) -> Any:
    """An [`infom.Dataset`][Dataset] of ExORL transitions (`Dataset.from_arrays`, on the device).

    Each episode's rows are its transitions `0..L-1`; the last is terminal, and since its successor
    action is not in the data, `Dataset` does not sample it as a SARSA pair (as in InFOM's
    reference code, which drops it the same way). `next_observations` is checked against the rows.
    Reward-free data (`rewards=None`) get zero rewards.

    **Arguments:**

    - `data`: the output of [`load_exorl`][].

    **Returns:** an `infom.Dataset`.
    """
    from ...data._dataset import Dataset

    return Dataset.from_arrays(
        data.observations,
        data.actions,
        terminals=data.terminals,
        rewards=data.rewards,
        masks=data.masks,
        next_observations=data.next_observations,
        source=data.source,
    )
