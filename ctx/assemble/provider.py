"""The context provider role: a pluggable component that returns blocks for a request under a deadline.

A provider *kind* is registered through the ``register_providers`` hook (as source kinds are) and
configured as ``[providers.NAME]`` in ctx.toml; recipes say which providers a request asks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ctx.models import Block, Hit
from ctx.settings import ProviderSettings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point on the monotonic clock; every provider's timeout is capped by what is left of it."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """What providers may read of a request. ``params`` are named values for record queries and URLs."""

    query: str
    user: str | None = None
    session: str | None = None
    tenant: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] | None = None
    path: str | None = None
    top_k: int = 20

    def value(self, name: str) -> str | None:
        """A named request value: user, session, tenant, query, or one of ``params``."""
        if name in ("user", "session", "tenant", "query"):
            return getattr(self, name)  # type: ignore[no-any-return]
        return dict(self.params).get(name)


@dataclass
class Services:
    """What the core lends providers: settings-free handles, never the whole workspace."""

    env: Mapping[str, str]
    base_dir: Path
    run_sync: Callable[..., Awaitable[Any]]  # run_sync(fn, *args) on the provider thread pool
    retriever: Callable[[], Any] = field(default=lambda: None)  # the hybrid Retriever, opened on first use
    catalog: Callable[[], Any] = field(default=lambda: None)
    source_criticality: Mapping[str, str] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    settings: ProviderSettings

    def needs(self) -> tuple[str, ...]:
        """Request values it cannot work without (e.g. ``("user",)``): a request without them skips it."""
        ...

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        """Everything of the request its result depends on: the provider cache key (with its settings)."""
        ...

    def reads(self) -> list[str] | None:
        """ctx sources it reads (their data versions join the cache key); None for every source."""
        ...

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]: ...

    async def aclose(self) -> None: ...


class ProviderKind(Protocol):
    name: str
    settings_model: type[ProviderSettings]

    def create(self, name: str, settings: ProviderSettings, services: Services) -> Provider: ...


class ProviderError(Exception):
    """A provider could not answer; the message is one line and never holds a secret."""


def make_block(provider: str, key: str, title: str, text: str, *, score: float = 1.0, as_of: str | None = None,
               tenant: str | None = None, version: int = 0) -> Block:
    """A block that is not a stored chunk (a record row, an API answer, a policy file): version 0, so its
    provenance line shows ``as_of`` instead of a chunk version."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    ident = hashlib.sha256(f"{provider}\0{key}\0{digest}".encode()).hexdigest()[:24]
    hit = Hit(ident, f"{provider}:{key}", provider, key, title, version, text, [], tenant, 0, len(text), digest,
              score=score)
    return Block(hit, "", text, provider=provider, as_of=as_of)


class BaseProvider:
    """Defaults for the optional parts of the role."""

    def __init__(self, name: str, settings: ProviderSettings, services: Services) -> None:
        self.name = name
        self.settings = settings
        self.services = services

    def needs(self) -> tuple[str, ...]:
        return ()

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        return (request,)

    def reads(self) -> list[str] | None:
        return []

    async def aclose(self) -> None:
        return None
