"""The run layer's adapter for OGBench tasks: which data a run asks for, where they live, how they
are generated, loaded and checked, and how policies are evaluated.

A run on an OGBench task (`cube-single-play-singletask-task1-v0`, ...) pre-trains on the domain's
reward-free "play" dataset and fine-tunes on its reward-labelled "play-ft" dataset, both generated
here with OGBench's own oracles (`infom data generate`), identified by their episode counts, episode
length and seed. Evaluation reports each seed's success rate and mean return.

This module and `infom/run/_exorl.py` offer the same functions (the run layer's task-source
interface, `infom.run._run.task_source`); `tests/test_exorl_run.py` checks that they do.
"""

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data._dataset import Dataset
from ._presets import RunConfig
from ._progress import Phase


KINDS = ("play", "play-ft")
_EPISODES_FIELD = {"play": "pretrain_episodes", "play-ft": "finetune_episodes"}


def domain_of(env_name: str) -> str:
    """The OGBench domain of a task or dataset name (`cube-single`)."""
    from ..envs.ogbench._datasets import _parse_name

    return _parse_name(env_name)[0]


def resolve_dir(dataset_dir: str | os.PathLike | None) -> Path:
    """The dataset directory (default `~/.ogbench/data`, OGBench's)."""
    from ..envs.ogbench._datasets import _resolve_dir

    return _resolve_dir(dataset_dir)


def data_request(env_name: str, run: RunConfig) -> dict[str, Any]:
    """`{"play": DatasetIdentity, "play-ft": DatasetIdentity}` from the run's episode counts,
    episode length and data seed."""
    from ..envs.ogbench._datasets import requested_identity

    domain = domain_of(env_name)
    return {
        kind: requested_identity(
            domain,
            kind,
            getattr(run, _EPISODES_FIELD[kind]),
            episode_length=run.episode_length,
            seed=run.data_seed,
        )
        for kind in KINDS
    }


def request_record(env_name: str, run: RunConfig) -> dict[str, Any]:
    """`data_request` as JSON (for the run's `config.json`)."""
    return {kind: identity.to_json() for kind, identity in data_request(env_name, run).items()}


def _paths(env_name: str, dataset_dir) -> dict[str, Path]:
    from ..envs.ogbench._datasets import dataset_paths

    play, _, play_ft, _ = dataset_paths(env_name, dataset_dir)
    return {"play": play, "play-ft": play_ft}


def check_task_data(env_name: str, run: RunConfig, dataset_dir) -> dict[str, bool]:
    """Which of the two datasets are present; files holding another dataset than the run asks for
    raise `DatasetMismatchError` with the command that makes the right data."""
    from ..envs.ogbench._datasets import check_dataset

    paths = _paths(env_name, dataset_dir)
    return {
        kind: check_dataset(paths[kind], wanted, dataset_dir)
        for kind, wanted in data_request(env_name, run).items()
    }


def can_generate(run: RunConfig) -> bool:
    """OGBench's data are always generated here (by its oracles)."""
    return True


def missing_data_error(env_name: str, run: RunConfig, dataset_dir, kinds: list[str]) -> Exception:
    """`DatasetNotFoundError` naming the missing files and the commands that make them."""
    from ..envs.ogbench._datasets import DatasetNotFoundError, generate_command, val_path_for

    request = data_request(env_name, run)
    paths = _paths(env_name, dataset_dir)
    files = ", ".join(f"{paths[k]} (+ {val_path_for(paths[k]).name})" for k in kinds)
    commands = "\n".join(
        f"    {generate_command(request[k].domain, k, dataset_dir, identity=request[k])}" for k in kinds
    )
    return DatasetNotFoundError(
        f"OGBench dataset file(s) not found: {files}. These datasets are generated locally, never "
        f"downloaded. Create them with:\n{commands}"
    )


