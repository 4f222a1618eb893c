"""The run layer's adapter for ExORL tasks (DeepMind Control): which data a run asks for, where it
lives, how it is generated, loaded and checked, and how policies are evaluated.

A run on an ExORL task (`walker_run`, ...) pre-trains on the first `run.pretrain_episodes` episodes
of the domain's reward-free exploration buffer `<dataset_dir>/<domain>/<algorithm>/buffer` and
fine-tunes on the next `run.finetune_episodes`, relabelled with the task's reward from their
physics states, as the paper's code splits ExORL's data (its first 5M transitions for pre-training,
the following 500k for fine-tuning). `algorithm` is `run.exorl_algorithm`: `"rnd"` (ExORL's own
data, which cannot be downloaded here) or a local exploration scheme of
[`infom.envs.dmc.generate_exorl`][] (`"ou_noise"`, the default, or `"uniform"`), which a run
generates when episodes are missing. Evaluation reports each seed's mean undiscounted return
(ExORL tasks have no success rate; `success_rate` is NaN).

This module and `infom/run/_ogbench.py` offer the same functions (the run layer's task-source
interface, `infom.run._run.task_source`); `tests/test_exorl_run.py` checks that they do.
"""

import os
from pathlib import Path
from typing import Any

from .._errors import DatasetError
from ..data._dataset import Dataset
from ..envs.dmc._names import DEFAULT_EXORL_DIR, TASK_NAMES
from ._presets import RunConfig
from ._progress import Phase


KINDS = ("pretrain", "finetune")


def is_exorl_task(env_name: str) -> bool:
    """Whether `env_name` is one of ExORL's 16 tasks (e.g. `"walker_run"`)."""
    return env_name in TASK_NAMES


def resolve_dir(dataset_dir: str | os.PathLike | None) -> Path:
    """The dataset root (default `~/.exorl/expl_datasets`, ExORL's)."""
    return Path(os.path.expanduser(str(dataset_dir if dataset_dir is not None else DEFAULT_EXORL_DIR)))


def domain_of(env_name: str) -> str:
    return env_name.split("_", 1)[0]


def data_request(env_name: str, run: RunConfig) -> dict[str, dict[str, Any]]:
    """The episodes a run asks for, per kind: the buffer, the episode range, and the seed and
    episode length of locally generated data."""
    domain = domain_of(env_name)
    common = dict(
        domain=domain, algorithm=run.exorl_algorithm, seed=run.data_seed, episode_length=run.episode_length
    )
    return {
        "pretrain": dict(common, first_episode=0, episodes=run.pretrain_episodes, task=None),
        "finetune": dict(
            common, first_episode=run.pretrain_episodes, episodes=run.finetune_episodes, task=env_name
        ),
    }


def request_record(env_name: str, run: RunConfig) -> dict[str, Any]:
    """`data_request` as JSON (for the run's `config.json`)."""
    return data_request(env_name, run)


def _needed(run: RunConfig) -> int:
    return run.pretrain_episodes + run.finetune_episodes


def can_generate(run: RunConfig) -> bool:
    """Whether the run's exploration data can be collected here (a local scheme, not ExORL's RND)."""
    from ..envs.dmc._generate import EXPLORERS

    return run.exorl_algorithm in EXPLORERS


def generate_command(env_name: str, run: RunConfig, dataset_dir, explorer: str | None = None) -> str:
    """The `infom data generate` command that collects the run's episodes (with `explorer`, default
    the run's `exorl_algorithm`)."""
    parts = [
        f"infom data generate {domain_of(env_name)}",
        f"--episodes {_needed(run)}",
        f"--explorer {explorer or run.exorl_algorithm}",
        f"--seed {run.data_seed}",
        f"--episode-length {run.episode_length}",
    ]
    if dataset_dir is not None:
        parts.append(f"--dataset-dir {dataset_dir}")
    return " ".join(parts)


def check_task_data(env_name: str, run: RunConfig, dataset_dir) -> dict[str, bool]:
    """Whether the buffer holds the episodes both kinds need (one buffer serves both); a local
    buffer generated with other settings raises `DatasetError` naming its record."""
    from ..envs.dmc._generate import exorl_episodes_present

    present = exorl_episodes_present(
        resolve_dir(dataset_dir),
        domain_of(env_name),
        run.exorl_algorithm,
        episodes=_needed(run),
        seed=run.data_seed,
        episode_length=run.episode_length,
    )
    return dict.fromkeys(KINDS, present)


