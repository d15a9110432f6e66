"""The output model of every operation: what the daemon documents in OpenAPI and what a client's typed
result is. The core returns plain data in the same shape; a model here describes it field by field, in the
order the core writes them (a client's ``call`` hands back that data unchanged, so a command prints the
same bytes in-process and through the daemon)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Output(BaseModel):
    """Every output model: built on first use (a command validates one output, if any; see ctx.api.inputs)."""

    model_config = ConfigDict(defer_build=True)


class Block(Output):
    source: str
    provider: str
    criticality: str
    document: str
    doc_id: str
    version: int
    chunk_id: str
    title: str
    heading_path: list[str]
    score: float
    lexical_rank: int | None
    vector_rank: int | None
    tokens: int
    truncated: bool
    as_of: str | None
    stale: bool
    age_s: float | None
    text: str


class ProviderOut(Output):
    """How one provider of the recipe did for this request."""

    kind: str
    criticality: str
    status: Literal["ok", "cached", "coalesced", "stale", "fallback", "late", "timeout", "failed", "skipped",
                    "not_applicable"]
    blocks: int
    ms: float
    cache: str
    breaker: Literal["closed", "open", "half_open"]
    cost: float
    age_s: float | None
    error: str | None
    via: str | None


class AssembleOut(Output):
    trace_id: str
    request: dict[str, Any]
    recipe: str
    tokens: int
    budget: int
    encoding: str
    warnings: list[str]
    blocks: list[Block]
    degradations: list[dict[str, Any]]
    providers: dict[str, ProviderOut]
    cache: Literal["miss", "l1", "l2", "coalesced", "off"]
    cost: float = Field(description="USD in all: context tokens at the model's price, query embedding, provider calls")
    costs: dict[str, float] = Field(description="context_usd, embedding_usd, providers_usd, total_usd")
    version: str | None = Field(default=None, description="the configuration version (ctx versions) it used")
    experiment: str | None = Field(default=None, description="the A/B experiment that chose that version")
    variant: str | None = None
    timings: dict[str, float]
    context: str


class HitOut(Output):
    chunk_id: str
    doc_id: str
    source: str
    doc_key: str
    title: str
    version: int
    text: str
    heading_path: list[str]
    tenant: str | None
    start: int
    end: int
    content_hash: str
    token_count: int
    score: float
    lexical_rank: int | None
    vector_rank: int | None
    vector_distance: float | None


class JobOut(Output):
    id: str
    kind: str
    trigger: str = Field(description="who asked: cli, api, schedule, watch, push, or alert (a refresh_sources "
                                     "action of an anomaly alert)")
    status: Literal["queued", "running", "ok", "partial", "failed", "interrupted"]
    sources: list[str]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    pending: int
    progress: dict[str, dict[str, Any]]
    summary: dict[str, Any] | None


class EventsOut(Output):
    job_id: str
    accepted: int = Field(description="events taken; durable from now on")
    quarantined: int = Field(description="of those, events that failed validation: kept in quarantine with "
                                         "their reason, not processed")


class TraceSummary(Output):
    id: str
    created_at: str
    query: str | None
    tokens: int
    budget: int
    model: str
    format: str
    kept: int
    candidates: int
    degradations: int
    total_ms: float
    replay_of: str | None
    recipe: str
    cache: str
    status: Literal["ok", "failed"]
    cost: float
    version: str | None = None
    experiment: str | None = None
    variant: str | None = None


class TraceOut(Output):
    """A whole trace: the request, every candidate and why it was kept or not, timings, the exact context."""

    id: str
    created_at: str
    query: str | None
    tokens: int
    budget: int
    model: str
    format: str
    kept: int
    candidates: list[dict[str, Any]]
    degradations: list[dict[str, Any]]
    total_ms: float
    replay_of: str | None
    recipe: str
    cache: str
    status: Literal["ok", "failed"]
    cost: float
    version: str | None = None
    experiment: str | None = None
    variant: str | None = None
    request: dict[str, Any]
    config_fingerprint: str
    encoding: str
    timings: dict[str, float]
    providers: dict[str, ProviderOut]
    costs: dict[str, float]
    error: str | None
    context: str
    context_sha256: str


class RerunOut(Output):
    original: str
    rerun: str
    identical: bool
    diff: str
    appeared: list[str]
    vanished: list[str]
    changed: list[dict[str, Any]]


class SourceOut(Output):
    """Every field, in the order the core lists them: a response model writes its own fields first and
    extra ones after, so any other order would print different JSON through the daemon than in-process."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    name: str
    kind: str
    freshness: str
    max_staleness_s: float
    criticality: str
    mode: str
    tenant_field: str | None
    documents: int
    chunks: int
    quarantined: int
    last_sync_at: str | None
    last_success_at: str | None
    last_error: str | None
    staleness_s: float | None
    stale: bool


class StatusOut(Output):
    """Every field, in the order the core lists them (see SourceOut); ``daemon`` is null in-process."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    home: str
    config: str | None
    embedder: str
    documents: int
    chunks: int
    versions: int
    quarantined: int
    traces: int
    runs: int
    vectors: int | None
    sources: list[SourceOut]
    plugins: list[str]
    providers: list[dict[str, Any]]
    recipes: dict[str, list[str]]
    assembly: dict[str, Any] | None = Field(description="live breaker states and cache counters of the process "
                                                         "that assembles (null when none has run yet)")
    daemon: dict[str, Any] | None


class DoctorOut(Output):
    ok: bool
    checks: list[dict[str, Any]]
    repaired: dict[str, int]


class ArchiveOut(Output):
    """What one archive pass moved to the cold tier, and what the archive holds after it."""

    moved: int = Field(description="document versions moved out of the catalog by this pass")
    file: str | None = Field(description="the file this pass wrote under HOME/archive/ (none when nothing was due)")
    bytes_before: int = Field(description="the moved versions as uncompressed JSON lines")
    bytes_after: int = Field(description="the compressed file written for them")
    orphans_removed: int = Field(description="files no manifest row named (left by an interrupted pass)")
    archived: int = Field(description="versions in the archive in all")
    files: int = Field(description="archive files in all")


class Health(Output):
    ok: bool
    api_version: str
    pid: int


class ErrorBody(Output):
    code: str = Field(description="stable, machine-readable: bad_request, invalid_request, unauthorized, "
                                  "host_not_allowed, not_found, conflict, payload_too_large, unavailable, internal")
    message: str


class ErrorOut(Output):
    error: ErrorBody


class QuarantinedOut(Output):
    id: int | str
    run_id: str | None
    source: str
    record_id: str | None
    reason: str
    raw: str | None
    created_at: str
    last_seen_at: str | None
    seen: int


# List results: a list of the model (validated through a TypeAdapter, no class of its own to build).
Hits = list[HitOut]
Jobs = list[JobOut]
TraceSummaries = list[TraceSummary]
Sources = list[SourceOut]
Quarantined = list[QuarantinedOut]
