"""The documentation site builds strictly, and its API pages cover the public API."""

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import infom


ROOT = Path(__file__).resolve().parent.parent


def _documented() -> set[str]:
    """Names the API pages document: `::: infom.NAME` directly, or as members of a documented module."""
    names = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for path in re.findall(r"^::: (\S+)$", page.read_text(), re.M):
            names.add(path.removeprefix("infom."))
            if path.count(".") > 1 and importlib.util.find_spec(path.rpartition(".")[0]) is not None:
                try:  # a module: its public members are on the page
                    module = importlib.import_module(path)
                except (
                    ModuleNotFoundError
                ):  # an object of a sub-package's module (`infom.envs.dmc._tasks.make_env`)
                    continue
                names.update(n for n, v in vars(module).items() if getattr(v, "__module__", None) == path)
    return names


def test_every_public_name_is_on_an_api_page():
    public = set(re.findall(r"(\w+) as \w+", (ROOT / "infom" / "_public.py").read_text()))
    assert public <= set(dir(infom))
    assert sorted(public - _documented()) == []


def test_the_docs_build_strictly(tmp_path):
    """`mkdocs build --strict`: a broken cross-reference in a docstring, a page missing from the navigation
    or an object the API pages name that does not exist fails it."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "core" / "index.html").exists()
    core = (tmp_path / "site" / "api" / "core" / "index.html").read_text()
    assert 'id="infom.sarsa_flow_loss"' in core
    assert (tmp_path / "site" / "notebooks" / "01_quickstart" / "index.html").exists()
