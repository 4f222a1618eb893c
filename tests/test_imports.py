"""Imports deferred into function bodies (kept out of the command's start-up, or of optional extras) run only
when their function does: each must name a module and attribute that exist, or the failure waits for the
user's run (as an ExORL run's evaluation planning once did)."""

import ast
import importlib
from pathlib import Path

import pytest

import infom


PACKAGE = Path(infom.__file__).parent


def _deferred_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, absolute module, name) of every `from ... import name` inside a function."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module_parts = ["infom", *path.relative_to(PACKAGE).with_suffix("").parts]
        if module_parts[-1] == "__init__":
            module_parts.pop()
        package_parts = module_parts if path.name == "__init__.py" else module_parts[:-1]
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.ImportFrom):
                    continue
                if node.level:
                    base = package_parts[: len(package_parts) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                rel = str(path.relative_to(PACKAGE.parent))
                found.extend((rel, node.lineno, module, alias.name) for alias in node.names)
    return found


DEFERRED = _deferred_imports()


def test_the_package_has_deferred_imports_to_check():
    assert len(DEFERRED) > 50
    assert any(module.startswith("infom.envs.dmc") for _, _, module, _ in DEFERRED)


def test_every_deferred_import_of_the_package_names_what_exists():
    missing = []
    for path, line, module, name in DEFERRED:
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name and not error.name.startswith("infom"):
                continue  # an optional extra that is not installed (e.g. tensorboard)
            missing.append(f"{path}:{line}: module {module} ({error})")
            continue
        if not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{path}:{line}: {module} has no {name}")
    if missing:
        pytest.fail("deferred imports that would fail when their function runs:\n" + "\n".join(missing))
