"""Local, reward-free exploration data in ExORL's format, collected in parallel worker processes.

ExORL's datasets come from unsupervised exploration agents (RND, APT, Proto, ...) trained online
for millions of steps; they cannot be downloaded here. [`generate_exorl`][] collects a cheaper
substitute: episodes of temporally correlated random actions ([`OUNoiseExplorer`][]), written in
ExORL's exact format so that [`load_exorl`][] (and ExORL's own loaders) read them as they read
ExORL's files.

!!! warning

    Data collected this way are **not** ExORL's: results trained on them are not comparable with
    the paper's ExORL numbers. The explorers here are memoryless noise processes; they cover less
    of the state space than a trained RND agent (a walker rarely stands up, a cheetah rarely runs).
"""

import abc
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import Float32

from ..._errors import DatasetError
from ..._files import atomic_write_bytes
from ._format import buffer_dir, episode_filename, episode_files, write_episode
from ._names import check_domain
from ._tasks import DMCEnv
from ._workers import prepare_worker_process, process_context, progress_bar


GENERATOR = "infom-dmc-explore"
"""The name of this module's collection procedure, recorded beside the data."""

GENERATOR_VERSION = 1
"""Bumped whenever the procedure changes what it writes for the same request."""

COLLECTION_TASKS = {
    "walker": "walker_stand",
    "cheetah": "cheetah_run",
    "quadruped": "quadruped_walk",
    "jaco": "jaco_reach_top_left",
}
"""The environment each domain's episodes are collected in. The four tasks of a domain share
its physics, initial states and observations, so the data serve all of them; the files' `reward`
is this task's (as ExORL's hold their collecting task's) and loaders relabel it."""

_RECORD = "generation.json"
_STALE_TEMP = re.compile(r"^\.episode_\d+_\d+\.npz\..*\.tmp$")


# ---------------------------------------------------------------------------------------
# Explorers
# ---------------------------------------------------------------------------------------


EpisodePolicy = Callable[[Float32[np.ndarray, " obs_dim"]], Float32[np.ndarray, " action_dim"]]
"""One episode's action rule: observation -> action in `[-1, 1]`, called once per step."""


class AbstractExplorer(abc.ABC):
    """How reward-free episodes choose their actions.

    An explorer is a small picklable object holding its settings; each worker process holds a copy
    and starts every episode with `start`, which returns that episode's `EpisodePolicy` (and
    holds any per-episode state). Everything random must come from the `rng` passed to `start`
    (seeded from the generation seed and the episode index), so that an episode is the same
    whichever worker collects it. `name` is the dataset's algorithm directory and `config()` is
    recorded beside the data.

    A learning explorer (e.g. RND) fits the same interface by acting with a fixed snapshot of its
    policy inside the workers and being updated by the caller between calls of `generate_exorl`.
    """

    name: str

    @abc.abstractmethod
    def start(self, *, action_dim: int, rng: np.random.Generator) -> EpisodePolicy:
        """The action rule of a new episode with `action_dim`-dimensional actions, drawing from `rng` only."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The explorer's name and parameters, as JSON-serialisable values."""


class _OUProcess:
    """One episode of OU noise (see `OUNoiseExplorer`)."""

    def __init__(self, rng: np.random.Generator, mean: np.ndarray, sigma: float, theta: float):
        self.rng, self.mean, self.decay = rng, mean, 1.0 - theta
        self.innovation = sigma * np.sqrt(1.0 - (1.0 - theta) ** 2)
        self.x = mean + sigma * rng.standard_normal(len(mean))

    def __call__(self, observation: Float32[np.ndarray, " obs_dim"]) -> Float32[np.ndarray, " action_dim"]:
        action = np.clip(self.x, -1.0, 1.0).astype(np.float32)
        noise = self.rng.standard_normal(len(self.x))
        self.x = self.mean + self.decay * (self.x - self.mean) + self.innovation * noise
        return action


