"""What settings need from the plugins, passed in through pydantic's validation context, never imported.

Validating ``[sources.NAME]``, ``[providers.NAME]``, ``embedder``, ``summarizer`` and ``format`` needs to
know what the plugins registered. ctx.plugins imports the built-ins, which import these settings models,
so settings cannot import ctx.plugins: the caller passes a :class:`Registry` instead,
``Settings.model_validate(raw, context={"base_dir": base, "registry": registry})``, as
:func:`ctx.settings.load_settings` does with ``ctx.plugins.registry()``. Without one, settings that name a
plugin's kind or name fail with a message saying so (defaults name nothing and need none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError, ValidationInfo

from ctx.settings.base import NamedError, check_name, error_loc, error_msg

NO_REGISTRY = ("cannot be checked without the plugins' registry (load_settings passes one; or validate with "
               "context={'registry': ctx.plugins.registry()})")


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


def registry_of(info: ValidationInfo) -> Registry | None:
    """The registry the caller put in the validation context, if any."""
    registry: Registry | None = (info.context or {}).get("registry")
    return registry


def registered(info: ValidationInfo, registry_key: str, what: str, value: str) -> str:
    """A name some plugin registered (embedder, summarizer, renderer), checked when the config loads."""
    registry = registry_of(info)
    if registry is None:
        raise ValueError(f"{what} {value!r} {NO_REGISTRY}")
    known: Mapping[str, Any] = getattr(registry, registry_key)
    if value not in known:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(sorted(known))})")
    return value


def plugin_tables(section: str, value: Any, registry_key: str, base: type[BaseModel],
                  info: ValidationInfo) -> dict[str, Any]:
    """``[SECTION.NAME]`` tables whose ``kind`` a plugin registered; each kind validates its own fields."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a table of [{section}.NAME] tables")
    registry = registry_of(info)
    kinds: Mapping[str, Kind] | None = None if registry is None else getattr(registry, registry_key)
    out: dict[str, Any] = {}
    for name, raw in value.items():
        if isinstance(raw, base):
            out[name] = raw
            continue
        check_name(section, name)
        if not isinstance(raw, dict):
            raise NamedError(f"{section}.{name}", "must be a table")
        if kinds is None:
            raise NamedError(f"{section}.{name}.kind", NO_REGISTRY)
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
