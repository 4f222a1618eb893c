"""The end-to-end run: data, pre-training, fine-tuning and evaluation on an OGBench task,
with a run directory, atomic checkpoints, exact resumption and a non-finite-loss diagnosis."""

import csv
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._files import atomic_write_bytes, atomic_write_json, deferred_interrupts, read_json
from ..agents import AGENTS
from ..agents._base import Agent
from ..data._dataset import (
    Dataset,
    DatasetError,
    Normalizer,
    fit_normalizer,
    load_normalizer,
    normalize_dataset,
    save_normalizer,
)
from ..training._checkpoints import (
    _states_step,
    checkpoint_steps,
    load_checkpoint,
    save_checkpoint,
)
from ..training._keys import block_keys, diagnostics_key, init_keys, task_keys
from ..training._train import (
    TrainState,
    agent_actions,
    begin_finetuning,
    init_state,
    make_optimizer,
    seeds_block,
    seeds_diagnostics,
)
from . import _exorl, _ogbench
from ._presets import RunConfig, config_from_dict, config_to_dict
from ._progress import JobProgress, Phase


CONFIG_FILE = "config.json"
NORMALIZER_FILE = "normalizer.npz"
PRETRAIN_CSV = "pretrain_metrics.csv"
FINETUNE_CSV = "finetune_metrics.csv"
DIAGNOSTICS_CSV = "diagnostics.csv"
EVAL_CSV = "eval.csv"
EVAL_JSON = "eval.json"
CURVE_PNG = "learning_curve.png"

EVAL_FIELDS = ("step", "finetune_step", "seed", "success_rate", "mean_return", "episodes")


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the loss, update and seed."""


class RunResult(NamedTuple):
    """What a finished run produced: its directory and its evaluations."""

    run_dir: Path
    evaluations: list[dict[str, Any]]


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if None not in row.values() and None not in row]


def _rewrite_csv(path: Path, fields: Iterable[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _append_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def _truncate_csv(path: Path, max_step: int) -> None:
    """Drops rows after the checkpoint (and any half-written last line) before resuming."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = []
        for row in reader:
            try:
                if None in row or None in row.values() or int(row["step"]) > max_step:
                    continue
            except (KeyError, ValueError):
                continue
            rows.append(row)
    _rewrite_csv(path, fields, rows)


# --------------------------------------------------------------------------- data


class RunData(NamedTuple):
    """Normalised pre-training and fine-tuning datasets and the normaliser fitted on the former."""

    pretrain: Dataset
    finetune: Dataset
    normalizer: Normalizer
    obs_dim: int
    action_dim: int


def task_source(env_name: str) -> Any:
    """The adapter of the benchmark `env_name` belongs to: `infom/run/_exorl.py` for ExORL's tasks
    (`walker_run`, ...), else `infom/run/_ogbench.py`. Both offer the same functions (which data a
    run asks for, where they live, how they are generated, loaded, recorded and checked, how
    policies are evaluated), and this is the run layer's only choice between benchmarks."""
    return _exorl if _exorl.is_exorl_task(env_name) else _ogbench


def data_request(env_name: str, run: RunConfig) -> dict[str, Any]:
    """The identities of the datasets a run on `env_name` asks for: on OGBench `{"play":
    DatasetIdentity, "play-ft": DatasetIdentity}` from the run's episode counts, episode length
    and data seed; on ExORL the episode ranges of its exploration buffer (`infom/run/_exorl.py`)."""
    return task_source(env_name).data_request(env_name, run)


def check_task_data(
    env_name: str, run: RunConfig, *, dataset_dir: str | os.PathLike | None = None
) -> dict[str, bool]:
    """Which of a run's datasets are present (`{"play": bool, "play-ft": bool}`), before any
    time is spent; files holding another dataset than the run asks for raise
    `DatasetMismatchError` with the command that makes the right data. (On ExORL tasks both kinds
    come from one exploration buffer: `{"pretrain": bool, "finetune": bool}`.)"""
    return task_source(env_name).check_task_data(env_name, run, dataset_dir)


def _missing_kinds(env_name: str, run: RunConfig, dataset_dir, generate_missing: bool) -> list[str]:
    """The datasets to generate (refusing other data, and missing data when generation is off)."""
    source = task_source(env_name)
    present = source.check_task_data(env_name, run, dataset_dir)
    missing = [kind for kind, ok in present.items() if not ok]
    if missing and not (generate_missing and source.can_generate(run)):
        raise source.missing_data_error(env_name, run, dataset_dir, missing)
    return missing