@dataclasses.dataclass(frozen=True)
class OUNoiseExplorer(AbstractExplorer):
    """Ornstein-Uhlenbeck action noise with a per-episode random scale, correlation and mean.

    At the start of each episode it draws a scale `sigma ~ LogUniform(sigma_range)`, a mean
    reversion rate `theta ~ LogUniform(theta_range)` (the noise decorrelates over about
    `1 / theta` steps) and a per-dimension mean `mu ~ Uniform(-mean_range, mean_range)`. Actions
    follow the exact discrete-time OU process with stationary law `N(mu, sigma^2)`:

    `x_0 ~ N(mu, sigma^2)`,
    `x_{t+1} = mu + (1 - theta) (x_t - mu) + sigma sqrt(1 - (1 - theta)^2) eps_t`,
    `a_t = clip(x_t, -1, 1)`.

    Temporally correlated noise is the usual cheap alternative to independent noise: it pushes
    joints the same way for several steps instead of averaging out, and the per-episode draws mix
    gentle, jerky, saturating and biased episodes in one dataset. It is not better everywhere: in a
    check of 6 episodes per domain (16 for jaco), its data reached higher task rewards than
    [`UniformExplorer`][]'s on walker walk / run and cheetah run / walk, but lower on the quadruped
    tasks (sustained pushes tip the quadruped over) and on three of the four jaco targets.

    !!! warning

        A cheap substitute for ExORL's RND data, not a replication: results are not comparable.

    **Fields:**

    - `sigma_range`: `(low, high)` of the log-uniform scale, default `(0.2, 1.0)`.
    - `theta_range`: `(low, high)` of the log-uniform mean reversion per step, default `(0.02, 0.5)`.
    - `mean_range`: half-width of the uniform per-episode mean, default `0.3`.
    - `name`: the algorithm directory, default `"ou_noise"`.
    """

    sigma_range: tuple[float, float] = (0.2, 1.0)
    theta_range: tuple[float, float] = (0.02, 0.5)
    mean_range: float = 0.3
    name: str = "ou_noise"

    def __post_init__(self):
        for field, (low, high) in (("sigma_range", self.sigma_range), ("theta_range", self.theta_range)):
            if not 0 < low <= high:
                raise ValueError(
                    f"OUNoiseExplorer: `{field}` must satisfy 0 < low <= high, got {(low, high)}"
                )
        if not self.theta_range[1] <= 1:
            raise ValueError(f"OUNoiseExplorer: `theta_range` must lie in (0, 1], got {self.theta_range}")
        if not 0 <= self.mean_range <= 1:
            raise ValueError(f"OUNoiseExplorer: `mean_range` must lie in [0, 1], got {self.mean_range}")

    def start(self, *, action_dim: int, rng: np.random.Generator) -> EpisodePolicy:
        sigma = float(np.exp(rng.uniform(np.log(self.sigma_range[0]), np.log(self.sigma_range[1]))))
        theta = float(np.exp(rng.uniform(np.log(self.theta_range[0]), np.log(self.theta_range[1]))))
        mean = rng.uniform(-self.mean_range, self.mean_range, size=action_dim)
        return _OUProcess(rng, mean, sigma, theta)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "ou_noise",
            "sigma_range": list(self.sigma_range),
            "theta_range": list(self.theta_range),
            "mean_range": self.mean_range,
        }


@dataclasses.dataclass(frozen=True)
class UniformExplorer(AbstractExplorer):
    """Independent uniform actions `a_t ~ U[-1, 1]^action_dim`: the baseline to compare explorers with.

    **Fields:** `name`: the algorithm directory, default `"uniform"`.
    """

    name: str = "uniform"

    def start(self, *, action_dim: int, rng: np.random.Generator) -> EpisodePolicy:
        return lambda observation: rng.uniform(-1.0, 1.0, size=action_dim).astype(np.float32)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "uniform"}


# ---------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------


class GenerationSummary(NamedTuple):
    """What [`generate_exorl`][] did.

    **Fields:**

    - `directory`: the buffer directory, `<root>/<domain>/<algorithm>/buffer`.
    - `num_episodes`: episodes `0..num_episodes-1` now on disk.
    - `num_collected`: episodes collected by this call.
    - `num_kept`: episodes already on disk (from an earlier or interrupted call), kept as they were.
    - `num_steps`: environment steps taken by this call.
    - `seconds`: wall-clock time of this call, worker start included.
    - `steps_per_second`: `num_steps / seconds` (0 when nothing was collected).
    """

    directory: Path
    num_episodes: int
    num_collected: int
    num_kept: int
    num_steps: int
    seconds: float
    steps_per_second: float


def _episode_seeds(seed: int, index: int) -> tuple[int, int]:
    """Independent 32-bit seeds (environment, explorer) of episode `index`."""
    env_seed, explorer_seed = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(2)
    return int(env_seed), int(explorer_seed)


