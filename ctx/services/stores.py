"""The stores of one home: its settings and writer, and the catalog, embedder, vectors, traces, jobs and
versions, each opened on first use so light commands stay light."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from ctx import plugins
from ctx.observe.traces import TraceStore
from ctx.settings import Settings
from ctx.store import private
from ctx.store.catalog import Catalog
from ctx.store.jobs import JobStore
from ctx.store.writer import InlineWriter, ThreadWriter
from ctx.versions.store import VersionStore

# Said wherever a command finds nothing configured to read from: ingest, assemble and search refuse with it
# (exit 2 from the CLI, 400 from the daemon), `ctx sources` prints it under its empty listing.
NO_SOURCES = ("no sources configured: add a [sources.NAME] table to ctx.toml (ctx.toml.example shows every "
              "kind), or run `ctx init` to write a starter ctx.toml")

# The lazily opened stores another Stores can share as they are (see ``Stores.sharing``).
SHAREABLE = ("catalog", "embedder", "vectors", "traces", "jobs", "versions")


class Stores:
    """One home's stores under one set of settings; every service reads and writes through them."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None,
                 writer: InlineWriter | ThreadWriter | None = None, origin: str = "cli") -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        assert settings.home is not None
        self.home: Path = private.make_home(settings.home)  # 0700, also when it exists (ctx/store/private.py)
        # Every SQLite write goes through this: inline for the CLI, one thread for the daemon.
        self.write = writer or InlineWriter()
        self.origin = origin  # who serves this home's requests; the daemon says "daemon" (traces record it)
        self._shared: frozenset[str] = frozenset()  # opened by another Stores, which closes them

    def sharing(self, settings: Settings, names: Iterable[str]) -> Stores:
        """Stores for ``settings`` (another version, a snapshot) with the same env, writer and origin that
        use these stores' ``names`` as they are and open the others from ``settings.home``."""
        other = Stores(settings, self.env, self.write, self.origin)
        shared = frozenset(names)
        assert shared <= set(SHAREABLE), shared
        for name in shared:
            other.__dict__[name] = getattr(self, name)  # fills the cached_property: never opened twice
        other._shared = shared
        return other

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.home / "catalog.db")

    @cached_property
    def embedder(self) -> Any:
        inner = plugins.embedders()[self.settings.embedding.embedder](self.model_dir)  # name checked by settings
        if inner.dimension == 0:
            return None
        from ctx.process.embedding import CachedEmbedder, cache_dir

        embedder = CachedEmbedder(inner, cache_dir(self.home), self.settings.embedding.batch_size)
        private.tighten(self.home)  # diskcache made its files with the process umask
        return embedder

    @property
    def model_dir(self) -> Path:
        configured = self.settings.embedding.model_dir
        return Path(configured) if configured else self.home / "models"

    @cached_property
    def vectors(self) -> Any:
        if self.embedder is None:
            return None
        from ctx.store.vectors import ChromaVectors

        vectors = ChromaVectors(self.home / "vectors", self.embedder.model_id)
        private.tighten(self.home)  # as Chroma made its files, with the process umask
        return vectors

    @cached_property
    def traces(self) -> TraceStore:
        return TraceStore(self.catalog)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.catalog)

    @cached_property
    def versions(self) -> VersionStore:
        return VersionStore(self.catalog)

    def serves_nothing(self, providers: Iterable[str]) -> bool:
        """Whether a request over ``providers`` can only come back empty: no source is configured, nothing was
        ingested (a home keeps serving what an older config ingested) and every provider is retrieval."""
        settings = self.settings
        return (not settings.sources and all(settings.provider(name).kind == "retrieval" for name in providers)
                and self.catalog.chunk_count() == 0)

    def model_id(self) -> str:
        """The embedding model's id, ``none`` without one (recorded with each ingest job)."""
        return self.embedder.model_id if self.embedder else "none"

    def opened(self, name: str) -> bool:
        """Whether store ``name`` is open (here or in the Stores this one shares it with)."""
        return name in self.__dict__

    def close(self) -> None:
        """Close what these stores opened themselves (shared ones are closed by their owner)."""
        if self.opened("embedder") and "embedder" not in self._shared and self.embedder is not None:
            self.embedder.close()
        if self.opened("catalog") and "catalog" not in self._shared:
            self.catalog.close()