def prepare_task_data(
    env_name: str,
    run: RunConfig,
    *,
    dataset_dir: str | os.PathLike | None = None,
    generate_missing: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    on_episode: Callable[[str, bool], None] | None = None,
) -> None:
    """Makes sure the datasets a run asks for (`data_request`) are in `dataset_dir`:
    generates the missing ones (OGBench's with its oracles, continuing an interrupted generation
    from its last completed chunk; ExORL's with a local exploration scheme), and refuses files that
    hold another dataset.

    **Raises:** `DatasetMismatchError` (other data under the names), `DatasetNotFoundError`
    (missing and `generate_missing` is False, or data that cannot be made here), both naming the
    command that makes the data.
    """
    missing = _missing_kinds(env_name, run, dataset_dir, generate_missing)
    task_source(env_name).prepare_task_data(
        env_name, run, dataset_dir, missing, progress=progress, log=log, on_episode=on_episode
    )


def load_task_data(
    env_name: str,
    run: RunConfig,
    *,
    dataset_dir: str | os.PathLike | None = None,
    generate_missing: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    normalizer: Normalizer | None = None,
) -> RunData:
    """Loads the pre-training "play" and the reward-labelled fine-tuning "play-ft" datasets of
    an OGBench task through OGBench's own loader (after `prepare_task_data`: missing files
    are generated if allowed, files of another size or seed are refused), and normalises both
    with one normaliser fitted on the pre-training data (or the given `normalizer`, e.g. the
    one stored with a run)."""
    prepare_task_data(
        env_name, run, dataset_dir=dataset_dir, generate_missing=generate_missing, progress=progress, log=log
    )
    return _load_files(env_name, run, dataset_dir, normalizer)


def _load_files(env_name: str, run: RunConfig, dataset_dir, normalizer: Normalizer | None) -> RunData:
    pretrain, finetune = task_source(env_name).load_datasets(env_name, run, dataset_dir)
    if normalizer is None:
        normalizer = fit_normalizer(pretrain.observations, run.obs_normalization)
    return RunData(
        pretrain=normalize_dataset(pretrain, normalizer),
        finetune=normalize_dataset(finetune, normalizer),
        normalizer=normalizer,
        obs_dim=int(pretrain.observations.shape[1]),
        action_dim=int(pretrain.actions.shape[1]),
    )


