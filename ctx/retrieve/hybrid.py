"""Hybrid retrieval: FTS5 BM25 and vector similarity, fused (ctx.retrieve.fusion).

Tenant isolation: a request for tenant A sees A's data and shared (untenanted) data; a request with
no tenant sees shared data only. Both legs filter by tenant whenever tenant data exists, and every hit
is checked again on its SQLite row before it is returned.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from wcmatch import glob as wcglob

from ctx.models import Hit
from ctx.process.embedding import CachedEmbedder
from ctx.retrieve.fusion import Fusion, fuse
from ctx.retrieve.lexical import Lexical
from ctx.store.catalog import Catalog
from ctx.store.vectors import SHARED_TENANT, VectorStore

GLOB_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE


@dataclass(slots=True)
class Filters:
    sources: list[str] | None = None
    tenant: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "tenant": self.tenant, "path": self.path}


@dataclass
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(self, catalog: Catalog, vectors: VectorStore | None, embedder: CachedEmbedder | None,
                 candidates: int = 50, fusion: Fusion | None = None) -> None:
        self.catalog = catalog
        self.lexical = Lexical(catalog)
        self.vectors = vectors
        self.embedder = embedder
        self.candidates = candidates
        self.fusion = fusion or Fusion()
        self._executor: ThreadPoolExecutor | None = None

    def search(self, query: str, filters: Filters, limit: int) -> SearchResult:
        timings: dict[str, float] = {}
        # With a path filter some candidates will be filtered out after fetching: fetch more.
        fetch = self.candidates * (4 if filters.path else 1)
        t0 = time.perf_counter()
        tenants = self.catalog.has_tenants()
        # The two legs run side by side: embedding the query (torch) and BM25 (SQLite) both release the
        # GIL, so the request costs the slower leg, not the sum. SQLite stays on this thread.
        pending = None
        if self.vectors is not None and self.embedder is not None and query.strip():
            pending = self._pool().submit(self._vector, query, filters, fetch, tenants)
        lexical = self.lexical.search(query, filters, fetch, tenants)
        timings["lexical_ms"] = (time.perf_counter() - t0) * 1000
        vector, timings["vector_ms"] = pending.result() if pending is not None else ([], 0.0)
        t2 = time.perf_counter()
        lex_rank = {cid: r for r, (cid, _) in enumerate(lexical, 1)}
        vec = {cid: (r, d) for r, (cid, d) in enumerate(vector, 1)}
        # Every candidate is read once from SQLite and re-checked on its row (the truth decides, whatever the
        # vector index holds) before fusion, so what is filtered out never sets a leg's normalisation.
        rows = {hit.chunk_id: hit for hit in self._hydrate(list(dict.fromkeys([*lex_rank, *vec])))
                if _allowed(hit, filters)}
        fused = fuse([(cid, -rank) for cid, rank in lexical if cid in rows],  # FTS5's bm25(): lower is better
                     [(cid, 1.0 - dist) for cid, dist in vector if cid in rows],  # cosine distance -> similarity
                     self.fusion, {cid: hit.doc_id for cid, hit in rows.items()})
        hits = []
        for cid, score in fused[:limit]:
            hit = rows[cid]
            hit.score = round(score, 6)
            hit.lexical_rank = lex_rank.get(cid)
            if cid in vec:
                hit.vector_rank, dist = vec[cid]
                hit.vector_distance = round(float(dist), 6)
            hits.append(hit)
        timings["fuse_ms"] = (time.perf_counter() - t2) * 1000
        return SearchResult(hits, timings)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctx-vector")
        return self._executor

    def _vector(self, query: str, filters: Filters, n: int, tenants: bool) -> tuple[list[tuple[str, float]], float]:
        started = time.perf_counter()
        assert self.vectors is not None and self.embedder is not None
        conditions: list[dict[str, Any]] = []
        # A where clause costs Chroma a scan of its metadata, so it is sent only when it can exclude something.
        if tenants:
            allowed = [SHARED_TENANT, filters.tenant] if filters.tenant else [SHARED_TENANT]
            conditions.append({"tenant": {"$in": allowed}})
        if filters.sources:
            conditions.append({"source": {"$in": list(filters.sources)}})
        where = None if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
        found = self.vectors.query(self.embedder.embed_query(query), n, where)
        return found, (time.perf_counter() - started) * 1000

    def _hydrate(self, chunk_ids: list[str]) -> list[Hit]:
        if not chunk_ids:
            return []
        rows = self.catalog.db.execute(
            "select c.id, c.doc_id, c.source, d.key, d.title, c.version, c.text, c.heading_path, c.tenant, "
            "c.start, c.end, c.content_hash, c.token_count from chunks c join documents d on d.id = c.doc_id "
            "where c.id in (%s)" % ",".join("?" * len(chunk_ids)), chunk_ids,
        ).fetchall()
        by_id = {r[0]: r for r in rows}
        return [
            Hit(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "[]"), r[8], r[9], r[10], r[11], r[12])
            for r in (by_id.get(c) for c in chunk_ids)
            if r is not None
        ]


def _allowed(hit: Hit, filters: Filters) -> bool:
    if hit.tenant is not None and hit.tenant != filters.tenant:
        return False
    if filters.sources and hit.source not in filters.sources:
        return False
    return not filters.path or wcglob.globmatch(hit.doc_key, filters.path, flags=GLOB_FLAGS)
