"""MkDocs hook: the docstrings' short cross-references resolve to the API pages.

The docstrings write [`sarsa_flow_loss`][], [`Dataset.from_arrays`][] or [`make_mesh`][] (as Equinox's do);
mkdocstrings registers each object under its full path (`infom.sarsa_flow_loss`,
`infom.training._sharding.make_mesh`). Before autorefs resolves the references, this hook registers every
documented object also under its path below the innermost module (`sarsa_flow_loss`, `Dataset.from_arrays`,
`make_mesh`). A short name several modules define (each agent's `pretrain_loss`) goes to the object
`infom.<name>` is; one that is not public is left out, so that it fails the strict build instead of linking
to the wrong object.
"""

import importlib.util

from mkdocs.plugins import event_priority


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _short_name(identifier: str) -> str | None:
    parts = identifier.split(".")
    if parts[0] != "infom":
        return None
    cut = 1
    while cut < len(parts) and _is_module(".".join(parts[: cut + 1])):
        cut += 1
    return ".".join(parts[cut:]) or None


@event_priority(0)  # before autorefs applies the references (its on_env runs at -50)
def on_env(env, config, files):
    autorefs = config.plugins["autorefs"]
    url_map = autorefs._primary_url_map
    aliases: dict[str, list[str]] = {}
    for identifier, urls in list(url_map.items()):
        short = _short_name(identifier)
        if short and short not in url_map:
            aliases.setdefault(short, [])
            aliases[short].extend(u for u in urls if u not in aliases[short])
    for short, urls in aliases.items():
        targets = {u.split("#")[-1] for u in urls}
        if len(targets) > 1:  # a name several modules define: the one `infom.<name>` is, if any
            public = _public_path(short)
            urls = [u for u in urls if u.split("#")[-1] == public]
            targets = {public} if urls else set()
        if len(targets) == 1:
            url_map[short] = urls
    return env


def _public_path(short: str) -> str | None:
    import infom

    try:
        obj = getattr(infom, short)
    except AttributeError:
        return None
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None