def data_fingerprint(data: RunData) -> str:
    """SHA-256 over every array of the (normalised) datasets and the normaliser, in a fixed
    order: two runs see the same data exactly when their fingerprints agree."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(eqx.filter((data.pretrain, data.finetune, data.normalizer), eqx.is_array)):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _data_record(env_name: str, dataset_dir, data: RunData, from_files: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "fingerprint": data_fingerprint(data),
        "rows": {
            "pretrain": int(data.pretrain.observations.shape[0]),
            "finetune": int(data.finetune.observations.shape[0]),
        },
        "files": task_source(env_name).data_files(env_name, dataset_dir) if from_files else {},
    }
    return record


def _check_files_unchanged(env_name: str, run_dir: Path, record: dict[str, Any], dataset_dir) -> None:
    """A resumed run reads exactly the files it started with."""
    from ..envs.ogbench._datasets import file_sha256

    root = task_source(env_name).resolve_dir(dataset_dir)
    for name, entry in record["files"].items():
        path = root / name
        if not path.is_file():
            raise DatasetError(
                f"{path}: missing; this run started with it ({run_dir / DATA_FILE} records its sha256 "
                f"{entry['sha256'][:12]}...). Pass --dataset-dir with the directory that holds it"
            )
        if file_sha256(path) != entry["sha256"]:
            raise DatasetError(
                f"{path}: not the file this run started with (sha256 differs from {run_dir / DATA_FILE}); "
                "a resumed run trains on the same data or not at all"
            )


# --------------------------------------------------------------------------- compiled blocks


def _check_finite(metrics: tuple, first_step: int, phase: str) -> None:
    for name, values in metrics._asdict().items():
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.floating):
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            seed_index, update = (int(i[0]) for i in np.nonzero(bad))
            raise NonFiniteLossError(
                f"{phase} loss {name!r} became {values[seed_index, update]} at update "
                f"{first_step + update + 1} (seed index {seed_index}); the run stopped and its last "
                "checkpoint is intact"
            )


def _seed(states: TrainState, index: int) -> TrainState:
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, states)


# --------------------------------------------------------------------------- evaluation


def make_policy(
    state: TrainState, *, agent: Agent | None = None, pad_to: int = 16
) -> Callable[[np.ndarray], np.ndarray]:
    """A NumPy policy `raw observations [n, obs_dim] -> actions [n, action_dim]` for the
    evaluation harness: `agent`'s (default InFOM's) deterministic actions of the normalised
    observations, jitted, with the batch padded to a multiple of `pad_to` so a shrinking number
    of running episodes does not trigger recompilation."""
    if agent is None:
        agent = AGENTS["infom"]
    actions_fn = eqx.filter_jit(lambda state, observations: agent_actions(agent, state, observations))

    def policy(observations: np.ndarray) -> np.ndarray:
        n = observations.shape[0]
        padded = max(pad_to, math.ceil(n / pad_to) * pad_to)
        batch = np.zeros((padded, observations.shape[1]), dtype=np.float32)
        batch[:n] = observations
        return np.asarray(actions_fn(state, jnp.asarray(batch)))[:n]

    return policy


def evaluation_pool(env_name: str, run: RunConfig) -> Any:
    """The evaluation pool of a run's evaluations: `run.eval_workers` workers, each with at most
    `run.eval_envs_per_worker` environments (fewer where the seeds' episodes need fewer)."""
    total = run.num_seeds * run.eval_episodes
    workers = min(run.eval_workers, total)
    envs_per_worker = min(run.eval_envs_per_worker, math.ceil(total / workers))
    return task_source(env_name).evaluation_pool(
        env_name, run, workers=workers, envs_per_worker=envs_per_worker
    )


def evaluate_run_states(
    env_name: str,
    agent: Agent,
    states: TrainState,
    run: RunConfig,
    *,
    num_episodes: int | None = None,
    progress: bool = False,
    pool: Any = None,
) -> list[dict[str, Any]]:
    """Evaluates every seed's policy on the task in one pool of workers; one row per seed (on ExORL
    tasks `success_rate` is NaN: they have returns only).

    Seed `index`'s episodes are reset from `10_000 * (run.seed + index + 1)`, as if each seed were
    evaluated alone (`evaluate_ogbench_policies`). `pool`: an open `EvaluationPool` to use (else
    workers are started for this call)."""
    if pool is None:
        with evaluation_pool(env_name, run) as pool:
            return evaluate_run_states(
                env_name, agent, states, run, num_episodes=num_episodes, progress=progress, pool=pool
            )
    policies = [make_policy(_seed(states, index), agent=agent) for index in range(run.num_seeds)]
    seeds = [10_000 * (run.seed + index + 1) for index in range(run.num_seeds)]
    episodes = num_episodes or run.eval_episodes
    results = task_source(env_name).evaluate(
        env_name, policies, seeds, num_episodes=episodes, progress=progress, pool=pool
    )
    return [
        {"seed": run.seed + index, "success_rate": success, "mean_return": mean_return, "episodes": count}
        for index, (success, mean_return, count) in enumerate(results)
    ]


def _summarise(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    by_step: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_step.setdefault(int(row["finetune_step"]), []).append(row)
    summary = []
    for step, group in sorted(by_step.items()):
        success = np.array([float(r["success_rate"]) for r in group])
        returns = np.array([float(r["mean_return"]) for r in group])
        summary.append(
            {
                "finetune_step": step,
                "num_seeds": len(group),
                "success_mean": float(success.mean()),
                "success_std": float(success.std()),
                "return_mean": float(returns.mean()),
                "return_std": float(returns.std()),
                "per_seed_success": success.tolist(),
                "per_seed_return": returns.tolist(),
            }
        )
    return summary


def plot_learning_curve(
    summary: list[dict[str, Any]], path: str | os.PathLike, title: str, label: str = "InFOM"
) -> None:
    """Success rate (or, for tasks without one such as ExORL's, the mean return) against fine-tuning
    updates (mean and std over seeds), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([s["finetune_step"] for s in summary])
    success = not all(math.isnan(s["success_mean"]) for s in summary)
    key = "success" if success else "return"
    mean = np.array([s[f"{key}_mean"] for s in summary])
    std = np.array([s[f"{key}_std"] for s in summary])
    low, high = (
        (mean - std, mean + std) if not success else (np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1))
    )
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(steps, mean, marker="o", color="C0", label=label)
    ax.fill_between(steps, low, high, color="C0", alpha=0.2)
    if success:
        ax.set(ylabel="success rate", ylim=(-0.02, 1.02))
    else:
        ax.set(ylabel="return")
    ax.set(xlabel="fine-tuning updates", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- the run


def _metric_rows(metrics, first_step: int, seed0: int) -> list[dict[str, Any]]:
    block_means = {
        name: np.asarray(v, dtype=np.float64).mean(axis=1) for name, v in metrics._asdict().items()
    }
    num_updates = np.asarray(metrics.loss).shape[1]
    return [
        {
            "step": first_step + num_updates,
            "seed": seed0 + i,
            **{k: float(v[i]) for k, v in block_means.items()},
        }
        for i in range(len(block_means["loss"]))
    ]


def _eval_summary(rows: list[dict[str, Any]]) -> str:
    """`success S` (OGBench) or `return R` (tasks without a success, ExORL) of an evaluation's rows."""
    success = float(np.mean([r["success_rate"] for r in rows])) if rows else float("nan")
    if not math.isnan(success):
        return f"success {success:.3f}"
    return f"return {float(np.mean([r['mean_return'] for r in rows])):.1f}" if rows else "no episodes"


def _eval_due(step: int, run: RunConfig) -> bool:
    done = step - run.pretrain_updates
    return step >= run.pretrain_updates and (done % run.eval_interval == 0 or done == run.finetune_updates)


class RunInterrupted(KeyboardInterrupt):
    """A run was interrupted (Ctrl-C, or SIGTERM in the `infom` command); the message says what
    was kept and gives the exact command that resumes it."""


DATA_FILE = "data.json"


class _Processes(NamedTuple):
    """The processes of a run: one (the default), or several joined by `jax.distributed`, of which
    process 0 (`lead`) alone writes the run directory and evaluates."""

    lead: bool
    multi: bool

    @classmethod
    def current(cls) -> "_Processes":
        return cls(jax.process_index() == 0, jax.process_count() > 1)

    def barrier(self, name: str) -> None:
        if self.multi:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def host(self, tree: Any) -> Any:
        """`tree` as host arrays in every process (a collective when there are several)."""
        if not self.multi:
            return tree
        from ..training._sharding import to_host

        return to_host(tree)


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The `config.json` of a run directory; `FileNotFoundError` saying it is not a run
    directory when there is none, `ValueError` naming the file when it is torn."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory ({CONFIG_FILE} is missing)")
    return read_json(path, "run configuration")


def _check_resumed_settings(
    run_dir: Path,
    record: dict[str, Any],
    agent: Agent | None,
    config: Any | None,
    run: RunConfig | None,
    preset: str | None,
) -> None:
    """A resumed run continues with its own settings: an `agent`, `config`, `run` or `preset` given with
    `resume=True` must be the run's own (as `config.json` records them), else `ValueError` listing each
    field that differs, so that a changed setting never silently goes unused."""
    if preset is not None and preset != record.get("preset"):
        raise ValueError(f"{run_dir} was started from preset {record.get('preset')!r}, not {preset!r}")
    if agent is None and config is not None:
        agent = _agent_for(config)
    if agent is not None and agent.name != record["agent"]:
        raise ValueError(f"{run_dir} is a run of agent {record['agent']!r}, not {agent.name!r}")
    if config is None and run is None:
        return
    own_config, own_run = config_from_dict(record, AGENTS[record["agent"]].config_type)
    own = json.loads(json.dumps(config_to_dict(record["agent"], own_config, own_run)))  # as JSON values
    asked = config_to_dict(
        record["agent"], own_config if config is None else config, own_run if run is None else run
    )
    asked = json.loads(json.dumps(asked))
    differences = [
        f"{section}.{key}: the run has {own[section].get(key)!r}, asked {value!r}"
        for section in ("config", "run")
        for key, value in asked[section].items()
        if own[section].get(key) != value
    ]
    if differences:
        raise ValueError(
            f"{run_dir} was started with other settings than the ones given to resume it ("
            + "; ".join(differences)
            + "); resume it with its own (pass no config or run) or start a new run directory"
        )


def _check_preset_domain(env_name: str, preset: str | None) -> None:
    from ._presets import PRESETS

    if preset is None or preset not in PRESETS:
        return
    domain = task_source(env_name).domain_of(env_name)
    if PRESETS[preset].domain != domain:
        choices = ", ".join(name for name, p in sorted(PRESETS.items()) if p.domain == domain)
        raise ValueError(
            f"preset {preset!r} is for {PRESETS[preset].domain}, but {env_name} is a {domain} task; "
            f"choose one of: {choices}"
        )


def _job_phases(env_name: str, run: RunConfig, missing: list[str]) -> list[Phase]:
    source = task_source(env_name)
    phases = source.data_phases(env_name, run, missing)
    episode_steps = run.eval_episode_steps or source.eval_episode_length(env_name)
    ends = range(run.pretrain_updates, run.pretrain_updates + run.finetune_updates + 1, run.block_size)
    evals = sum(_eval_due(step, run) for step in ends)
    eval_steps = run.num_seeds * run.eval_episodes * episode_steps
    phases += [
        Phase("pre-training", run.pretrain_updates, "updates", prior_seconds=0.03 * run.num_seeds),
        Phase("fine-tuning", run.finetune_updates, "updates", prior_seconds=0.13 * run.num_seeds),
        Phase("evaluation", evals, "evaluations", prior_seconds=0.004 * eval_steps / run.eval_workers),
    ]
    return phases


def train(
    env_name: str | None,
    run_dir: str | os.PathLike,
    config: Any | None = None,
    run: RunConfig | None = None,
    *,
    agent: Agent | None = None,
    preset: str | None = None,
    resume: bool = False,
    dataset_dir: str | os.PathLike | None = None,
    generate_missing: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    data: RunData | None = None,
    stop_after: int | None = None,
    mesh_shape: tuple[int, int] | None = None,
    loggers: tuple[str, ...] = (),
) -> RunResult:
    """Pre-trains, fine-tunes and evaluates an agent (InFOM by default) on an OGBench task,
    writing a run directory.

    The run directory is created first, with `config.json` (the resolved configs, the
    dataset directory and the identity of the data the run asks for), before anything slow
    starts, so the run can be resumed from any moment. It then holds `data.json` (each dataset
    file's identity and SHA-256, and a fingerprint of the loaded arrays), `normalizer.npz`,
    `checkpoint-STEP.eqx` + `checkpoint-STEP.json` (all seeds' [`TrainState`][]s and their
    size and SHA-256; the newest two are kept), `pretrain_metrics.csv` /
    `finetune_metrics.csv` (block means per seed), `diagnostics.csv` (the agent's
    `diagnose` after every block, per seed: for InFOM, how much the model uses its intention,
    [`IntentionDiagnostics`][]), `eval.csv` (success rate and return per
    evaluation and seed), `eval.json` (mean and std over seeds, and each seed's) and `learning_curve.png`.

    Data: files that hold another dataset than the run asks for (other episode counts,
    episode length, seed or generator) are refused with the command that makes the right
    data; missing files are generated (an interrupted generation continues from its last
    completed chunk) unless `generate_missing` is False.

    With `resume=True`, the configs, dataset directory and normaliser are read from
    `run_dir`; the dataset files must be the ones the run started with (SHA-256); training
    continues from the last checkpoint, and rows written after it are dropped. Because every
    block's randomness is a function of (seed, block index) only, the run ends with exactly the
    parameters of an uninterrupted run. A `KeyboardInterrupt` (Ctrl-C; the `infom` command
    turns SIGTERM into one) first saves the states of the last completed block, then raises
    [`RunInterrupted`][] saying what was kept and how to resume.

    **Arguments:**

    - `env_name`: an OGBench task, e.g. `cube-single-play-singletask-task1-v0` (`None` when
      resuming: the run's own).
    - `run_dir`: the run directory (created; must be empty or absent unless resuming).
    - `config`, `run`: the agent's config (e.g. [`InFOMConfig`][]) and the schedule; `preset`
      records their origin and must be a preset of the task's domain. When resuming the three are
      optional (the run's own are read) and, if given, must equal the run's own: a `ValueError`
      lists each field that differs.
    - `agent`: the [`Agent`][] (default: the one of [`AGENTS`][] whose config type `config`
      has, InFOM for an `InFOMConfig`; when resuming, the run's own, and one given must be it).
    - `dataset_dir`: OGBench's dataset directory (default `~/.ogbench/data`; when resuming,
      the run's own).
    - `generate_missing`: generate missing datasets with OGBench's oracles (else fail with the
      command that makes them).
    - `progress`, `log`: one progress line for the whole job on stderr, and a callback for
      one-line messages.
    - `data`: pre-loaded [`RunData`][] (skips the files; for tests and notebooks). A resumed
      run must be given the same arrays (checked by fingerprint).
    - `stop_after`: stop (after checkpointing) once this many updates are done, as if killed.
    - `mesh_shape`: `(seeds, data)` devices: the seeds split over `seeds` devices and each batch
      over `data` ([`make_mesh`][]); `None` (default) is one device. Not part of the run's
      record: a run resumes on any mesh, with the same numbers up to floating-point reduction
      order (checkpoints hold host arrays).
    - `loggers`: also send the metrics and evaluations to `"tensorboard"` (event files under
      `RUN_DIR/tensorboard/`, extra `infom[tensorboard]`) and/or `"wandb"` (an offline run under
      `RUN_DIR/wandb/` unless `WANDB_MODE` says otherwise, extra `infom[wandb]`); the CSV and JSON files
      are written either way. Not part of the run's record: choose again on resume.

    **Raises:** `NonFiniteLossError` naming the loss, update and seed if a loss becomes
    non-finite (the last checkpoint stays intact); `DatasetNotFoundError` /
    `DatasetMismatchError` for missing or different data, before the run directory is made;
    `CheckpointError` naming a damaged checkpoint; `RunInterrupted`.
    """
    from ..envs.ogbench._datasets import GenerationInterrupted
    from ._loggers import check_loggers

    check_loggers(tuple(loggers))  # before anything is written
    run_dir = Path(run_dir)
    if resume:
        record = read_run_record(run_dir)
        if env_name is not None and record["env"] != env_name:
            raise ValueError(f"{run_dir} is a run on {record['env']!r}, not {env_name!r}")
        env_name = record["env"]
        _check_resumed_settings(run_dir, record, agent, config, run, preset)
        agent = AGENTS[record["agent"]]
        config, run = config_from_dict(record, agent.config_type)
        if dataset_dir is None and record.get("dataset_dir") is not None:
            dataset_dir = record["dataset_dir"]
    else:
        if env_name is None or config is None or run is None:
            raise ValueError("train needs `env_name`, `config` and `run` unless resuming")
        if agent is None:
            agent = _agent_for(config)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir} is not empty; pass resume=True (--resume) to continue it")
        _check_preset_domain(env_name, preset)
    processes = _Processes.current()
    processes.barrier("infom: run directory checked")
    assert env_name is not None and config is not None and run is not None and agent is not None

    # Everything that can be refused is checked before the run directory is made.
    mesh = None
    if mesh_shape is None and processes.multi:
        mesh_shape = (1, jax.device_count())  # several processes: the batch over all their devices
    if mesh_shape is not None:
        from ..training._sharding import check_mesh, make_mesh

        mesh = make_mesh(*mesh_shape)
        check_mesh(mesh, num_seeds=run.num_seeds, batch_size=config.batch_size)
    missing: list[str] = []
    if resume and data is None and (run_dir / DATA_FILE).exists():
        _check_files_unchanged(env_name, run_dir, read_json(run_dir / DATA_FILE, "data record"), dataset_dir)
    if data is None:
        missing = _missing_kinds(env_name, run, dataset_dir, generate_missing)
    source = task_source(env_name)
    if not resume and processes.lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            run_dir / CONFIG_FILE,
            {
                "env": env_name,
                "preset": preset,
                **config_to_dict(agent.name, config, run),
                "dataset_dir": None if data is not None else str(source.resolve_dir(dataset_dir).absolute()),
                "data_request": None if data is not None else source.request_record(env_name, run),
            },
        )

    job = JobProgress(_job_phases(env_name, run, missing), enabled=progress)
    log = job.wrap_log(log)
    where = "preparing data"
    states_out: list[TrainState] = []  # the states of the last completed block, for an interruption
    sinks: list = []  # the open loggers
    pools: list = []  # the evaluation workers, started at the first evaluation and kept for the others
    try:
        processes.barrier("infom: run directory made")
        data = _run_data(env_name, run, run_dir, dataset_dir, data, generate_missing, job, log, processes)
        where = "training"
        return _train_loop(
            env_name,
            run_dir,
            agent,
            config,
            run,
            data,
            job,
            log,
            stop_after,
            resume,
            states_out,
            mesh,
            processes,
            loggers,
            sinks,
            pools,
        )
    except GenerationInterrupted as error:
        raise RunInterrupted(
            f"interrupted while {where}: {error}; resume with: infom train --resume {run_dir}"
        ) from None
    except KeyboardInterrupt:
        if where == "training" and states_out and processes.multi:
            kept = "the last checkpoint is kept"
        elif where == "training" and states_out:
            states = states_out[0]
            with deferred_interrupts():
                save_checkpoint(run_dir, states)
            kept = f"the states after update {_states_step(states)} are checkpointed ({job.describe()})"
        elif where == "training":
            kept = "the data and the normaliser are kept, no update had completed"
        else:
            kept = "nothing had been made yet"
        raise RunInterrupted(
            f"interrupted while {where}: {kept}; resume with: infom train --resume {run_dir}"
        ) from None
    finally:
        from ._loggers import close_loggers

        close_loggers(sinks)
        for pool in pools:
            pool.close()
        job.close()


