"""Hybrid retrieval: FTS5 BM25 and vector similarity fused with reciprocal rank fusion.

Tenant isolation is enforced in both legs of the query, not after fusion: a request for tenant
A sees A's data and shared (untenanted) data; a request with no tenant sees shared data only.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from wcmatch import glob as wcglob

from ctx.models import Hit
from ctx.process.embedding import CachedEmbedder
from ctx.process.stopwords import STOPWORDS
from ctx.store.catalog import Catalog
from ctx.store.vectors import SHARED_TENANT, VectorStore

_TERM = re.compile(r"\w+", re.UNICODE)
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


def fts_query(text: str) -> str:
    """Each word quoted and OR-ed: user text can never inject FTS5 syntax.

    Stop words are left out unless the query has nothing else: "how do I rotate a key" matching every
    chunk that says "how" or "a" costs a BM25 score per chunk and adds nothing to the ranking.
    """
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(text)))
    content = [t for t in terms if t not in STOPWORDS] or terms
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in content)


class Retriever:
    def __init__(self, catalog: Catalog, vectors: VectorStore | None, embedder: CachedEmbedder | None,
                 candidates: int = 50, rrf_k: int = 60) -> None:
        self.catalog = catalog
        self.vectors = vectors
        self.embedder = embedder
        self.candidates = candidates
        self.rrf_k = rrf_k

    def search(self, query: str, filters: Filters, limit: int) -> SearchResult:
        timings: dict[str, float] = {}
        # With a path filter some candidates will be filtered out after fetching: fetch more.
        fetch = self.candidates * (4 if filters.path else 1)
        t0 = time.perf_counter()
        lexical = self._lexical(query, filters, fetch)
        t1 = time.perf_counter()
        vector = self._vector(query, filters, fetch)
        t2 = time.perf_counter()
        timings["lexical_ms"] = (t1 - t0) * 1000
        timings["vector_ms"] = (t2 - t1) * 1000
        scores: dict[str, float] = {}
        for rank, (cid, _) in enumerate(lexical, 1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (self.rrf_k + rank)
        for rank, (cid, _) in enumerate(vector, 1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (self.rrf_k + rank)
        lex_rank = {cid: r for r, (cid, _) in enumerate(lexical, 1)}
        vec = {cid: (r, d) for r, (cid, d) in enumerate(vector, 1)}
        ordered = sorted(scores, key=lambda c: (-scores[c], c))
        hits = []
        for hit in self._hydrate(ordered):
            # Re-checked on the SQLite row: the truth decides, whatever the vector index holds.
            if not _allowed(hit, filters):
                continue
            hit.score = round(scores[hit.chunk_id], 6)
            hit.lexical_rank = lex_rank.get(hit.chunk_id)
            if hit.chunk_id in vec:
                hit.vector_rank, dist = vec[hit.chunk_id]
                hit.vector_distance = round(float(dist), 6)
            hits.append(hit)
            if len(hits) >= limit:
                break
        timings["fuse_ms"] = (time.perf_counter() - t2) * 1000
        return SearchResult(hits, timings)

    def _lexical(self, query: str, filters: Filters, n: int) -> list[tuple[str, float]]:
        match = fts_query(query)
        if not match:
            return []
        if filters.sources or self.catalog.has_tenants():
            where, params = _sql_filters(filters)
            sql = (
                "select c.id, bm25(chunks_fts) as rank from chunks_fts join chunks c on c.rowid = chunks_fts.rowid "
                f"where chunks_fts match ? {where} order by rank limit ?"
            )
            return [(r[0], r[1]) for r in self.catalog.db.execute(sql, [match, *params, n])]
        # Nothing to filter on: rank inside the FTS index first and join only the top n.
        sql = (
            "select c.id, f.rank from (select rowid, rank from chunks_fts where chunks_fts match ? "
            "order by rank limit ?) f join chunks c on c.rowid = f.rowid order by f.rank"
        )
        return [(r[0], r[1]) for r in self.catalog.db.execute(sql, [match, n])]

    def _vector(self, query: str, filters: Filters, n: int) -> list[tuple[str, float]]:
        if self.vectors is None or self.embedder is None or not query.strip():
            return []
        conditions: list[dict[str, Any]] = []
        # A where clause costs Chroma a scan of its metadata, so it is sent only when it can exclude something.
        if self.catalog.has_tenants():
            tenants = [SHARED_TENANT, filters.tenant] if filters.tenant else [SHARED_TENANT]
            conditions.append({"tenant": {"$in": tenants}})
        if filters.sources:
            conditions.append({"source": {"$in": list(filters.sources)}})
        where = None if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
        vector = self.embedder.embed_query(query)
        return self.vectors.query(vector, n, where)

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


def _sql_filters(filters: Filters) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if filters.tenant:
        clauses.append("(c.tenant is null or c.tenant = ?)")
        params.append(filters.tenant)
    else:
        clauses.append("c.tenant is null")
    if filters.sources:
        clauses.append("c.source in (%s)" % ",".join("?" * len(filters.sources)))
        params.extend(filters.sources)
    return "".join(" and " + c for c in clauses), params


def _allowed(hit: Hit, filters: Filters) -> bool:
    if hit.tenant is not None and hit.tenant != filters.tenant:
        return False
    if filters.sources and hit.source not in filters.sources:
        return False
    return not filters.path or wcglob.globmatch(hit.doc_key, filters.path, flags=GLOB_FLAGS)
