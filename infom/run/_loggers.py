"""Optional experiment loggers: the run's metrics and evaluations, also sent to TensorBoard or W&B.

The run directory's CSV and JSON files stay the record a run resumes from; a logger receives the same
numbers as they are written:

- after every block, each seed's block means of the phase's metrics, as `pretrain/<metric>/seed<k>` or
  `finetune/<metric>/seed<k>`, at the update count the block ends at;
- after every diagnosis, `diagnostics/<field>/seed<k>`;
- after every evaluation, `eval/success_rate/seed<k>`, `eval/mean_return/seed<k>` and the means over
  seeds, `eval/success_rate` and `eval/mean_return`, at the update count (pre-training included).

Steps are run-wide update counts, so that pre-training and fine-tuning curves share an axis. A resumed run
continues the same logger run: TensorBoard events after the update it resumes from are purged (`purge_step`);
W&B resumes the run under the id the run directory records (offline, a second `offline-run-*` directory with
that id), and keeps what a killed process logged after its last checkpoint, so those steps appear twice.
"""

import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol


LOGGERS = ("tensorboard", "wandb")
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_ID_FILE = "wandb_id.json"


class Logger(Protocol):
    """Receives scalars `{tag: value}` at a run-wide update `step`."""

    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def _missing(extra: str, package: str) -> ImportError:
    return ImportError(f"the {extra} logger needs {package}: pip install 'infom[{extra}]'")


class TensorBoardLogger:
    """Event files under `RUN_DIR/tensorboard/` (tensorboardX's `SummaryWriter`)."""

    def __init__(self, run_dir: Path, resume_step: int):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboardX") from None
        # purge_step drops what an interrupted earlier process logged after the checkpoint resumed from
        # (events at steps >= purge_step in earlier files); what it logged at that checkpoint stays.
        self._writer = SummaryWriter(
            logdir=str(run_dir / TENSORBOARD_DIR), purge_step=resume_step + 1 if resume_step > 0 else None
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbLogger:
    """A Weights & Biases run under `RUN_DIR/wandb/`, offline unless `WANDB_MODE` says otherwise.

    The run's id is kept in `RUN_DIR/wandb_id.json`, so a resumed run continues it; its config is the run
    directory's `config.json`. `wandb sync RUN_DIR/wandb/offline-run-*` uploads an offline run later.
    """

    def __init__(self, run_dir: Path, record: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        from .._files import atomic_write_json, read_json

        id_file = run_dir / WANDB_ID_FILE
        if id_file.exists():
            run_id = read_json(id_file, "W&B run id")["id"]
        else:
            run_id = secrets.token_hex(4)  # W&B run ids are lowercase letters and digits
            atomic_write_json(id_file, {"id": run_id})
        (run_dir / WANDB_DIR).mkdir(exist_ok=True)
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "infom"),
            name=run_dir.name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=json.loads(json.dumps(record, default=str)),
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(dict(scalars), step=step)

    def close(self) -> None:
        self._run.finish()


def open_loggers(names: tuple[str, ...], run_dir: Path, resume_step: int, record: dict[str, Any]) -> list:
    """The loggers `names` asks for (`"tensorboard"`, `"wandb"`), opened for `run_dir`."""
    loggers = []
    try:
        for name in names:
            if name == "tensorboard":
                loggers.append(TensorBoardLogger(run_dir, resume_step))
            elif name == "wandb":
                loggers.append(WandbLogger(run_dir, record))
            else:
                raise ValueError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
    except BaseException:
        close_loggers(loggers)
        raise
    return loggers


def check_loggers(names: tuple[str, ...]) -> None:
    """Refuses unknown logger names and loggers whose package is not installed, naming the extra."""
    import importlib.util

    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
        package = {"tensorboard": "tensorboardX", "wandb": "wandb"}[name]
        if importlib.util.find_spec(package) is None:
            raise _missing(name, package)


def close_loggers(loggers: list) -> None:
    for logger in loggers:
        logger.close()


def per_seed(prefix: str, rows: list[dict[str, Any]], skip: tuple[str, ...] = ("step", "seed")) -> dict:
    """`{prefix/<field>/seed<k>: value}` from rows with a `seed` field."""
    return {
        f"{prefix}/{field}/seed{row['seed']}": float(value)
        for row in rows
        for field, value in row.items()
        if field not in skip
    }
