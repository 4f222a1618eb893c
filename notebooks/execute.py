"""Executes the notebooks at their full size and stores them with their outputs.

    python notebooks/execute.py                      # all of them
    python notebooks/execute.py 03_intentions        # some of them

Each notebook runs top to bottom in a fresh kernel (`INFOM_NOTEBOOK_SIZE=full`, figures inline) in a
temporary working directory, and is written back atomically with its outputs. Its metadata records
`infom.code_sha256`, the digest of its code cells as they ran, and the size. The tests
(`tests/test_notebooks.py`) execute the same stored code at the small size and refuse a notebook
whose digest does not match its code: an edited cell whose outputs were not regenerated fails CI.

Paths of the machine that ran it (the Python installation, the repository, the home and temporary
directories) are replaced in the outputs by placeholders such as `<site-packages>`.
"""

import argparse
import hashlib
import os
import re
import site
import sys
import tempfile
import time
from pathlib import Path


NOTEBOOK_DIR = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 3600


def code_digest(notebook: dict) -> str:
    """The SHA-256 of a notebook's code cells, in order (their sources only)."""
    digest = hashlib.sha256()
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            digest.update(source.encode())
            digest.update(b"\0")
    return digest.hexdigest()


def _placeholders(workdir: str) -> list[tuple[str, str]]:
    pairs = [(p, "<site-packages>") for p in site.getsitepackages() + [site.getusersitepackages()]]
    pairs += [
        (str(NOTEBOOK_DIR.parent), "<repository>"),
        (sys.prefix, "<python>"),
        (sys.base_prefix, "<python>"),
        (workdir, "<workdir>"),
        (tempfile.gettempdir(), "<tmp>"),
        (str(Path.home()), "~"),
    ]
    return sorted({(a, b) for a, b in pairs if a and len(a) > 1}, key=lambda pair: -len(pair[0]))


def _scrub(value, pairs):
    if isinstance(value, str):
        for path, placeholder in pairs:
            value = value.replace(path, placeholder)
        return value
    if isinstance(value, list):
        return [_scrub(item, pairs) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, pairs) for key, item in value.items()}
    return value


def execute(path: Path) -> float:
    """Runs one notebook at full size and stores it with its outputs; returns the seconds it took."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    os.environ.update(INFOM_NOTEBOOK_SIZE="full", MUJOCO_GL="disable")
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend, which stores the figures
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="infom-notebook-") as workdir:
        client = nbclient.NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": workdir}},
        )
        client.execute()
        pairs = _placeholders(workdir)
    seconds = time.perf_counter() - started
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.from_dict(_scrub(dict(output), pairs)) for output in cell.outputs]
    notebook.metadata.pop("widgets", None)
    notebook.metadata["infom"] = {"size": "full", "code_sha256": code_digest(notebook)}
    text = nbformat.writes(notebook)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: every notebook)")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.names:
        wanted = {re.sub(r"\.ipynb$", "", name) for name in args.names}
        unknown = wanted - {path.stem for path in paths}
        if unknown:
            parser.error(f"no such notebook: {', '.join(sorted(unknown))}")
        paths = [path for path in paths if path.stem in wanted]
    for path in paths:
        print(f"{path.name}: running at full size ...", flush=True)
        print(f"{path.name}: stored with outputs ({execute(path):.0f} s)", flush=True)


if __name__ == "__main__":
    main()
