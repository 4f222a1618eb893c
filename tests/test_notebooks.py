"""The worked examples in `notebooks/` run top to bottom at their small size, and are committed clean."""

import json
import re
from pathlib import Path

import nbclient
import nbformat
import pytest


NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600


PRIVATE_NAME = re.compile(r"\binfom\._(?!_)|from infom\.")  # `infom._x` or `from infom._x import y`


def test_every_notebook_is_committed_without_outputs_and_imports_only_public_names():
    names = [path.name for path in NOTEBOOKS]
    assert names == [
        "01_quickstart.ipynb",
        "02_bellman_identity.ipynb",
        "03_intentions.ipynb",
        "04_finetune_ogbench.ipynb",
    ]
    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        assert notebook["nbformat"] == 4, path.name
        assert notebook["metadata"]["kernelspec"]["name"] == "python3", path.name
        code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
        for cell in code:
            source = "".join(cell["source"])
            assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name} ran:\n{source}"
            assert not PRIVATE_NAME.search(source), f"{path.name}: a private name in\n{source}"
        assert "INFOM_NOTEBOOK_SIZE" in "".join("".join(cell["source"]) for cell in code), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_at_small_size(path, tmp_path, monkeypatch):
    """Executes every cell in a fresh kernel; a failing cell fails the test with the cell's error."""
    # The kernel inherits this environment: small size, no display, no MuJoCo rendering.
    monkeypatch.setenv("INFOM_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MUJOCO_GL", "disable")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # IPython colours its tracebacks
        pytest.fail(f"{path.name} failed:\n{message}", pytrace=False)
