"""Request and response models of the daemon's API, shared by the daemon (validation, OpenAPI) and the client.

Responses carry the same dictionaries the core returns in-process, so a command prints the same
output whether it ran here or in the daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

API_VERSION = "1"
VERSION_HEADER = "X-Ctx-Api-Version"

# The core's own rules, stated in the schema (the core checks them, with its own messages): a query with
# something in it, a budget of 0 or more.
Text = Field(max_length=20_000, description="the request; an empty or blank one is refused by the core (400)",
             json_schema_extra={"pattern": r"\S"})
Name = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class Request(BaseModel):
    """Unknown fields are refused, as in ctx.toml: a misspelt option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


# A switch is true or false, as the schema says: ``"rerun": "yes"`` or ``"repair": 0`` is refused, not guessed at.
Switch = Field(default=False, strict=True)


class FiltersIn(Request):
    sources: list[str] | None = Field(default=None, max_length=100, description="only these sources")
    tenant: str | None = Field(default=None, min_length=1, max_length=200,
                               description="this tenant's data plus shared data; without it, shared data only")
    path: str | None = Field(default=None, min_length=1, max_length=500, description="a glob on document keys")


class AssembleIn(FiltersIn):
    query: str = Text
    budget: int | None = Field(default=None, le=10_000_000, json_schema_extra={"minimum": 0},
                               description="tokens, 0 or more (default from ctx.toml); a negative one is refused by "
                                           "the core (400)")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    format: str | None = Field(default=None, min_length=1, max_length=100)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    recipe: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                               description="a [recipes.NAME] of ctx.toml (default: [assembly] recipe)")
    user: str | None = Field(default=None, min_length=1, max_length=500, description="for session and record "
                             "providers")
    session: str | None = Field(default=None, min_length=1, max_length=500)
    params: dict[str, str] = Field(default_factory=dict, max_length=50,
                                   description="named values for record queries and http URLs")
    deadline_ms: float | None = Field(default=None, gt=0, le=600_000,
                                      description="for every provider together (default: the recipe's)")
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                                description="a stored version of the recipe: id, id prefix or label (default: "
                                            "the experiment's variant, else the settings in force)")
    as_of: str | None = Field(default=None, min_length=1, max_length=64,
                              description="assemble against the data as it was then: an ISO-8601 time or an age "
                                          "(2h, 3d); a future or unreadable time is refused (400)")


class SearchIn(FiltersIn):
    query: str = Text
    limit: int = Field(default=10, ge=1, le=1000)


class IngestIn(Request):
    sources: list[str] | None = Field(default=None, max_length=100, description="default: every source")
    trigger: Literal["api", "cli"] = Field(default="api", description="who asked, as `ctx jobs` shows it")


class EventsIn(Request):
    source: str = Name
    events: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class ReplayIn(Request):
    trace_id: str = Field(max_length=200, description="a trace id, or a unique prefix of 8+ characters")
    rerun: bool = Switch
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                                description="with rerun: re-assemble with this version (id, id prefix or label)")


class DoctorIn(Request):
    repair: bool = Switch


# A version is named by its id, an id prefix or a label; a label starts with a letter (64 characters at most).
VersionRef = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                   description="a version id, an id prefix (4+ hex digits) or a label")
LabelName = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
RecipeName = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                   description="a [recipes.NAME] of ctx.toml")


class VersionRefIn(Request):
    """A version reference as the CLI and the routes check it, before anything is looked up."""

    ref: str = VersionRef
    recipe: str | None = RecipeName


class VersionLabelIn(Request):
    ref: str = VersionRef
    label: str = LabelName
    recipe: str | None = RecipeName


class VersionRollbackIn(Request):
    label: str = LabelName
    recipe: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                               description="default: [assembly] recipe")


DocName = Annotated[str, Field(min_length=1, max_length=1000)]
Grade = Annotated[float, Field(allow_inf_nan=False)]


class EvalQueryIn(Request):
    id: str = Field(min_length=1, max_length=500)
    query: str = Text
    relevant: dict[DocName, Grade] = Field(min_length=1, max_length=10_000,
                                           description="document id, key or source:key → grade (above 0: "
                                                       "relevant); none above 0 is refused by the core (400)")


class EvalIn(Request):
    """Labeled queries sent inline (the daemon reads no client file): one version, or two (``compare``)."""

    queries: list[EvalQueryIn] = Field(min_length=1, max_length=10_000)
    name: str = Field(default="", max_length=1000, description="where the queries came from, for the record")
    version: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                                description="default: the version in force")
    compare: list[Annotated[str, VersionRef]] | None = Field(default=None, min_length=2, max_length=2,
                                                             description="two versions, side by side")
    k: int = Field(default=10, ge=1, le=1000, description="the cutoff of recall@k")
    recipe: str | None = RecipeName


class VersionOut(BaseModel):
    id: str
    recipe: str
    created_at: str
    index: str = Field(description="the fingerprint of its chunking and embedding")
    index_state: Literal["live", "built", "not built"] = Field(
        description="live: runs on the home's index; built / not built: its side index (ctx versions build)")
    labels: list[str]
    current: bool = Field(description="the version in force for its recipe")


class VersionDetailOut(VersionOut):
    config: dict[str, Any]
    index_home: str | None = None


