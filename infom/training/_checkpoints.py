"""Checkpoints of a run's (seed-stacked) training states: each with its step, size and SHA-256,
verified on load; the newest two are kept, so the previous good one survives a damaged new one."""

import hashlib
import io
import os
import re
from pathlib import Path

import equinox as eqx
import numpy as np

from .._files import atomic_write_bytes, atomic_write_json, read_json
from ._train import TrainState


_CHECKPOINT_RE = re.compile(r"checkpoint-(\d{9})\.json")
_KEEP_CHECKPOINTS = 2


class CheckpointError(ValueError):
    """A checkpoint is missing, torn or damaged; the message names the file (and a previous
    checkpoint that verifies, if there is one)."""


def checkpoint_paths(run_dir: str | os.PathLike, step: int) -> tuple[Path, Path]:
    """`(checkpoint-STEP.eqx, checkpoint-STEP.json)` in `run_dir` (STEP zero-padded to 9 digits)."""
    run_dir = Path(run_dir)
    return run_dir / f"checkpoint-{step:09d}.eqx", run_dir / f"checkpoint-{step:09d}.json"


def checkpoint_steps(run_dir: str | os.PathLike) -> list[int]:
    """The steps of the checkpoints recorded in `run_dir` (those with a `.json` record), newest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    steps = [int(m[1]) for f in run_dir.iterdir() if (m := _CHECKPOINT_RE.fullmatch(f.name))]
    return sorted(steps, reverse=True)


def _states_step(states: TrainState) -> int:
    return int(np.asarray(states.step).reshape(-1)[0])


def save_checkpoint(run_dir: str | os.PathLike, states: TrainState) -> None:
    """Saves the (seed-stacked) training states beside the previous checkpoint.

    Writes `checkpoint-STEP.eqx` (the serialised states), then `checkpoint-STEP.json`
    (`step`, `bytes`, `sha256` of the `.eqx` file), each atomically; a checkpoint exists only
    once its record does. Then removes all but the newest two checkpoints, so the previous good
    one survives whatever happens to the new one. Saving a step that already has a checkpoint
    does nothing (the states of one step are the same).
    """
    run_dir = Path(run_dir)
    step = _states_step(states)
    eqx_path, meta_path = checkpoint_paths(run_dir, step)
    if meta_path.exists():
        return
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, states)
    payload = buffer.getvalue()
    atomic_write_bytes(eqx_path, payload)
    atomic_write_json(
        meta_path,
        {
            "step": step,
            "file": eqx_path.name,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "format": 1,
        },
    )
    keep = set(checkpoint_steps(run_dir)[:_KEEP_CHECKPOINTS])
    for old in checkpoint_steps(run_dir):
        if old not in keep:
            old_eqx, old_meta = checkpoint_paths(run_dir, old)
            old_meta.unlink(missing_ok=True)  # the record first: an .eqx without one is ignored
            old_eqx.unlink(missing_ok=True)
    for orphan in run_dir.glob("checkpoint-*.eqx"):
        if not orphan.with_suffix(".json").exists():
            orphan.unlink(missing_ok=True)


def _verified_payload(run_dir: Path, step: int) -> bytes:
    """The bytes of checkpoint `step`, checked against its record; `CheckpointError` naming
    the file otherwise."""
    eqx_path, meta_path = checkpoint_paths(run_dir, step)
    try:
        meta = read_json(meta_path, "checkpoint record")
        expected_bytes, expected_sha = int(meta["bytes"]), str(meta["sha256"])
        if int(meta["step"]) != step:
            raise ValueError(f"{meta_path}: records step {meta['step']}, its name says {step}")
    except (ValueError, KeyError, TypeError, FileNotFoundError) as error:
        message = str(error)
        if str(meta_path) not in message:
            message = f"{meta_path}: not a checkpoint record ({error})"
        raise CheckpointError(message) from None
    try:
        payload = eqx_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{eqx_path}: missing (its record {meta_path.name} exists)") from None
    actual_sha = hashlib.sha256(payload).hexdigest()
    if len(payload) != expected_bytes or actual_sha != expected_sha:
        raise CheckpointError(
            f"{eqx_path}: damaged ({len(payload)} bytes, sha256 {actual_sha[:12]}...; "
            f"{meta_path.name} records {expected_bytes} bytes, sha256 {expected_sha[:12]}...)"
        )
    return payload


def load_checkpoint(run_dir: str | os.PathLike, like: TrainState) -> TrainState:
    """Loads the newest checkpoint saved by [`save_checkpoint`][] into the structure of `like`,
    after checking its size and SHA-256 against its record and the step it holds.

    **Raises:** `CheckpointError` naming the damaged file, and the previous checkpoint if it
    verifies (delete the damaged pair to resume from it); `FileNotFoundError` if there is none.
    """
    run_dir = Path(run_dir)
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir}: no checkpoint (no checkpoint-*.json record)")
    step = steps[0]
    eqx_path, meta_path = checkpoint_paths(run_dir, step)
    try:
        payload = _verified_payload(run_dir, step)
        states = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
        if _states_step(states) != step:
            raise CheckpointError(f"{eqx_path}: holds step {_states_step(states)}, its record says {step}")
    except CheckpointError as error:
        raise CheckpointError(f"{error}{_previous_hint(run_dir, steps[1:], step)}") from None
    except Exception as error:  # a foreign file, or a run with other shapes
        raise CheckpointError(f"{eqx_path}: cannot be read as this run's states ({error})") from error
    return states


def _previous_hint(run_dir: Path, older: list[int], step: int) -> str:
    for previous in older:
        try:
            _verified_payload(run_dir, previous)
        except CheckpointError:
            continue
        bad = " and ".join(p.name for p in checkpoint_paths(run_dir, step))
        return (
            f". The previous checkpoint {checkpoint_paths(run_dir, previous)[0].name} (update {previous}) "
            f"is intact: delete {bad} to resume from it."
        )
    return ". No older checkpoint verifies."
