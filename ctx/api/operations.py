"""Every operation of ctx, declared once: its name, input and output models, HTTP method and path, and the
handler that does it in-process. The daemon's routes, both clients and the OpenAPI schema derive from this
table: adding an operation means a row here, its handler, and its CLI command.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from ctx.api import handlers as h
from ctx.api.inputs import (
    AbReportIn,
    AlertsIn,
    AssembleIn,
    AuditIn,
    CostIn,
    DoctorIn,
    EvalIn,
    EventsIn,
    IngestIn,
    JobIn,
    JobsIn,
    QuarantineIn,
    ReplayIn,
    SearchIn,
    TraceIn,
    TracesIn,
    VersionDiffIn,
    VersionLabelIn,
    VersionRefIn,
    VersionRollbackIn,
    VersionsIn,
)
from ctx.api.outputs import (
    ArchiveOut,
    AssembleOut,
    DoctorOut,
    EventsOut,
    Hits,
    JobOut,
    Jobs,
    Quarantined,
    RerunOut,
    Sources,
    StatusOut,
    TraceOut,
    TraceSummaries,
)
from ctx.api.reports import (
    AbReportOut,
    AlertCheckOut,
    Alerts,
    AuditOut,
    CostOut,
    EvalOut,
    Experiments,
    SloOut,
    VersionDetailOut,
    VersionDiffOut,
    VersionLabelOut,
    VersionRollbackOut,
    Versions,
)

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out")
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Operation(Generic[In, Out]):
    """One operation. ``input`` is None for an operation without parameters; fields of ``input`` named in
    ``path`` are path parameters, the rest are the query string of a GET or the JSON body of a POST."""

    name: str
    method: Literal["GET", "POST"]
    path: str
    input: type[In] | None
    output: type[Out]
    handler: Callable[..., Any]
    summary: str
    tag: str
    status: int = 200
    timeout: float | None = None  # seconds, when one call may take far longer than a lookup
    text: bool = False  # the output is text (Prometheus metrics), not JSON

    @cached_property
    def path_params(self) -> tuple[str, ...]:
        return tuple(_PATH_PARAM.findall(self.path))

    @cached_property
    def _adapter(self) -> TypeAdapter[Out]:
        return TypeAdapter(self.output)

    def parse(self, data: Any) -> Out:
        """The typed output, validated from the plain data a client got."""
        return self._adapter.validate_python(data)

    def target(self, body: BaseModel | None) -> tuple[str, dict[str, Any], BaseModel | None]:
        """(path with its parameters filled in, query parameters, JSON body) of one call."""
        if body is None:
            return self.path, {}, None
        values = dict(body)
        path = _PATH_PARAM.sub(lambda m: quote(str(values[m.group(1)]), safe=""), self.path)
        if self.method == "POST":
            return path, {}, body
        # Only what the caller set goes in the query string: the daemon applies the model's own defaults.
        query = {k: v for k, v in values.items()
                 if k in body.model_fields_set and k not in self.path_params and v is not None}
        return path, query, None


# context
ASSEMBLE = Operation(
    "assemble", "POST", "/v1/assemble", AssembleIn, AssembleOut, h.assemble,
    "Assemble a token-budgeted context window; it is stored as a replayable trace.", "context")

SEARCH = Operation(
    "search", "POST", "/v1/search", SearchIn, Hits, h.search,
    "Hybrid search (BM25 + vectors, fused by reciprocal rank).", "context")

# ingest
INGEST = Operation(
    "ingest", "POST", "/v1/ingest", IngestIn, JobOut, h.ingest,
    "Queue an ingest job; follow it at /v1/jobs/{id}.", "ingest", status=202)

JOBS = Operation(
    "jobs", "GET", "/v1/jobs", JobsIn, Jobs, h.jobs, "Recent ingest jobs, newest first.", "ingest")

JOB = Operation(
    "job", "GET", "/v1/jobs/{job_id}", JobIn, JobOut, h.job, "One ingest job and its progress.", "ingest")

PUSH = Operation(
    "push", "POST", "/v1/events", EventsIn, EventsOut, h.push,
    "Push records into an append source (e.g. user session events). They are durable once accepted.",
    "ingest", status=202)

# traces
TRACES = Operation(
    "traces", "GET", "/v1/traces", TracesIn, TraceSummaries, h.traces, "Recent traces.", "traces")

TRACE = Operation(
    "trace", "GET", "/v1/traces/{trace_id}", TraceIn, TraceOut, h.trace,
    "One whole trace: the request, every candidate, timings, the exact context.", "traces")

REPLAY: Operation[ReplayIn, TraceOut | RerunOut] = Operation(
    "replay", "POST", "/v1/replay", ReplayIn, TraceOut | RerunOut, h.replay,  # type: ignore[arg-type]
    "The exact context a trace got, or (``rerun``) the same request on today's data and the diff.",
    "traces")

# state
SOURCES: Operation[BaseModel, Sources] = Operation(
    "sources", "GET", "/v1/sources", None, Sources, h.sources,
    "Configured sources with their tier, criticality, counts and freshness.", "state")

STATUS: Operation[BaseModel, StatusOut] = Operation(
    "status", "GET", "/v1/status", None, StatusOut, h.status,
    "The home, store sizes, freshness per source, providers, breakers and the daemon.", "state")

QUARANTINE = Operation(
    "quarantine", "GET", "/v1/quarantine", QuarantineIn, Quarantined, h.quarantine,
    "Quarantined records: which source, which record, why, and when.", "state")

DOCTOR = Operation(
    "doctor", "POST", "/v1/doctor", DoctorIn, DoctorOut, h.doctor,
    "Check the tiers against SQLite (the source of truth) and optionally repair them.", "state")

ARCHIVE: Operation[BaseModel, ArchiveOut] = Operation(
    "archive", "POST", "/v1/archive", None, ArchiveOut, h.archive,
    "Move document versions superseded longer ago than [archive] keep to the cold tier.", "state")

# observe
METRICS: Operation[BaseModel, str] = Operation(
    "metrics", "GET", "/metrics", None, str, h.metrics,
    "Prometheus metrics: the daemon's counters, or this home's state without one.", "ops", text=True)

COST = Operation(
    "cost", "GET", "/v1/cost", CostIn, CostOut, h.cost,
    "The cost ledger: spend by day, recipe, source, provider and tenant, the top drivers, what to cut "
    "first.", "observe")

SLO: Operation[BaseModel, SloOut] = Operation(
    "slo", "GET", "/v1/slo", None, SloOut, h.slo,
    "Each objective over 1h, 1d and 7d: SLI, error budget left and burn rate.", "observe")

AUDIT = Operation(
    "audit", "GET", "/v1/audit", AuditIn, AuditOut, h.audit,
    "The maturity-model audit: every level's checks (pass, warn, fail) with evidence, the level "
    "reached.", "observe")

ALERTS = Operation(
    "alerts", "GET", "/v1/alerts", AlertsIn, Alerts, h.alerts,
    "Anomaly alerts, firing ones first, newest first, each with its notifications.", "observe")

CHECK_ALERTS: Operation[BaseModel, AlertCheckOut] = Operation(
    "check_alerts", "POST", "/v1/alerts/check", None, AlertCheckOut, h.check_alerts,
    "Evaluate every alert rule now, take the escalation steps that are due and deliver them.", "observe")

# versions: the fixed paths before /v1/versions/{ref}, which would match them too (so those are not labels)
EXPERIMENTS: Operation[BaseModel, Experiments] = Operation(
    "experiments", "GET", "/v1/ab", None, Experiments, h.experiments,
    "The configured A/B experiments, the version each variant names today, and their traffic so far.",
    "versions")

AB_REPORT = Operation(
    "ab_report", "GET", "/v1/ab/{name:path}", AbReportIn, AbReportOut, h.ab_report,
    "An experiment's per-variant figures with confidence intervals, and the verdict on its metric.",
    "versions")

VERSIONS = Operation(
    "versions", "GET", "/v1/versions", VersionsIn, Versions, h.versions,
    "Every stored version, newest first, with its labels and whether it is the one in force.", "versions")

LABEL = Operation(
    "label", "POST", "/v1/versions/label", VersionLabelIn, VersionLabelOut, h.label,
    "Point a label at a version (in the version's recipe); says where it pointed before.", "versions")

ROLLBACK = Operation(
    "rollback", "POST", "/v1/versions/rollback", VersionRollbackIn, VersionRollbackOut, h.rollback,
    "Move a label back to the version it pointed at before its last move.", "versions")

EVAL = Operation(
    "eval", "POST", "/v1/eval", EvalIn, EvalOut, h.evaluate,
    "Offline evaluation of labeled queries sent inline: recall@k, MRR, nDCG@10 and token efficiency of "
    "one version, or (``compare``) of two side by side. No trace is stored; the run is.", "versions",
    timeout=3600.0)

VERSION = Operation(
    "version", "GET", "/v1/versions/{ref}", VersionRefIn, VersionDetailOut, h.version,
    "One version in full: its configuration, labels, index id and index state.", "versions")

VERSION_DIFF = Operation(
    "version_diff", "GET", "/v1/versions/{a}/diff/{b}", VersionDiffIn, VersionDiffOut, h.version_diff,
    "The settings that differ between two versions, and whether their indexes differ.", "versions")

# Every operation, in the order the daemon's routes are added (a fixed path before a parameter that matches it).
OPERATIONS: tuple[Operation[Any, Any], ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Operation))
BY_NAME: dict[str, Operation[Any, Any]] = {op.name: op for op in OPERATIONS}
