"""The plugin manager: built-ins, installed entry points, and drop-in files from the plugins folder.

``CTX_LOAD_PLUGINS`` (comma-separated names, may be empty) limits which installed plugins load,
so tests and reproducible runs never pick up whatever happens to be installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pluggy

from ctx import hookspecs
from ctx.errors import ConfigError

BUILTINS = (
    "ctx.builtins.files_source",
    "ctx.builtins.jsonl_source",
    "ctx.builtins.sql_source",
    "ctx.builtins.http_source",
    "ctx.builtins.events_source",
    "ctx.builtins.embedders",
    "ctx.builtins.summarizers",
    "ctx.builtins.renderers",
    "ctx.builtins.retrieval_provider",
    "ctx.builtins.session_provider",
    "ctx.builtins.record_provider",
    "ctx.builtins.http_provider",
    "ctx.builtins.static_provider",
)

_pm: pluggy.PluginManager | None = None
_loaded_dirs: set[Path] = set()


def plugin_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("ctx")
        pm.add_hookspecs(hookspecs)
        for name in BUILTINS:
            pm.register(importlib.import_module(name), name=name)
        allowed = os.environ.get("CTX_LOAD_PLUGINS")
        wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        from importlib.metadata import entry_points

        for ep in entry_points(group="ctx"):
            if (wanted is None or ep.name in wanted) and pm.get_plugin(ep.name) is None:
                try:
                    plugin = ep.load()
                except Exception as exc:  # boundary: an installed third-party package
                    problem = " ".join(f"{type(exc).__name__}: {exc}".split())
                    raise ConfigError("plugins", f"installed plugin {ep.name!r} ({ep.value}) failed to load: "
                                      f"{problem} (CTX_LOAD_PLUGINS limits which plugins load)") from None
                pm.register(plugin, name=ep.name)
        _pm = pm
    return _pm


def load_dropins(folder: Path | None) -> list[str]:
    """Register every ``*.py`` in ``folder`` as a plugin; a broken file is a one-line config error."""
    if folder is None or not folder.is_dir() or folder.resolve() in _loaded_dirs:
        return []
    pm = plugin_manager()
    names = []
    for path in sorted(folder.glob("*.py")):
        name = f"ctx_dropin_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # boundary: a third-party file
            # One line whatever the exception's text holds: a config error is always a single line.
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ConfigError("plugins_dir", f"{path.name} failed to load: {problem}") from None
        sys.modules[name] = module
        pm.register(module, name=name)
        names.append(name)
    _loaded_dirs.add(folder.resolve())
    _registries.cache_clear()
    return names


def _collect(hook: Callable[..., Any], pairs: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def register(name_or_obj: Any, obj: Any = None) -> None:
        name, value = (name_or_obj, obj) if pairs else (name_or_obj.name, name_or_obj)
        if name in found:
            raise ConfigError("plugins", f"two plugins register the same name {name!r}")
        found[name] = value

    hook(register=register)
    return found


@lru_cache(maxsize=1)
def _registries() -> dict[str, dict[str, Any]]:
    hook = plugin_manager().hook
    return {
        "sources": _collect(hook.register_sources, pairs=False),
        "embedders": _collect(hook.register_embedders, pairs=True),
        "summarizers": _collect(hook.register_summarizers, pairs=True),
        "renderers": _collect(hook.register_renderers, pairs=True),
        "providers": _collect(hook.register_providers, pairs=False),
    }


def source_kinds() -> dict[str, Any]:
    return _registries()["sources"]


def embedders() -> dict[str, Callable[..., Any]]:
    return _registries()["embedders"]


def summarizers() -> dict[str, Callable[[str, str], str]]:
    return _registries()["summarizers"]


def renderers() -> dict[str, Any]:
    return _registries()["renderers"]


def provider_kinds() -> dict[str, Any]:
    return _registries()["providers"]


def plugin_names() -> list[str]:
    return sorted(name for name, _ in plugin_manager().list_name_plugin())
