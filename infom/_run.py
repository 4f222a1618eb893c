"""The end-to-end run: data, pre-training, fine-tuning and evaluation on an OGBench task,
with a run directory, atomic checkpoints, exact resumption and a non-finite-loss diagnosis."""

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._config import InFOMConfig
from ._data import Dataset, Normalizer, fit_normalizer, load_normalizer, normalize_dataset, save_normalizer
from ._presets import RunConfig, config_from_dict, config_to_dict
from ._train import (
    FinetuneMetrics,
    PretrainMetrics,
    TrainState,
    _block,
    finetune_step,
    init_train_state,
    make_optimizer,
    policy_actions,
    pretrain_step,
    start_finetuning,
)


CONFIG_FILE = "config.json"
NORMALIZER_FILE = "normalizer.npz"
CHECKPOINT_FILE = "checkpoint.eqx"
CHECKPOINT_META_FILE = "checkpoint.json"
PRETRAIN_CSV = "pretrain_metrics.csv"
FINETUNE_CSV = "finetune_metrics.csv"
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


# --------------------------------------------------------------------------- files


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same directory and `os.replace`,
    so a crash never leaves a partial file under `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, record: Any) -> None:
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(run_dir: str | os.PathLike, states: TrainState) -> None:
    """Serialises the (seed-stacked) training states atomically, then a small JSON record of
    the step; a checkpoint is only complete when both agree."""
    run_dir = Path(run_dir)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, states)
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())
    _write_json(run_dir / CHECKPOINT_META_FILE, {"step": int(np.asarray(states.step).reshape(-1)[0])})


def load_checkpoint(run_dir: str | os.PathLike, like: TrainState) -> TrainState:
    """Loads the states saved by [`save_checkpoint`][] into the structure of `like`."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    try:
        with open(path, "rb") as handle:
            states = eqx.tree_deserialise_leaves(handle, like)
        meta = json.loads((run_dir / CHECKPOINT_META_FILE).read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{run_dir}: no checkpoint ({error.filename} is missing)") from None
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"{path}: cannot read the checkpoint ({error})") from error
    step = int(np.asarray(states.step).reshape(-1)[0])
    if meta.get("step") != step:
        raise ValueError(f"{path}: holds step {step} but {CHECKPOINT_META_FILE} says {meta.get('step')}")
    return states


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
    """Loads (generating them first if missing and allowed) the pre-training "play" and the
    reward-labelled fine-tuning "play-ft" datasets of an OGBench task through OGBench's own
    loader, and normalises both with one normaliser fitted on the pre-training data (or the
    given `normalizer`, e.g. the one stored with a run)."""
    from ._ogbench import _parse_name, dataset_paths, generate_dataset, load_ogbench

    domain = _parse_name(env_name)[0]
    paths = dataset_paths(env_name, dataset_dir)
    for kind, train_path, val_path, episodes in (
        ("play", paths[0], paths[1], run.pretrain_episodes),
        ("play-ft", paths[2], paths[3], run.finetune_episodes),
    ):
        if train_path.exists() and val_path.exists():
            continue
        if not generate_missing:
            continue  # load_ogbench raises DatasetNotFoundError naming the command
        log(f"generating {kind} data for {domain} ({episodes} episodes) in {train_path.parent}")
        generate_dataset(
            domain,
            train_path,
            num_episodes=episodes,
            kind=kind,
            seed=0,
            overwrite=True,
            progress=progress,
            num_workers=min(2, os.cpu_count() or 1),
        )
    pre = load_ogbench(env_name, dataset_dir=dataset_dir, kind="play")
    fine = load_ogbench(env_name, dataset_dir=dataset_dir, kind="play-ft")
    reward_free = {k: v for k, v in pre.train.items() if k not in ("rewards", "masks")}
    pretrain = Dataset.from_ogbench(reward_free, source=paths[0].name)
    finetune = Dataset.from_ogbench(fine.train, source=paths[2].name)
    for env in (pre.env, fine.env):
        with contextlib.suppress(Exception):
            env.close()
    if normalizer is None:
        normalizer = fit_normalizer(pretrain.observations, run.obs_normalization)
    return RunData(
        pretrain=normalize_dataset(pretrain, normalizer),
        finetune=normalize_dataset(finetune, normalizer),
        normalizer=normalizer,
        obs_dim=int(pretrain.observations.shape[1]),
        action_dim=int(pretrain.actions.shape[1]),
    )


# --------------------------------------------------------------------------- compiled blocks


@eqx.filter_jit
def _multi_seed_block(phase: str, states, dataset, keys, num_updates: int, config: InFOMConfig, optim):
    step_fn = pretrain_step if phase == "pretrain" else finetune_step
    return eqx.filter_vmap(
        lambda state, key: _block(step_fn, state, dataset, key, num_updates, config, optim)
    )(states, keys)


def _block_keys(run: RunConfig, block_index: int) -> jax.Array:
    """Keys of one block for every seed: a pure function of (seed, block index), so a resumed
    run draws exactly the numbers an uninterrupted run would."""
    return jnp.stack([jr.fold_in(jr.key(run.seed + i), block_index) for i in range(run.num_seeds)])


def _check_finite(metrics: PretrainMetrics | FinetuneMetrics, first_step: int, phase: str) -> None:
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


def make_policy(state: TrainState, *, pad_to: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """A NumPy policy `raw observations [n, obs_dim] -> actions [n, action_dim]` for the
    evaluation harness: deterministic `clip(mu(normalize(s)), -1, 1)`, jitted, with the batch
    padded to a multiple of `pad_to` so a shrinking number of running episodes does not
    trigger recompilation."""
    actions_fn = eqx.filter_jit(policy_actions)

    def policy(observations: np.ndarray) -> np.ndarray:
        n = observations.shape[0]
        padded = max(pad_to, math.ceil(n / pad_to) * pad_to)
        batch = np.zeros((padded, observations.shape[1]), dtype=np.float32)
        batch[:n] = observations
        return np.asarray(actions_fn(state, jnp.asarray(batch)))[:n]

    return policy


def evaluate_run_states(
    env_name: str,
    states: TrainState,
    run: RunConfig,
    *,
    num_episodes: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Evaluates every seed's policy on the OGBench task; one row per seed."""
    from ._evaluation import evaluate_ogbench

    rows = []
    for index in range(run.num_seeds):
        result = evaluate_ogbench(
            env_name,
            make_policy(_seed(states, index)),
            num_episodes=num_episodes or run.eval_episodes,
            seed=10_000 * (run.seed + index + 1),
            num_workers=run.eval_workers,
            progress=progress,
        )
        rows.append(
            {
                "seed": run.seed + index,
                "success_rate": float(result.success_rate),
                "mean_return": float(result.mean_return),
                "episodes": len(result.successes),
            }
        )
    return rows


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
            }
        )
    return summary


def plot_learning_curve(summary: list[dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """Success rate against fine-tuning updates (mean and std over seeds), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([s["finetune_step"] for s in summary])
    mean = np.array([s["success_mean"] for s in summary])
    std = np.array([s["success_std"] for s in summary])
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(steps, mean, marker="o", color="C0", label="InFOM")
    ax.fill_between(steps, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color="C0", alpha=0.2)
    ax.set(xlabel="fine-tuning updates", ylabel="success rate", ylim=(-0.02, 1.02), title=title)
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


def _eval_due(step: int, run: RunConfig) -> bool:
    done = step - run.pretrain_updates
    return step >= run.pretrain_updates and (done % run.eval_interval == 0 or done == run.finetune_updates)


def train(
    env_name: str,
    run_dir: str | os.PathLike,
    infom: InFOMConfig | None = None,
    run: RunConfig | None = None,
    *,
    preset: str | None = None,
    resume: bool = False,
    dataset_dir: str | os.PathLike | None = None,
    generate_missing: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
    data: RunData | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Pre-trains, fine-tunes and evaluates InFOM on an OGBench task, writing a run directory.

    The run directory holds `config.json` (the resolved configs), `normalizer.npz`,
    `checkpoint.eqx` + `checkpoint.json` (all seeds' [`TrainState`][]s, written atomically),
    `pretrain_metrics.csv` / `finetune_metrics.csv` (block means per seed), `eval.csv`
    (success rate and return per evaluation and seed), `eval.json` (mean and std over seeds)
    and `learning_curve.png`.

    With `resume=True`, the configs and normaliser are read from `run_dir`, training continues
    from the last checkpoint, and rows written after it are dropped: because every block's
    randomness is a function of (seed, block index) only, the run ends with exactly the
    parameters of an uninterrupted run.

    **Arguments:**

    - `env_name`: an OGBench task, e.g. `cube-single-play-singletask-task1-v0`.
    - `run_dir`: the run directory (created; must be empty or absent unless resuming).
    - `infom`, `run`: the configs (ignored when resuming); `preset` records their origin.
    - `dataset_dir`: OGBench's dataset directory (default `~/.ogbench/data`).
    - `generate_missing`: generate missing datasets with OGBench's oracles (else fail with the
      command that makes them).
    - `progress`, `log`: a progress bar on stderr, and a callback for one-line messages.
    - `data`: pre-loaded [`RunData`][] (skips loading; for tests and notebooks).
    - `stop_after`: stop (after checkpointing) once this many updates are done, as if killed.

    **Raises:** `NonFiniteLossError` naming the loss, update and seed if a loss becomes
    non-finite (the last checkpoint stays intact); `DatasetNotFoundError` if data are missing
    and `generate_missing` is False.
    """
    run_dir = Path(run_dir)
    if resume:
        record = json.loads((run_dir / CONFIG_FILE).read_text())
        if record["env"] != env_name:
            raise ValueError(f"{run_dir} is a run on {record['env']!r}, not {env_name!r}")
        infom, run = config_from_dict(record)
        normalizer = load_normalizer(run_dir / NORMALIZER_FILE)
    else:
        if infom is None or run is None:
            raise ValueError("train needs `infom` and `run` configs unless resuming")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"{run_dir} is not empty; pass resume=True (--resume) to continue it")
        run_dir.mkdir(parents=True, exist_ok=True)
        normalizer = None

    if data is None:
        data = load_task_data(
            env_name,
            run,
            dataset_dir=dataset_dir,
            generate_missing=generate_missing,
            progress=progress,
            log=log,
            normalizer=normalizer,
        )
    if not resume:
        _write_json(
            run_dir / CONFIG_FILE,
            {
                "env": env_name,
                "preset": preset,
                **config_to_dict(infom, run),
                "dataset_rows": {
                    "pretrain": int(data.pretrain.observations.shape[0]),
                    "finetune": int(data.finetune.observations.shape[0]),
                },
                "obs_dim": data.obs_dim,
                "action_dim": data.action_dim,
            },
        )
        save_normalizer(run_dir / NORMALIZER_FILE, data.normalizer)

    optim = make_optimizer(infom)
    init = eqx.filter_vmap(
        lambda key: init_train_state(data.obs_dim, data.action_dim, data.normalizer, infom, optim, key=key)
    )
    states = init(jnp.stack([jr.key(run.seed + i) for i in range(run.num_seeds)]))
    if resume and (run_dir / CHECKPOINT_FILE).exists():
        states = load_checkpoint(run_dir, states)
    elif not (run_dir / CHECKPOINT_FILE).exists():
        save_checkpoint(run_dir, states)  # so that even a failure in the first block loses nothing
    step = int(np.asarray(states.step)[0])
    for name in (PRETRAIN_CSV, FINETUNE_CSV, EVAL_CSV):
        _truncate_csv(run_dir / name, step)
    if resume:
        log(f"resuming {run_dir} at update {step}")

    total = run.pretrain_updates + run.finetune_updates
    done_evals = {int(r["step"]) for r in _read_csv(run_dir / EVAL_CSV)}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, unit="upd", dynamic_ncols=True, smoothing=0.05)
    last_success = float("nan")
    blocks_since_checkpoint = 0
    try:
        while True:
            if _eval_due(step, run) and step not in done_evals:
                if bar is not None:
                    bar.set_postfix_str(f"evaluating at fine-tuning update {step - run.pretrain_updates}")
                rows = evaluate_run_states(env_name, states, run)
                rows = [{"step": step, "finetune_step": step - run.pretrain_updates, **r} for r in rows]
                _append_csv(run_dir / EVAL_CSV, list(EVAL_FIELDS), rows)
                done_evals.add(step)
                last_success = float(np.mean([r["success_rate"] for r in rows]))
                summary = _summarise(_read_csv(run_dir / EVAL_CSV))
                _write_json(run_dir / EVAL_JSON, summary)
                plot_learning_curve(summary, run_dir / CURVE_PNG, env_name)
                log(f"fine-tuning update {step - run.pretrain_updates}: success {last_success:.3f}")
                save_checkpoint(run_dir, states)
                blocks_since_checkpoint = 0
            if step >= total or (stop_after is not None and step >= stop_after):
                break

            phase = "pretrain" if step < run.pretrain_updates else "finetune"
            if step == run.pretrain_updates and phase == "finetune":
                states = eqx.filter_vmap(start_finetuning)(states)
            dataset = data.pretrain if phase == "pretrain" else data.finetune
            block_index = step // run.block_size
            started = time.perf_counter()
            new_states, metrics = _multi_seed_block(
                phase, states, dataset, _block_keys(run, block_index), run.block_size, infom, optim
            )
            _check_finite(metrics, step, phase)
            states = new_states
            _append_csv(
                run_dir / (PRETRAIN_CSV if phase == "pretrain" else FINETUNE_CSV),
                ["step", "seed", *metrics._fields],
                _metric_rows(metrics, step, run.seed),
            )
            step += run.block_size
            blocks_since_checkpoint += 1
            if blocks_since_checkpoint >= run.checkpoint_every or step >= total:
                save_checkpoint(run_dir, states)
                blocks_since_checkpoint = 0
            if bar is not None:
                means = {k: float(np.mean(v)) for k, v in metrics._asdict().items()}
                rate = run.block_size / (time.perf_counter() - started)
                parts = [f"{rate:.0f} upd/s", f"loss {means['loss']:.3g}", f"flow {means['flow_loss']:.3g}"]
                if phase == "finetune":
                    parts.append(f"critic {means['critic_loss']:.3g}")
                if not math.isnan(last_success):
                    parts.append(f"success {last_success:.2f}")
                bar.set_postfix_str(", ".join(parts))
                bar.update(run.block_size)
        if stop_after is None or step >= total:
            save_checkpoint(run_dir, states)
    finally:
        if bar is not None:
            bar.close()
    return RunResult(run_dir, _summarise(_read_csv(run_dir / EVAL_CSV)))


def load_run(run_dir: str | os.PathLike) -> tuple[str, InFOMConfig, RunConfig, TrainState]:
    """Reads a run directory: `(env_name, infom_config, run_config, seed-stacked states)`."""
    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir} is not a run directory ({CONFIG_FILE} is missing)") from None
    infom, run = config_from_dict(record)
    normalizer = load_normalizer(run_dir / NORMALIZER_FILE)
    optim = make_optimizer(infom)
    like = eqx.filter_vmap(
        lambda key: init_train_state(
            record["obs_dim"], record["action_dim"], normalizer, infom, optim, key=key
        )
    )(jnp.stack([jr.key(i) for i in range(run.num_seeds)]))
    return record["env"], infom, run, load_checkpoint(run_dir, like)


def evaluate_run(
    run_dir: str | os.PathLike, *, num_episodes: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Re-evaluates the saved policies of a run directory (all seeds); writes `eval_final.json`."""
    env_name, _, run, states = load_run(run_dir)
    rows = evaluate_run_states(env_name, states, run, num_episodes=num_episodes, progress=progress)
    step = int(np.asarray(states.step)[0])
    record = {"env": env_name, "step": step, "finetune_step": step - run.pretrain_updates, "seeds": rows}
    _write_json(Path(run_dir) / "eval_final.json", record)
    return rows
