"""What settings need from the plugins: a registry passed in through pydantic's validation context.

Validating ``[sources.NAME]``, ``[providers.NAME]``, ``embedder``, ``summarizer`` and ``format`` needs to
know what the plugins registered. ctx.plugins loads the built-ins, which import these settings models,
so settings do not import ctx.plugins: the caller passes a :class:`Registry` instead,
``Settings.model_validate(raw, context={"base_dir": base, "registry": registry})``, as
:func:`ctx.settings.load_settings` does. A caller that passes none (``Settings.model_validate(raw)`` in a
test or a script) gets the installed plugins' registry from :func:`installed_registry`, the one function
of this package that reaches ctx.plugins, at call time and only when a table or name needs a plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError, ValidationInfo

from ctx.settings.base import NamedError, check_name, error_loc, error_msg


class Kind(Protocol):
    """A registered source or provider kind, as far as settings care: the model its table validates with."""

    @property
    def settings_model(self) -> type[BaseModel]: ...


class Registry(Protocol):
    """The names and kinds the loaded plugins registered (ctx.plugins.registry() is one)."""

    @property
    def source_kinds(self) -> Mapping[str, Kind]: ...

    @property
    def provider_kinds(self) -> Mapping[str, Kind]: ...

    @property
    def embedders(self) -> Mapping[str, Any]: ...

    @property
    def summarizers(self) -> Mapping[str, Any]: ...

    @property
    def renderers(self) -> Mapping[str, Any]: ...


def installed_registry(dropins: Path | None = None) -> Registry:
    """The installed plugins' registry (after loading the drop-in files of ``dropins``, if given)."""
    # Imported at call time, never at module level: ctx.plugins loads the built-ins, which import
    # ctx.settings for their settings models, so a module-level import would load every plugin on
    # `import ctx.settings` and make the two import each other. Callers that pass a registry never get here.
    from ctx import plugins

    if dropins is not None:
        plugins.load_dropins(dropins)
    return plugins.registry()


def registry_of(info: ValidationInfo) -> Registry | None:
    """The registry the caller put in the validation context, if any."""
    registry: Registry | None = (info.context or {}).get("registry")
    return registry


def _needed_registry(info: ValidationInfo) -> Registry:
    registry = registry_of(info)
    return installed_registry() if registry is None else registry


def registered(info: ValidationInfo, registry_key: str, what: str, value: str) -> str:
    """A name some plugin registered (embedder, summarizer, renderer), checked when the config loads."""
    known: Mapping[str, Any] = getattr(_needed_registry(info), registry_key)
    if value not in known:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(sorted(known))})")
    return value


def plugin_tables(section: str, value: Any, registry_key: str, base: type[BaseModel],
                  info: ValidationInfo) -> dict[str, Any]:
    """``[SECTION.NAME]`` tables whose ``kind`` a plugin registered; each kind validates its own fields."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a table of [{section}.NAME] tables")
    kinds: Mapping[str, Kind] = getattr(_needed_registry(info), registry_key)
    out: dict[str, Any] = {}
    for name, raw in value.items():
        if isinstance(raw, base):
            out[name] = raw
            continue
        check_name(section, name)
        if not isinstance(raw, dict):
            raise NamedError(f"{section}.{name}", "must be a table")
        kind = raw.get("kind")
        if kind is None:
            raise NamedError(f"{section}.{name}.kind", "missing (one of: " + ", ".join(sorted(kinds)) + ")")
        if not isinstance(kind, str) or kind not in kinds:
            raise NamedError(f"{section}.{name}.kind", f"unknown kind {kind!r} (known: {', '.join(sorted(kinds))})")
        try:
            out[name] = kinds[kind].settings_model.model_validate(raw, context=info.context)
        except ValidationError as exc:
            raise NamedError(f"{section}.{name}." + error_loc(exc.errors()[0]["loc"]),
                             error_msg(exc.errors()[0])) from None
    return out