def prepare_task_data(
    env_name: str,
    run: RunConfig,
    dataset_dir,
    missing: list[str],
    *,
    progress: bool,
    log: Callable[[str], None],
    on_episode: Callable[[str, bool], None] | None,
) -> None:
    """Generates the `missing` datasets with OGBench's oracles, continuing an interrupted
    generation from its last completed chunk."""
    from ..envs.ogbench._datasets import generate_dataset

    paths = _paths(env_name, dataset_dir)
    request = data_request(env_name, run)
    for kind in missing:
        wanted = request[kind]
        log(
            f"generating {kind} data for {wanted.domain} ({wanted.num_episodes} + {wanted.num_val_episodes} "
            f"episodes) in {paths[kind].parent}"
        )
        generate_dataset(
            wanted.domain,
            paths[kind],
            num_episodes=wanted.num_episodes,
            num_val_episodes=wanted.num_val_episodes,
            kind=kind,
            seed=wanted.seed,
            episode_length=wanted.episode_length,
            overwrite=True,  # only absent or incomplete files get here
            progress=progress,
            num_workers=min(2, os.cpu_count() or 1),
            on_episode=None if on_episode is None else functools.partial(on_episode, kind),
        )


def load_datasets(env_name: str, run: RunConfig, dataset_dir) -> tuple[Dataset, Dataset]:
    """The reward-free pre-training ("play", rewards dropped) and the reward-labelled fine-tuning
    ("play-ft") datasets through OGBench's own loader (not normalised)."""
    from ..envs.ogbench._datasets import load_ogbench

    paths = _paths(env_name, dataset_dir)
    pre = load_ogbench(env_name, dataset_dir=dataset_dir, kind="play")
    fine = load_ogbench(env_name, dataset_dir=dataset_dir, kind="play-ft")
    reward_free = {k: v for k, v in pre.train.items() if k not in ("rewards", "masks")}
    pretrain = Dataset.from_ogbench(reward_free, source=paths["play"].name)
    finetune = Dataset.from_ogbench(fine.train, source=paths["play-ft"].name)
    for env in (pre.env, fine.env):
        with contextlib.suppress(Exception):
            env.close()
    return pretrain, finetune


def data_files(env_name: str, dataset_dir) -> dict[str, dict[str, Any]]:
    """Every file the run reads, by name under `resolve_dir(dataset_dir)`: its kind, sha256 and
    dataset identity (a resumed run checks that it reads the same files)."""
    from ..envs.ogbench._datasets import existing_identity, verify_files

    files: dict[str, dict[str, Any]] = {}
    for kind, path in _paths(env_name, dataset_dir).items():
        identity = existing_identity(path)
        assert identity is not None
        for name, digest in verify_files(path).items():
            files[name] = {"kind": kind, "sha256": digest, "identity": identity.to_json()}
    return files


def data_phases(env_name: str, run: RunConfig, missing: list[str]) -> list[Phase]:
    """The progress phases of generating the `missing` datasets (episodes, ~350 steps/s measured
    with 2 workers)."""
    request = data_request(env_name, run)
    return [
        Phase(
            f"data {kind}",
            (request[kind].num_episodes + request[kind].num_val_episodes) if kind in missing else 0,
            "episodes",
            prior_seconds=run.episode_length / 350,  # measured: ~378 steps/s with 2 workers
        )
        for kind in KINDS
    ]


def eval_episode_length(env_name: str) -> int:
    """Steps of one evaluation episode (OGBench's time limit for the domain)."""
    from ..envs.ogbench._datasets import eval_episode_length as length

    return length(domain_of(env_name))


def evaluation_pool(env_name: str, run: RunConfig, *, workers: int, envs_per_worker: int) -> Any:
    """An `EvaluationPool` of `workers` x `envs_per_worker` environments (sized by the run layer)."""
    from ..envs.ogbench._evaluation import EvaluationPool

    return EvaluationPool(
        env_name,
        num_workers=workers,
        envs_per_worker=envs_per_worker,
        max_episode_steps=run.eval_episode_steps,
    )


def evaluate(env_name: str, policies, seeds, *, num_episodes: int, progress: bool, pool) -> list[tuple]:
    """`(success_rate, mean_return, episodes)` per policy, all policies' episodes in one pool."""
    from ..envs.ogbench._evaluation import evaluate_ogbench_policies

    return [
        (float(r.success_rate), float(r.mean_return), len(r.successes))
        for r in evaluate_ogbench_policies(
            env_name, policies, seeds=seeds, num_episodes=num_episodes, progress=progress, pool=pool
        )
    ]