class _Collector:
    """One environment and explorer (one per process) that collect and write whole episodes."""

    def __init__(
        self, task: str, episode_length: int, explorer: AbstractExplorer, directory: Path, seed: int
    ):
        self.env = DMCEnv(task, seed=0, episode_length=episode_length)
        self.explorer, self.directory, self.seed = explorer, directory, seed

    def episode(self, index: int) -> int:
        """Collects episode `index`, writes it, and returns its number of steps."""
        env_seed, explorer_seed = _episode_seeds(self.seed, index)
        env, explorer = self.env, self.explorer
        action_dim = env.spec.action_dim
        observation = env.reset(seed=env_seed)
        policy = explorer.start(action_dim=action_dim, rng=np.random.default_rng(explorer_seed))
        # Row 0 is the reset, with ExORL's placeholders: action 0, reward 0, discount 1.
        observations, actions = [observation], [np.zeros(action_dim, np.float32)]
        rewards, physics = [0.0], [env.physics_state()]
        done = False
        while not done:
            action = np.clip(np.asarray(policy(observation), dtype=np.float32), -1.0, 1.0)
            observation, reward, done = env.step(action)
            observations.append(observation)
            actions.append(action)
            rewards.append(reward)
            physics.append(env.physics_state())
        length = len(observations) - 1
        write_episode(
            self.directory / episode_filename(index, length),
            np.stack(observations),
            np.stack(actions),
            np.asarray(rewards, np.float32),
            np.ones(length + 1, np.float32),
            np.stack(physics),
        )
        return length


_WORKER: _Collector | None = None


def _init_worker(*args: Any) -> None:
    global _WORKER
    prepare_worker_process()
    _WORKER = _Collector(*args)


def _worker_episode(index: int) -> int:
    assert _WORKER is not None
    return _WORKER.episode(index)


EXPLORERS: dict[str, type[AbstractExplorer]] = {"ou_noise": OUNoiseExplorer, "uniform": UniformExplorer}
"""The exploration schemes `generate_exorl` can collect with, by their algorithm directory name."""


def _generation_record(
    domain: str, seed: int, episode_length: int, explorer: AbstractExplorer
) -> dict[str, Any]:
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "domain": domain,
        "collection_task": COLLECTION_TASKS[domain],
        "episode_length": episode_length,
        "seed": seed,
        "explorer": explorer.config(),
    }


def exorl_episodes_present(
    root: str | os.PathLike[str],
    domain: str,
    algorithm: str,
    *,
    episodes: int,
    seed: int,
    episode_length: int,
) -> bool:
    """Whether `<root>/<domain>/<algorithm>/buffer` holds at least `episodes` episode files, checked
    before any time is spent. For a locally generated algorithm (`EXPLORERS`) with a
    generation record, the record must ask for the same data (`seed`, `episode_length`, the
    explorer's default settings), else `DatasetError` naming the record and what differs. Other
    algorithms (ExORL's own data, e.g. `"rnd"`) are taken as they are; their files are validated
    when loaded."""
    check_domain(domain)
    directory = buffer_dir(root, domain, algorithm)
    existing = episode_files(directory) if directory.is_dir() else []
    record_path = directory.parent / _RECORD
    if algorithm in EXPLORERS and record_path.is_file():
        _check_record(
            record_path, _generation_record(domain, seed, episode_length, EXPLORERS[algorithm]()), True
        )
        existing = [entry for entry in existing if entry[1] == episode_length]
    return len(existing) >= episodes


