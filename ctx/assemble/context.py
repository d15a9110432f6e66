"""The request to assemble, and what comes back: blocks, degradations, provider outcomes and the exact text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ctx.assemble.provider import ContextRequest
from ctx.models import Block, Degradation
from ctx.retrieve.hybrid import Filters


@dataclass(frozen=True)
class AssembleRequest:
    query: str
    budget: int
    model: str
    format: str
    filters: Filters = field(default_factory=Filters)
    top_k: int = 20
    recipe: str = "default"
    user: str | None = None
    session: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    deadline: float | None = None  # seconds; None: the recipe's, else [assembly] deadline
    as_of: str | None = None  # a UTC stamp: assemble against the data as it was then (--as-of)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "query": self.query, "budget": self.budget, "model": self.model, "format": self.format,
            "filters": self.filters.to_dict(), "top_k": self.top_k, "recipe": self.recipe, "user": self.user,
            "session": self.session, "params": dict(self.params), "deadline": self.deadline,
        }
        if self.as_of is not None:  # only when set: older traces' requests and cache keys stay byte-identical
            data["as_of"] = self.as_of
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssembleRequest:
        return cls(data["query"], data["budget"], data["model"], data["format"], Filters(**data.get("filters", {})),
                   data.get("top_k", 20), data.get("recipe", "default"), data.get("user"), data.get("session"),
                   tuple(sorted((data.get("params") or {}).items())), data.get("deadline"), data.get("as_of"))

    def for_providers(self) -> ContextRequest:
        f = self.filters
        return ContextRequest(self.query, self.user, self.session, f.tenant, self.params,
                              tuple(f.sources) if f.sources else None, f.path, self.top_k)

    def cache_part(self) -> dict[str, Any]:
        """What of the request decides the result when every provider answers (not the deadline)."""
        data = self.to_dict()
        data.pop("deadline")
        return data


@dataclass
class Assembly:
    """The cacheable result of assembling one request (everything but the trace id and timings)."""

    rendered: str
    blocks: list[Block]
    degradations: list[Degradation]
    tokens: int
    encoding: str
    warnings: list[str]
    providers: dict[str, dict[str, Any]]
    candidates: list[dict[str, Any]]
    timings: dict[str, float]
    cost: float  # USD of the provider calls made
    complete: bool  # every provider answered fresh: only then is it cached
    embedded_tokens: int = 0  # query tokens embedded by a retrieval provider that really ran


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
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: str = "off"
    cost: float = 0.0
    costs: dict[str, float] = field(default_factory=dict)
    version: str | None = None  # the configuration version it was assembled with (set by the workspace)
    experiment: str | None = None
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "request": self.request.to_dict(), "recipe": self.request.recipe,
            "tokens": self.tokens, "budget": self.request.budget, "encoding": self.encoding,
            "warnings": self.warnings,
            "blocks": [
                {"source": b.hit.source, "provider": b.provider, "criticality": b.criticality,
                 "document": b.hit.doc_key, "doc_id": b.hit.doc_id, "version": b.hit.version,
                 "chunk_id": b.hit.chunk_id,
                 "title": b.hit.title, "heading_path": b.hit.heading_path, "score": b.hit.score,
                 "lexical_rank": b.hit.lexical_rank, "vector_rank": b.hit.vector_rank,
                 "tokens": b.tokens, "truncated": b.truncated, "as_of": b.as_of, "stale": b.stale,
                 "age_s": b.age_s, "text": b.text}
                for b in self.blocks
            ],
            "degradations": [d.to_dict() for d in self.degradations],
            "providers": self.providers, "cache": self.cache, "cost": self.cost, "costs": self.costs,
            "version": self.version, "experiment": self.experiment, "variant": self.variant,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "context": self.rendered,
        }
