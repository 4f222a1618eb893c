"""infom: Intention-Conditioned Flow Occupancy Models as pure JAX functions on Equinox pytrees.

Shapes and dtypes of every public function are checked at trace time (jaxtyping +
beartype); the checks cost nothing inside `jax.jit`.

The public names (listed in `infom/_public.py`) are imported on first use, so that
`import infom` and the `infom` command start without importing JAX until they need it.
"""

import importlib.metadata
import os
import pathlib
import typing

from jaxtyping import install_import_hook


# Modules that must import without JAX (the command's start) or validate themselves (configs),
# and the packages above them (which hold no code).
_UNCHECKED = (
    "infom._config",
    "infom._errors",
    "infom._files",
    "infom._literals",
    "infom.envs",
    "infom.envs.dmc",
    "infom.envs.dmc._names",
    "infom.envs.ogbench",
    "infom.envs.ogbench._names",
    "infom.run",
    "infom.run._cli",
    "infom.run._loggers",
    "infom.run._presets",
    "infom.run._progress",
)


# Installed for the life of the process (not in a `with` block): every other `infom` module,
# whenever and by whom it is imported, gets `@jaxtyped(typechecker=beartype)` on its functions.
def _modules() -> list[str]:
    """Every module file of the package, by name, found without importing anything."""
    root = pathlib.Path(__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] != "__init__":
            names.append(".".join(("infom", *parts)))
    return names


# The type checker, as jaxtyping's import hook takes it: beartype with its default configuration, or
# the expression in `INFOM_TYPECHECKER` (the tests ask for beartype's full strategy that way).
_TYPECHECKER = os.environ.get("INFOM_TYPECHECKER", "beartype.beartype")
install_import_hook([name for name in _modules() if name not in _UNCHECKED], _TYPECHECKER)

if typing.TYPE_CHECKING:
    from ._public import *  # noqa: F403


def _load_public() -> typing.Any:
    return importlib.import_module("infom._public")


def __getattr__(name: str) -> typing.Any:
    # Private names (submodules being imported, dunder probes) are not looked up here.
    if name.startswith("_"):
        raise AttributeError(f"module 'infom' has no attribute {name!r}")
    public = vars(_load_public())
    if name not in public or name.startswith("_"):
        raise AttributeError(f"module 'infom' has no attribute {name!r}")
    globals().update({k: v for k, v in public.items() if not k.startswith("_")})
    return public[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | {k for k in vars(_load_public()) if not k.startswith("_")})


try:
    __version__ = importlib.metadata.version("infom")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