def _check_record(path: Path, record: dict[str, Any], has_episodes: bool) -> None:
    """Writes the generation record, or checks that the one on disk asked for the same data."""
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"{path}: not a readable generation record ({error})") from None
        if found != record:
            differ = sorted(k for k in record.keys() | found.keys() if record.get(k) != found.get(k))
            raise DatasetError(
                f"{path}: the episodes here were generated with other settings ({', '.join(differ)}: "
                f"found {[found.get(k) for k in differ]}, requested {[record.get(k) for k in differ]}); "
                "use another root or algorithm name, or delete the directory to start over"
            )
        return
    if has_episodes:
        raise DatasetError(
            f"{path.parent / 'buffer'}: holds episodes without a generation record ({_RECORD}), e.g. "
            "ExORL's own data; local data must go to another root or algorithm name"
        )
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def generate_exorl(
    root: str | os.PathLike[str],
    domain: str,
    *,
    episodes: int,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    explorer: AbstractExplorer | None = None,
    episode_length: int | None = None,
) -> GenerationSummary:
    """Collects reward-free exploration episodes and writes them in ExORL's format.

    Episode `i` (for `i < episodes`) is collected in the domain's collection environment
    (`COLLECTION_TASKS`), reset with a seed drawn from `(seed, i)`, acting with `explorer` (whose
    random draws are seeded from `(seed, i)` too), and written atomically to
    `<root>/<domain>/<explorer.name>/buffer/episode_{i:06d}_{length}.npz` by the worker that
    collected it. The bytes of every file therefore depend only on `(seed, i)` and the settings,
    not on `workers`, and a smaller dataset is a prefix of a larger one.

    **Resumption.** Episodes already on disk are kept untouched and only the missing ones are
    collected, so a killed run continues where it stopped and a larger `episodes` extends a
    dataset. The settings (generator version, domain, episode length, seed, explorer) are recorded
    in `<root>/<domain>/<algorithm>/generation.json`; a call with other settings for the same
    directory raises instead of mixing data.

    !!! warning

        These are not ExORL's RND data: see [`OUNoiseExplorer`][]. Results are not comparable with
        the paper's.

    **Arguments:**

    - `root`: the dataset root (ExORL's layout below it).
    - `domain`: `"walker"`, `"cheetah"`, `"quadruped"` or `"jaco"`.
    - `episodes`: the number of episodes the dataset should hold (ExORL's: 10 million steps per
      domain, i.e. 10,000 episodes of 1000 steps).
    - `seed`: the base seed.
    - `workers`: worker processes, one per core; `1` collects in this process.
    - `progress`: show a progress bar over episodes (on stderr).
    - `explorer`: the exploration scheme (default `OUNoiseExplorer()`); its `name` is the algorithm
      directory.
    - `episode_length`: steps per episode (default ExORL's: 1000, jaco 250); shorter only for tests.

    **Returns:** a [`GenerationSummary`][infom.envs.dmc._generate.GenerationSummary] with the throughput in
    environment steps per second.

    !!! Example

        ```python
        summary = generate_exorl("~/.exorl/local", "walker", episodes=100, seed=0)
        data = load_exorl("~/.exorl/local", "walker", "ou_noise", task="walker_run")
        ```
    """
    spec = check_domain(domain)
    if explorer is None:
        explorer = OUNoiseExplorer()
    if not isinstance(explorer, AbstractExplorer):
        raise TypeError(f"explorer must be an AbstractExplorer, got {type(explorer).__name__}")
    for name, value in (("episodes", episodes), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if episode_length is None:
        episode_length = spec.episode_length
    if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
        raise ValueError(f"episode_length must be a positive integer, got {episode_length!r}")
    directory = buffer_dir(root, domain, explorer.name)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():  # temporary files of writes a killed run left unfinished
        if _STALE_TEMP.match(stale.name):
            stale.unlink(missing_ok=True)
    existing = episode_files(directory)
    record = _generation_record(domain, seed, episode_length, explorer)
    _check_record(directory.parent / _RECORD, record, bool(existing))
    kept = set()
    for index, length, path in existing:
        if length != episode_length:
            raise DatasetError(
                f"{path}: an episode of {length} steps, but this dataset's have {episode_length}"
            )
        if index < episodes:
            kept.add(index)
    todo = [index for index in range(episodes) if index not in kept]

    start = time.perf_counter()
    steps = 0
    args = (COLLECTION_TASKS[domain], episode_length, explorer, directory, seed)
    with progress_bar(episodes, f"{domain}/{explorer.name}", progress) as bar:
        bar.update(len(kept))
        if todo and (workers == 1 or len(todo) == 1):
            collector = _Collector(*args)
            for index in todo:
                steps += collector.episode(index)
                bar.update(1)
        elif todo:
            pool = process_context().Pool(min(workers, len(todo)), initializer=_init_worker, initargs=args)
            with pool:
                for length in pool.imap_unordered(_worker_episode, todo, chunksize=1):
                    steps += length
                    bar.update(1)
                pool.close()
                pool.join()
    seconds = time.perf_counter() - start
    return GenerationSummary(
        directory=directory,
        num_episodes=episodes,
        num_collected=len(todo),
        num_kept=len(kept),
        num_steps=steps,
        seconds=seconds,
        steps_per_second=steps / seconds if steps else 0.0,
    )
