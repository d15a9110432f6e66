"""The ``retrieval`` provider: hybrid search (BM25 + vectors) over ingested chunks.

It exists without configuration (the default recipe is this provider alone); more can be
configured, e.g. one per group of sources. Its blocks keep their source's criticality.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from ctx.assemble.provider import BaseProvider, ContextRequest, Deadline, Services
from ctx.hookspecs import hookimpl
from ctx.models import Block, Hit
from ctx.retrieve.hybrid import Filters
from ctx.settings import ProviderSettings
from ctx.store.catalog import now_iso


class RetrievalSettings(ProviderSettings):
    kind: Literal["retrieval"] = "retrieval"
    timeout: float = 5.0  # local work: the request's deadline is what bounds it
    sources: list[str] | None = None  # default: the request's sources, else every source
    top_k: int | None = None  # default: the request's


class RetrievalProvider(BaseProvider):
    settings: RetrievalSettings

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        return (request.query, request.tenant, self._sources(request), request.path, self._top_k(request))

    def reads(self) -> list[str] | None:
        return self.settings.sources  # None: every source

    def prepare(self) -> None:
        # Opening the stores and loading the model take seconds once: never inside a request's deadline.
        retriever = self.services.retriever()
        if retriever.embedder is not None:
            retriever.embedder.warm_up()

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]:
        retriever = self.services.retriever()
        filters = Filters(list(self._sources(request) or []) or None, request.tenant, request.path)
        found = await self.services.run_sync(retriever.search, request.query, filters, self._top_k(request))
        stamp = now_iso()
        crit = self.services.source_criticality
        return [Block(h, crit.get(h.source, "optional"), h.text, provider=self.name, as_of=stamp) for h in found.hits]

    def ranked(self, request: ContextRequest, depth: int) -> list[Hit]:
        """The search ``fetch`` runs, deeper: each leg fetches at least ``2 * depth`` candidates and every
        fused chunk is returned, so ``ctx eval`` can rank ``depth`` documents (a document is often several
        chunks). Only for scoring: a context is never built from it, and the configured ranking is what
        eval scores at the top (more candidates can reorder fusion's top)."""
        retriever = copy.copy(self.services.retriever())  # shared stores, its own candidate count
        retriever.candidates = max(retriever.candidates, 2 * depth)
        filters = Filters(list(self._sources(request) or []) or None, request.tenant, request.path)
        return retriever.search(request.query, filters, 2 * retriever.candidates).hits

    def _sources(self, request: ContextRequest) -> tuple[str, ...] | None:
        mine = self.settings.sources
        if mine and request.sources:
            return tuple(s for s in request.sources if s in mine)
        return tuple(mine) if mine else request.sources

    def _top_k(self, request: ContextRequest) -> int:
        return self.settings.top_k or request.top_k


class RetrievalKind:
    name = "retrieval"
    settings_model = RetrievalSettings

    def create(self, name: str, settings: ProviderSettings, services: Services) -> RetrievalProvider:
        return RetrievalProvider(name, settings, services)


@hookimpl
def register_providers(register: Any) -> None:
    register(RetrievalKind())