def _run_data(
    env_name: str,
    run: RunConfig,
    run_dir: Path,
    dataset_dir,
    data: RunData | None,
    generate_missing: bool,
    job: JobProgress,
    log: Callable[[str], None],
    processes: _Processes = _Processes(True, False),
) -> RunData:
    """The run's data: generated if missing (by process 0 of several), checked against what the run
    started with."""
    recorded = read_json(run_dir / DATA_FILE, "data record") if (run_dir / DATA_FILE).exists() else None
    normalizer = load_normalizer(run_dir / NORMALIZER_FILE) if (run_dir / NORMALIZER_FILE).exists() else None
    from_files = data is None
    if data is None:
        last = [time.perf_counter()]

        def on_episode(kind: str, collected: bool) -> None:
            now = time.perf_counter()
            job.advance(f"data {kind}", 1, seconds=now - last[0] if collected else None)
            last[0] = now

        if processes.lead:
            prepare_task_data(
                env_name,
                run,
                dataset_dir=dataset_dir,
                generate_missing=generate_missing,
                progress=False,
                log=log,
                on_episode=on_episode,
            )
        processes.barrier("infom: data prepared")
        job.set_note("loading data")
        data = _load_files(env_name, run, dataset_dir, normalizer)
    elif normalizer is not None:
        data = data._replace(normalizer=normalizer)
    fingerprint = data_fingerprint(data)
    if recorded is None and processes.lead:
        if normalizer is None:
            save_normalizer(run_dir / NORMALIZER_FILE, data.normalizer)
        record = _data_record(env_name, dataset_dir, data, from_files)
        record.update(obs_dim=data.obs_dim, action_dim=data.action_dim)
        atomic_write_json(run_dir / DATA_FILE, record)
    elif recorded is not None and recorded["fingerprint"] != fingerprint:
        raise DatasetError(
            f"{run_dir / DATA_FILE}: the data given to this resumed run differ from those it started with "
            "(fingerprint mismatch); a resumed run trains on the same data or not at all"
        )
    return data


