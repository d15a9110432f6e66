"""Traces: every assembled context is stored with its request, candidates, timings and exact bytes."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from uuid6 import uuid7

from ctx.errors import NotFound, UserError
from ctx.observe.cost import usage
from ctx.store.catalog import Catalog, now_iso

# Degradations that mean a block was missing from the context the request got.
MISSING = ("dropped", "late", "timeout", "failed", "skipped", "not_applicable")


def new_trace_id() -> str:
    """UUIDv7: time-ordered, so ids sort by creation and list newest-first cheaply."""
    return str(uuid7())


@dataclass
class TraceRecord:
    id: str
    created_at: str
    request: dict[str, Any]
    config_fingerprint: str
    candidates: list[dict[str, Any]]
    timings: dict[str, float]
    tokens: int
    budget: int
    model: str
    format: str
    encoding: str
    rendered: bytes
    degradations: list[dict[str, Any]]
    replay_of: str | None = None
    recipe: str = "default"
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: str = "off"  # how the context was obtained: miss | l1 | l2 | coalesced | off
    cost: float = 0.0  # USD in all: ``costs["total_usd"]``
    costs: dict[str, float] = field(default_factory=dict)  # context_usd, embedding_usd, providers_usd, total_usd
    status: str = "ok"  # ok | failed (a critical provider gave nothing: no context was returned)
    error: str | None = None
    version: str | None = None  # the configuration version (ctx.versions) the context was assembled with
    experiment: str | None = None  # the A/B experiment that chose the version, and its variant
    variant: str | None = None
    origin: str = "cli"  # who served it: daemon | cli

    @property
    def tenant(self) -> str | None:
        return (self.request.get("filters") or {}).get("tenant")

    @property
    def complete(self) -> bool:
        """Every critical block was in the context the request got (the availability SLO's good event).

        A critical block that was truncated, deduplicated, or served stale or by a fallback was there.
        """
        return self.status == "ok" and not any(
            d.get("criticality") == "critical" and d.get("kind") in MISSING for d in self.degradations)

    @property
    def relevance(self) -> float | None:
        """Mean cosine similarity between the query and the kept blocks the vector leg found.

        The relevance SLO's signal: rank-fused scores say how blocks compare with each other, not how
        close any of them is to the query. None when no kept block has a vector distance (a lexical-only
        home, or a context of provider blocks only): such requests do not count towards relevance.
        """
        similarities = [1.0 - float(c["vector_distance"]) for c in self.candidates
                        if c.get("kept") and c.get("vector_distance") is not None]
        return round(sum(similarities) / len(similarities), 6) if similarities else None

    def summary(self) -> dict[str, Any]:
        kept = sum(1 for c in self.candidates if c.get("kept"))
        return {
            "id": self.id, "created_at": self.created_at, "query": self.request.get("query"),
            "tokens": self.tokens, "budget": self.budget, "model": self.model, "format": self.format,
            "kept": kept, "candidates": len(self.candidates), "degradations": len(self.degradations),
            "total_ms": round(self.timings.get("total_ms", 0.0), 2), "replay_of": self.replay_of,
            "recipe": self.recipe, "cache": self.cache, "status": self.status, "cost": self.cost,
            "version": self.version, "experiment": self.experiment, "variant": self.variant,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(), "request": self.request, "config_fingerprint": self.config_fingerprint,
            "encoding": self.encoding, "timings": self.timings, "candidates": self.candidates,
            "degradations": self.degradations, "providers": self.providers, "costs": self.costs,
            "error": self.error, "context": self.rendered.decode("utf-8"),
            "context_sha256": hashlib.sha256(self.rendered).hexdigest(),
        }


class TraceStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @property
    def db(self) -> Any:
        return self.catalog.db  # this thread's connection

    def write(self, trace: TraceRecord) -> None:
        self.db.table("traces").insert(
            {
                "id": trace.id, "created_at": trace.created_at, "query": trace.request.get("query", ""),
                "request": json.dumps(trace.request, sort_keys=True),
                "config_fingerprint": trace.config_fingerprint,
                "candidates": zlib.compress(json.dumps(trace.candidates).encode()),
                "timings": json.dumps(trace.timings), "tokens": trace.tokens, "budget": trace.budget,
                "model": trace.model, "format": trace.format, "encoding": trace.encoding,
                "rendered": zlib.compress(trace.rendered, 6),
                "rendered_sha256": hashlib.sha256(trace.rendered).hexdigest(),
                "degradations": json.dumps(trace.degradations), "replay_of": trace.replay_of,
                "recipe": trace.recipe, "providers": json.dumps(trace.providers), "cache": trace.cache,
                "cost": trace.cost, "costs": json.dumps(trace.costs), "status": trace.status,
                "tenant": trace.tenant, "error": trace.error, "total_ms": trace.timings.get("total_ms", 0.0),
                "complete": int(trace.complete), "relevance": trace.relevance,
                "ledger": json.dumps(usage(trace.candidates, trace.degradations)),
                "version": trace.version, "experiment": trace.experiment, "variant": trace.variant,
                "origin": trace.origin,
            }
        )

    def get(self, trace_id: str) -> TraceRecord:
        trace_id = trace_id.strip()
        rows = list(self.db.query("select * from traces where id = ?", [trace_id]))
        if not rows and len(trace_id) >= 8:  # a unique prefix is enough, as with git
            # The prefix is text, not a pattern: `%` and `_` in it must not match any trace.
            prefix = trace_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = list(self.db.query("select * from traces where id like ? escape '\\' limit 2", [prefix + "%"]))
            if len(rows) > 1:
                raise UserError(f"trace id prefix {trace_id!r} is ambiguous")
        if not rows:
            raise NotFound(f"no trace with id {trace_id!r}")
        return _from_row(rows[0])

    def recent(self, limit: int = 20) -> list[TraceRecord]:
        return [_from_row(r) for r in self.db.query("select * from traces order by id desc limit ?", [limit])]


def _from_row(row: dict[str, Any]) -> TraceRecord:
    rendered = zlib.decompress(row["rendered"])
    if hashlib.sha256(rendered).hexdigest() != row["rendered_sha256"]:
        raise NotFound(f"trace {row['id']} is corrupt: stored context does not match its checksum")
    return TraceRecord(
        id=row["id"], created_at=row["created_at"], request=json.loads(row["request"]),
        config_fingerprint=row["config_fingerprint"],
        candidates=json.loads(zlib.decompress(row["candidates"])), timings=json.loads(row["timings"]),
        tokens=row["tokens"], budget=row["budget"], model=row["model"], format=row["format"],
        encoding=row["encoding"], rendered=rendered, degradations=json.loads(row["degradations"]),
        replay_of=row["replay_of"], recipe=row.get("recipe") or "default",
        providers=json.loads(row.get("providers") or "{}"), cache=row.get("cache") or "off",
        cost=row.get("cost") or 0.0, costs=json.loads(row.get("costs") or "{}"),
        status=row.get("status") or "ok", error=row.get("error"), version=row.get("version"),
        experiment=row.get("experiment"), variant=row.get("variant"), origin=row.get("origin") or "cli",
    )


def created_now() -> str:
    return now_iso()
