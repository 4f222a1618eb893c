"""Crash safety: the one atomic-write helper every module uses, and interruption handling."""

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same directory, `fsync` and
    `os.replace`, then syncs the directory: a crash at any moment leaves either the previous
    file or the complete new one under `path`, never a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows it
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def atomic_write_json(path: str | os.PathLike, record: Any) -> None:
    """`atomic_write_bytes` of `record` as indented, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Reads a JSON file; a missing file raises `FileNotFoundError` and a torn or foreign one a
    `ValueError`, both naming the file and `what` it should hold."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no {what} (the file is missing)") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{path}: not a readable {what} (truncated or corrupt JSON: {error})") from None


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Holds back Ctrl-C (SIGINT) and SIGTERM while the block runs, then raises
    `KeyboardInterrupt` at its end if one arrived, so that bookkeeping that must happen
    together (new state, its metrics rows, its checkpoint) is never cut in half.

    Outside the main thread (where signal handlers cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


def read_npz(path: os.PathLike | str, keys: Collection[str] | None = None) -> dict[str, Any]:
    """The arrays of an `.npz` file (only `keys`, if given), read without pickles; a missing, foreign,
    truncated or corrupt file, or an unreadable member, raises `DatasetError` naming the file (and
    the key)."""
    import zipfile

    import numpy as np

    from ._errors import DatasetError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file does not exist")
    arrays = {}
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise DatasetError(f"{path}: not an .npz file (no zip header: empty, truncated or other format)")
        handle.seek(0)
        try:
            archive = np.load(handle, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DatasetError(f"{path}: not a readable .npz file (corrupt or truncated): {error}") from error
        with archive:
            for key in archive.files:
                if keys is not None and key not in keys:
                    continue
                try:
                    arrays[key] = archive[key]
                except Exception as error:  # zlib.error, BadZipFile, ValueError, EOFError, ...
                    raise DatasetError(
                        f"{path}: key {key!r} could not be read (corrupt or truncated?): {error}"
                    ) from error
    return arrays