def _agent_for(config: Any) -> Agent:
    for agent in AGENTS.values():
        if type(config) is agent.config_type:
            return agent
    raise ValueError(f"no agent takes a {type(config).__name__}; pass `agent=`")


def _train_loop(
    env_name: str,
    run_dir: Path,
    agent: Agent,
    config: Any,
    run: RunConfig,
    data: RunData,
    job: JobProgress,
    log: Callable[[str], None],
    stop_after: int | None,
    resume: bool,
    states_out: list,
    mesh: Any = None,
    processes: _Processes = _Processes(True, False),
    loggers: tuple[str, ...] = (),
    sinks: list | None = None,
    pools: list | None = None,
) -> RunResult:
    from ._loggers import open_loggers, per_seed

    optim = make_optimizer(config)
    init = eqx.filter_vmap(
        lambda key: init_state(agent, data.obs_dim, data.action_dim, data.normalizer, config, optim, key=key)
    )
    states = init(init_keys(run.seed, run.num_seeds))
    have_checkpoint = bool(checkpoint_steps(run_dir))
    processes.barrier("infom: checkpoints listed")
    if have_checkpoint:
        states = load_checkpoint(run_dir, states)
    elif processes.lead:
        save_checkpoint(run_dir, states)  # so that even a failure in the first block loses nothing

    def checkpoint(states):
        host = processes.host(states)
        if processes.lead:
            save_checkpoint(run_dir, host)

    if mesh is not None:
        # Seeds split over the mesh's `seeds` axis; each device holds both datasets whole.
        from ..training._sharding import place_replicated, place_states

        states = place_states(states, mesh)
        data = data._replace(
            pretrain=place_replicated(data.pretrain, mesh), finetune=place_replicated(data.finetune, mesh)
        )
    states_out.append(states)
    step = _states_step(states)
    for name in (PRETRAIN_CSV, FINETUNE_CSV, EVAL_CSV, DIAGNOSTICS_CSV):
        if processes.lead:
            _truncate_csv(run_dir / name, step)
    processes.barrier("infom: resumed")
    if resume:
        log(f"resuming {run_dir} at update {step}")
    sinks = [] if sinks is None else sinks  # the caller closes them
    pools = [] if pools is None else pools  # the caller closes them
    if loggers and processes.lead:
        sinks.extend(open_loggers(tuple(loggers), run_dir, step, read_run_record(run_dir)))

    def send(scalars: dict[str, float], at: int) -> None:
        for sink in sinks:
            sink.log(scalars, at)

    total = run.pretrain_updates + run.finetune_updates
    done_evals = {int(r["step"]) for r in _read_csv(run_dir / EVAL_CSV)}
    job.set_done("pre-training", min(step, run.pretrain_updates))
    job.set_done("fine-tuning", max(0, step - run.pretrain_updates))
    job.set_done("evaluation", len({s for s in done_evals if s <= step}))
    last_success = float("nan")
    blocks_since_checkpoint = 0
    timed_phases: set[str] = set()
    while True:
        if _eval_due(step, run) and step not in done_evals:
            job.set_note(f"evaluating at fine-tuning update {step - run.pretrain_updates}", "evaluation")
            started = time.perf_counter()
            host_states = processes.host(states)
            rows = []
            if processes.lead:
                if not pools:
                    pools.append(evaluation_pool(env_name, run))
                rows = evaluate_run_states(env_name, agent, host_states, run, pool=pools[0])
                rows = [{"step": step, "finetune_step": step - run.pretrain_updates, **r} for r in rows]
            with deferred_interrupts():
                done_evals.add(step)
                if processes.lead:
                    _append_csv(run_dir / EVAL_CSV, list(EVAL_FIELDS), rows)
                    last_success = float(np.mean([r["success_rate"] for r in rows]))
                    send(
                        {
                            **per_seed("eval", rows, skip=("step", "finetune_step", "seed", "episodes")),
                            "eval/success_rate": last_success,
                            "eval/mean_return": float(np.mean([r["mean_return"] for r in rows])),
                        },
                        step,
                    )
                    summary = _summarise(_read_csv(run_dir / EVAL_CSV))
                    atomic_write_json(run_dir / EVAL_JSON, summary)
                    plot_learning_curve(summary, run_dir / CURVE_PNG, env_name, label=agent.name)
                    save_checkpoint(run_dir, host_states)
                blocks_since_checkpoint = 0
            job.advance("evaluation", 1, seconds=time.perf_counter() - started)
            log(f"fine-tuning update {step - run.pretrain_updates}: {_eval_summary(rows)}")
        if step >= total or (stop_after is not None and step >= stop_after):
            break

        phase = "pretrain" if step < run.pretrain_updates else "finetune"
        block_states = states
        if step == run.pretrain_updates and phase == "finetune":
            block_states = eqx.filter_vmap(
                lambda state, key: begin_finetuning(agent, state, config, dataset=data.finetune, key=key)
            )(states, task_keys(run.seed, run.num_seeds))
        dataset = data.pretrain if phase == "pretrain" else data.finetune
        block_index = step // run.block_size
        started = time.perf_counter()
        keys = block_keys(run.seed, run.num_seeds, block_index)
        loss_fn = agent.pretrain_loss if phase == "pretrain" else agent.finetune_loss
        new_states, metrics = seeds_block(
            agent,
            loss_fn,
            block_states,
            dataset,
            keys=keys,
            num_updates=run.block_size,
            config=config,
            optim=optim,
            first_step=jnp.int32(step),
            mesh=mesh,
            seed_batch=run.seed_batch,
        )
        metrics = jax.tree.map(np.asarray, processes.host(metrics))  # waits for the block
        seconds = time.perf_counter() - started
        diagnostics = None
        if agent.diagnose is not None and run.diagnose_every and (block_index + 1) % run.diagnose_every == 0:
            diagnostics = seeds_diagnostics(
                agent, new_states, dataset, key=diagnostics_key(run.seed, block_index), config=config
            )
            diagnostics = jax.tree.map(np.asarray, processes.host(diagnostics))
        with deferred_interrupts():
            _check_finite(metrics, step, phase)
            if processes.lead:
                metric_rows = _metric_rows(metrics, step, run.seed)
                _append_csv(
                    run_dir / (PRETRAIN_CSV if phase == "pretrain" else FINETUNE_CSV),
                    ["step", "seed", *metrics._fields],
                    metric_rows,
                )
                send(per_seed(phase, metric_rows), step + run.block_size)
            if diagnostics is not None and processes.lead:
                diagnostic_rows = [
                    {
                        "step": step + run.block_size,
                        "phase": phase,
                        "seed": run.seed + i,
                        **{k: float(v[i]) for k, v in diagnostics._asdict().items()},
                    }
                    for i in range(run.num_seeds)
                ]
                _append_csv(
                    run_dir / DIAGNOSTICS_CSV,
                    ["step", "phase", "seed", *diagnostics._fields],
                    diagnostic_rows,
                )
                send(
                    per_seed("diagnostics", diagnostic_rows, skip=("step", "phase", "seed")),
                    step + run.block_size,
                )
            states = new_states
            states_out[0] = states
            step += run.block_size
            blocks_since_checkpoint += 1
            if blocks_since_checkpoint >= run.checkpoint_every or step >= total:
                checkpoint(states)
                blocks_since_checkpoint = 0
        name = "pre-training" if phase == "pretrain" else "fine-tuning"
        # The first block of a phase in this process includes compilation: not a rate.
        job.advance(name, run.block_size, seconds=seconds if name in timed_phases else None)
        timed_phases.add(name)
        means = {k: float(np.mean(v)) for k, v in metrics._asdict().items()}
        parts = [f"{run.block_size / seconds:.0f} upd/s", f"loss {means['loss']:.3g}"]
        if phase == "finetune" and "critic_loss" in means:
            parts.append(f"critic {means['critic_loss']:.3g}")
        if not math.isnan(last_success):
            parts.append(f"success {last_success:.2f}")
        job.set_note(", ".join(parts), name)
    if stop_after is None or step >= total:
        checkpoint(states)
    processes.barrier("infom: run written")
    return RunResult(run_dir, _summarise(_read_csv(run_dir / EVAL_CSV)))