def missing_data_error(env_name: str, run: RunConfig, dataset_dir, kinds: list[str]) -> Exception:
    """`DatasetNotFoundError` naming the buffer, the episodes it must hold and the command that
    collects them (or, for ExORL's own data, where they must be put)."""
    from ..envs.dmc._format import buffer_dir
    from ..envs.dmc._generate import EXPLORERS
    from ..envs.ogbench._datasets import DatasetNotFoundError

    directory = buffer_dir(resolve_dir(dataset_dir), domain_of(env_name), run.exorl_algorithm)
    wanted = (
        f"{directory} must hold {_needed(run)} episodes ({run.pretrain_episodes} + {run.finetune_episodes})"
    )
    if run.exorl_algorithm in EXPLORERS:
        return DatasetNotFoundError(
            f"ExORL data not found: {wanted}. They are generated locally, never downloaded. Create them "
            f"with:\n    {generate_command(env_name, run, dataset_dir)}"
        )
    return DatasetNotFoundError(
        f"ExORL data not found: {wanted}. {run.exorl_algorithm!r} data come from ExORL's own exploration "
        "runs and cannot be downloaded or generated here; put them there in ExORL's layout, or train on "
        "local exploration data (`--set exorl_algorithm=ou_noise`, which a run collects itself or this "
        f"command makes first):\n    {generate_command(env_name, run, dataset_dir, explorer='ou_noise')}"
    )


def prepare_task_data(
    env_name: str, run: RunConfig, dataset_dir, missing: list[str], *, progress: bool, log, on_episode
) -> None:
    """Collects the missing episodes with the run's exploration scheme (continuing a partial buffer);
    one buffer serves both kinds, so nothing is done when none is `missing`."""
    if not missing:
        return
    from ..envs.dmc._generate import EXPLORERS, generate_exorl

    root = resolve_dir(dataset_dir)
    log(
        f"generating {_needed(run)} {run.exorl_algorithm} exploration episodes for {domain_of(env_name)} "
        f"in {root}"
    )
    summary = generate_exorl(
        root,
        domain_of(env_name),
        episodes=_needed(run),
        seed=run.data_seed,
        workers=min(2, os.cpu_count() or 1),
        progress=progress,
        explorer=EXPLORERS[run.exorl_algorithm](),
        episode_length=run.episode_length,
    )
    if on_episode is not None:
        for _ in range(summary.num_collected):
            on_episode("pretrain", True)
    log(f"collected {summary.num_collected} episodes at {summary.steps_per_second:.0f} steps/s")


def load_datasets(env_name: str, run: RunConfig, dataset_dir) -> tuple[Dataset, Dataset]:
    """The reward-free pre-training and the task-labelled fine-tuning datasets (not normalised)."""
    from ..envs.dmc._format import load_exorl, to_dataset

    datasets = []
    for request in data_request(env_name, run).values():
        data = load_exorl(
            resolve_dir(dataset_dir),
            request["domain"],
            request["algorithm"],
            task=request["task"],
            first_episode=request["first_episode"],
            max_episodes=request["episodes"],
            workers=min(2, os.cpu_count() or 1),
        )
        if data.num_episodes < request["episodes"]:
            raise DatasetError(
                f"{data.source}: holds {data.num_episodes} episodes from position {request['first_episode']} "
                f"on, the run asks for {request['episodes']}"
            )
        datasets.append(to_dataset(data))
    return datasets[0], datasets[1]


def evaluation_pool(env_name: str, run: RunConfig, *, workers: int, envs_per_worker: int) -> Any:
    """A `DMCEvaluationPool` of `workers` x `envs_per_worker` environments (sized by the run layer)."""
    from ..envs.dmc._evaluation import DMCEvaluationPool

    return DMCEvaluationPool(
        env_name, workers=workers, envs_per_worker=envs_per_worker, episode_length=run.eval_episode_steps
    )


def evaluate(env_name: str, policies, seeds, *, num_episodes: int, progress: bool, pool) -> list[tuple]:
    """`(success_rate, mean_return, episodes)` per policy, all policies' episodes in one pool: NaN
    success (ExORL tasks have returns only), the mean return."""
    from ..envs.dmc._evaluation import evaluate_dmc_policies

    return [
        (float("nan"), float(result.mean_return), len(result.returns))
        for result in evaluate_dmc_policies(
            env_name, policies, seeds=seeds, episodes=num_episodes, progress=progress, pool=pool
        )
    ]


def data_files(env_name: str, dataset_dir) -> dict[str, dict[str, Any]]:
    """None recorded: ExORL's buffers are thousands of small files, so the data fingerprint alone
    guards a resumed run."""
    return {}


def data_phases(env_name: str, run: RunConfig, missing: list[str]) -> list[Phase]:
    """One progress phase for the whole buffer, counted under "data pretrain" (~1,500-4,500
    steps/s measured)."""
    needed = _needed(run) if missing else 0
    return [Phase("data pretrain", needed, "episodes", prior_seconds=run.episode_length / 1500)]


def eval_episode_length(env_name: str) -> int:
    """Steps of one evaluation episode (ExORL's: 1000, jaco 250)."""
    from ..envs.dmc._names import check_domain

    return check_domain(domain_of(env_name)).episode_length