class VersionSide(BaseModel):
    id: str
    recipe: str
    index: str
    index_state: Literal["live", "built", "not built"]


class VersionDiffOut(BaseModel):
    a: VersionSide
    b: VersionSide
    changes: list[dict[str, Any]] = Field(description="each differing setting: its dotted path, from, to")
    index_differs: bool
    needs_side_index: list[str]


class VersionLabelOut(BaseModel):
    recipe: str
    label: str
    version: str
    previous: str | None


class VersionRollbackOut(BaseModel):
    recipe: str
    label: str
    from_: str = Field(alias="from")
    to: str


class Block(BaseModel):
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


class ProviderOut(BaseModel):
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


class AssembleOut(BaseModel):
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


class HitOut(BaseModel):
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


class JobOut(BaseModel):
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


class EventsOut(BaseModel):
    job_id: str
    accepted: int = Field(description="events taken; durable from now on")
    quarantined: int = Field(description="of those, events that failed validation: kept in quarantine with "
                                         "their reason, not processed")


class TraceSummary(BaseModel):
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


class TraceOut(BaseModel):
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


class RerunOut(BaseModel):
    original: str
    rerun: str
    identical: bool
    diff: str
    appeared: list[str]
    vanished: list[str]
    changed: list[dict[str, Any]]


class SourceOut(BaseModel):
    """Every field, in the order the core lists them: a response model writes its own fields first and
    extra ones after, so any other order would print different JSON through the daemon than in-process."""

    model_config = ConfigDict(extra="allow")
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


class StatusOut(BaseModel):
    """Every field, in the order the core lists them (see SourceOut); ``daemon`` is null in-process."""

    model_config = ConfigDict(extra="allow")
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


class DoctorOut(BaseModel):
    ok: bool
    checks: list[dict[str, Any]]
    repaired: dict[str, int]


class ArchiveOut(BaseModel):
    """What one archive pass moved to the cold tier, and what the archive holds after it."""

    moved: int = Field(description="document versions moved out of the catalog by this pass")
    file: str | None = Field(description="the file this pass wrote under HOME/archive/ (none when nothing was due)")
    bytes_before: int = Field(description="the moved versions as uncompressed JSON lines")
    bytes_after: int = Field(description="the compressed file written for them")
    orphans_removed: int = Field(description="files no manifest row named (left by an interrupted pass)")
    archived: int = Field(description="versions in the archive in all")
    files: int = Field(description="archive files in all")


class Health(BaseModel):
    ok: bool
    api_version: str
    pid: int


def describe(exc: ValidationError | Sequence[Any]) -> str:
    """A validation error (pydantic's, or FastAPI's list of them) as one line naming the field,
    the same from the CLI and from the API."""
    errors = exc.errors() if isinstance(exc, ValidationError) else list(exc)
    if not errors:
        return "invalid request"
    err = errors[0]
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return f"invalid request: the body is not valid JSON{f' ({detail})' if detail else ''}"
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"invalid request: {where}: {message}"


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable: bad_request, invalid_request, unauthorized, "
                                  "host_not_allowed, not_found, conflict, payload_too_large, unavailable, internal")
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class AlertNotificationOut(BaseModel):
    """One step's work for an alert: an action, a webhook message, or a note (a re-fire in the cooldown)."""

    step: int
    event: Literal["action", "firing", "escalation", "resolved", "suppressed"]
    kind: Literal["action", "webhook", "note"]
    target: str = Field(description="the action, or the webhook's name in ctx.toml (never its URL)")
    status: Literal["pending", "sending", "failed", "sent", "done", "gave_up", "cancelled", "skipped"]
    attempts: int
    error: str | None
    detail: str | None
    at: str


class AlertOut(BaseModel):
    """One incident of an anomaly rule and key, firing or resolved."""

    id: str
    rule: str
    severity: Literal["warning", "error", "critical"]
    metric: str
    window: str = Field(description="the rule's bucket width: 1m spikes, 5m trends, 1h capacity")
    key: str = Field(description="what it is about: a source name, or \"\" for the whole home")
    state: Literal["firing", "resolved"]
    message: str
    value: float | None
    baseline: float | None
    z: float | None = Field(description="robust z of the newest deviating bucket (null: an absolute bound)")
    count: int = Field(description="deviating buckets seen")
    step: int = Field(ge=0, le=3, description="escalation step reached: 1 action, 2 webhook, 3 second webhook")
    first_at: str
    last_at: str
    resolved_at: str | None
    suppressed_until: str | None = Field(description="a re-fire inside the cooldown: no steps before this")
    sources: list[str]
    notifications: list[AlertNotificationOut]


class AlertRef(BaseModel):
    id: str
    rule: str
    key: str
    severity: Literal["warning", "error", "critical"]


class AlertStepOut(AlertRef):
    step: int


class AlertDeliveryOut(BaseModel):
    id: int
    alert_id: str
    step: int
    event: str
    kind: str
    target: str
    status: str
    error: str | None


class AlertCheckOut(BaseModel):
    """What one evaluation of the alert rules changed."""

    evaluated_at: str
    rules: int
    opened: list[AlertRef]
    updated: list[AlertRef]
    resolved: list[AlertRef]
    suppressed: list[AlertRef] = Field(description="opened inside the cooldown of an earlier incident")
    steps: list[AlertStepOut]
    deliveries: list[AlertDeliveryOut]
    active: int