def load_run(run_dir: str | os.PathLike) -> tuple[str, Any, RunConfig, TrainState]:
    """Reads a run directory: `(env_name, infom_config, run_config, seed-stacked states)`, from
    its newest checkpoint (verified against its SHA-256; see [`load_checkpoint`][])."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    if not (run_dir / DATA_FILE).exists():
        raise FileNotFoundError(f"{run_dir}: the run has not trained yet ({DATA_FILE} is missing)")
    sizes = read_json(run_dir / DATA_FILE, "data record")
    agent = AGENTS[record["agent"]]
    config, run = config_from_dict(record, agent.config_type)
    normalizer = load_normalizer(run_dir / NORMALIZER_FILE)
    optim = make_optimizer(config)
    like = eqx.filter_vmap(
        lambda key: init_state(
            agent, sizes["obs_dim"], sizes["action_dim"], normalizer, config, optim, key=key
        )
    )(init_keys(0, run.num_seeds))  # the structure only; the values come from the checkpoint
    return record["env"], config, run, load_checkpoint(run_dir, like)


def evaluate_run(
    run_dir: str | os.PathLike, *, num_episodes: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Re-evaluates the saved policies of a run directory (all seeds); writes `eval_final.json`."""
    env_name, _, run, states = load_run(run_dir)
    agent = AGENTS[read_run_record(run_dir)["agent"]]
    rows = evaluate_run_states(env_name, agent, states, run, num_episodes=num_episodes, progress=progress)
    step = int(np.asarray(states.step)[0])
    record = {"env": env_name, "step": step, "finetune_step": step - run.pretrain_updates, "seeds": rows}
    atomic_write_json(Path(run_dir) / "eval_final.json", record)
    return rows
