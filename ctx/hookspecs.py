"""Every plugin hook. Built-ins implement these exactly as third-party plugins do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ctx")
hookimpl = pluggy.HookimplMarker("ctx")


@hookspec
def register_sources(register: Callable[[Any], None]) -> None:
    """Register source kinds: ``register(kind)`` with a :class:`ctx.ingest.source.SourceKind`."""


@hookspec
def register_embedders(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register embedders: ``register(name, factory)``; ``factory(model_dir)`` returns an Embedder."""


@hookspec
def register_summarizers(register: Callable[[str, Callable[[str, str], str]], None]) -> None:
    """Register document summarizers: ``register(name, fn)`` with ``fn(title, text) -> summary``."""


@hookspec
def register_renderers(register: Callable[[str, Any], None]) -> None:
    """Register context renderers: ``register(name, renderer)`` with a ``Renderer``."""


@hookspec
def register_providers(register: Callable[[Any], None]) -> None:
    """Register context provider kinds: ``register(kind)`` with a :class:`ctx.assemble.provider.ProviderKind`."""
