"""The plugin manager: built-ins and installed plugins from entry points, and drop-in files from the plugins folder.

ctx's built-ins are entry points of the ctx distribution itself ([project.entry-points.ctx] in
pyproject.toml), loaded exactly as a third-party plugin's are. ``CTX_LOAD_PLUGINS`` (comma-separated
names, may be empty) limits which *other* installed plugins load, so tests and reproducible runs never
pick up whatever happens to be installed; ctx's own always load.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pluggy

from ctx import hookspecs
from ctx.errors import ConfigError

DISTRIBUTION = "ctx"  # entry points of this distribution are the built-ins

_pm: pluggy.PluginManager | None = None
_loaded_dirs: set[Path] = set()


def plugin_manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("ctx")
        pm.add_hookspecs(hookspecs)
        found = list(entry_points(group="ctx"))
        builtins = [ep for ep in found if _distribution(ep) == DISTRIBUTION]
        if not builtins:
            raise ConfigError("plugins", "ctx's built-in plugins are not registered: its package metadata has no "
                              "[project.entry-points.ctx] (install ctx, e.g. `pip install -e .` in a checkout)")
        for ep in builtins:  # a failing built-in is a bug in ctx: its traceback is the useful report
            pm.register(ep.load(), name=ep.name)
        allowed = os.environ.get("CTX_LOAD_PLUGINS")
        wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        for ep in found:
            if _distribution(ep) == DISTRIBUTION or (wanted is not None and ep.name not in wanted):
                continue
            if pm.get_plugin(ep.name) is None:
                try:
                    plugin = ep.load()
                except Exception as exc:  # boundary: an installed third-party package
                    problem = " ".join(f"{type(exc).__name__}: {exc}".split())
                    raise ConfigError("plugins", f"installed plugin {ep.name!r} ({ep.value}) failed to load: "
                                      f"{problem} (CTX_LOAD_PLUGINS limits which plugins load)") from None
                pm.register(plugin, name=ep.name)
        _pm = pm
    return _pm


def _distribution(ep: EntryPoint) -> str | None:
    """The name of the distribution that declares ``ep`` (None for one built by hand)."""
    return ep.dist.name if ep.dist is not None else None


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


@dataclass(frozen=True)
class PluginRegistry:
    """What the loaded plugins registered, as ctx.settings validates against it (a ``ctx.settings.Registry``).

    Each mapping is read when asked for, not when this is made: drop-ins loaded later are seen, and a
    config that names no plugin never loads them (as when settings looked the kinds up themselves).
    """

    @property
    def source_kinds(self) -> dict[str, Any]:
        return source_kinds()

    @property
    def provider_kinds(self) -> dict[str, Any]:
        return provider_kinds()

    @property
    def embedders(self) -> dict[str, Any]:
        return embedders()

    @property
    def summarizers(self) -> dict[str, Any]:
        return summarizers()

    @property
    def renderers(self) -> dict[str, Any]:
        return renderers()


def registry() -> PluginRegistry:
    """The registry to validate settings with: ``Settings.model_validate(raw, context={"registry": ...})``."""
    return PluginRegistry()


def plugin_names() -> list[str]:
    return sorted(name for name, _ in plugin_manager().list_name_plugin())
