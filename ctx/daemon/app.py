"""The ASGI app: thin routes over the same core calls the CLI makes in-process, behind one security layer.

Every route but ``/healthz`` needs the bearer token; every request needs a local Host header (DNS
rebinding) and a body under the size limit. Errors are JSON ``{"error": {"code", "message"}}``
with stable codes, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from typing import Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctx.api.schemas import (
    API_VERSION,
    VERSION_HEADER,
    AlertCheckOut,
    AlertOut,
    ArchiveOut,
    AssembleIn,
    AssembleOut,
    DoctorIn,
    DoctorOut,
    ErrorOut,
    EvalIn,
    EventsIn,
    EventsOut,
    Health,
    HitOut,
    IngestIn,
    JobOut,
    ReplayIn,
    RerunOut,
    SearchIn,
    SourceOut,
    StatusOut,
    TraceOut,
    TraceSummary,
    VersionDetailOut,
    VersionDiffOut,
    VersionLabelIn,
    VersionLabelOut,
    VersionOut,
    VersionRollbackIn,
    VersionRollbackOut,
    describe,
)
from ctx.daemon.service import Service
from ctx.errors import ConfigError, CtxError, NotFound, TransientError, UserError
from ctx.observe.metrics import CONTENT_TYPE

log = logging.getLogger("ctx.daemon")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
OPEN_PATHS = {"/healthz"}
VERSION_PAIR = (VERSION_HEADER.lower().encode(), API_VERSION.encode())
ERRORS = {401: "unauthorized", 403: "host_not_allowed", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "payload_too_large", 422: "invalid_request", 503: "unavailable"}
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": name.replace("_", " ")}
    for code, name in {400: "bad_request", 401: "unauthorized", 403: "host_not_allowed", 404: "not_found",
                       413: "payload_too_large", 422: "invalid_request", 503: "unavailable"}.items()
}


def _json(data: Any) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")),
                    media_type="application/json")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


class Guard:
    """Host check, bearer token and body size limit, before any route runs (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, token: str, allowed_hosts: list[str], max_body: int, service: Service) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = LOCAL_HOSTS | {h.lower() for h in allowed_hosts}
        self.max_body = max_body
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_seen = {"status": 500}

        async def send_versioned(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), VERSION_PAIR]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refuse(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send_versioned)
        else:
            await self.app(scope, self._limited(receive), send_versioned)
        route = scope.get("route")
        name = getattr(route, "path", "unmatched")
        self.service.metrics.requests.labels(name, scope["method"], str(status_seen["status"])).inc()
        self.service.metrics.request_seconds.labels(name).observe(time.perf_counter() - started)
        log.info("%s %s %s %.1fms", scope["method"], scope["path"], status_seen["status"],
                 (time.perf_counter() - started) * 1000)

    def _refuse(self, path: str, headers: dict[str, str]) -> JSONResponse | None:
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
        if name.lower() not in self.hosts:
            return error(403, "host_not_allowed", f"Host {host[:100]!r} is not a local name (DNS-rebinding protection)")
        if path not in OPEN_PATHS:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                return error(401, "unauthorized", "missing or wrong bearer token (it is in the home's daemon.json)",
                             {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return error(413, "payload_too_large", f"request body over {self.max_body} bytes")
        return None

    def _limited(self, receive: Receive) -> Receive:
        """Counts a body sent without Content-Length (chunked) and stops it at the limit."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        return wrapped


class _TooLarge(StarletteHTTPException):
    """An HTTPException: FastAPI re-raises those from its body parsing (any other error becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def create_app(service: Service, token: str) -> ASGIApp:
    settings = service.ws.settings.daemon
    core = service.core
    app = FastAPI(title="ctx daemon", version=API_VERSION, responses=RESPONSES,
                  description="Context assembly, search, ingest jobs, events, traces and replay for one ctx home. "
                              "Every route but /healthz needs `Authorization: Bearer TOKEN` (TOKEN is in the "
                              "home's daemon.json).")

    @app.exception_handler(CtxError)
    async def ctx_error(request: Request, exc: CtxError) -> JSONResponse:
        if isinstance(exc, NotFound):
            return error(404, "not_found", str(exc))
        if isinstance(exc, UserError | ConfigError):
            return error(400, "bad_request", str(exc))
        if isinstance(exc, TransientError):
            return error(503, "unavailable", str(exc))
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error(500, "internal", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed (RFC 9110 `Allow`).
        return error(exc.status_code, ERRORS.get(exc.status_code, "bad_request"), str(exc.detail),
                     dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        return error(500, "internal", f"unexpected {type(exc).__name__} (details in the daemon log)")

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness, without a token: the only open route."""
        return {"ok": True, "api_version": API_VERSION, "pid": os.getpid()}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {}}, "description": "Prometheus text format"}})
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    # The two hot routes hand back JSON they serialise once themselves: re-validating a response the core
    # just built costs more than the rest of the HTTP layer. The models still document them in OpenAPI,
    # and the schemathesis run checks the bodies against them.
    @app.post("/v1/assemble", response_model=AssembleOut, tags=["context"])
    def assemble(body: AssembleIn) -> Response:
        """Assemble a token-budgeted context window; it is stored as a replayable trace."""
        started = time.perf_counter()
        out = core.assemble(body)
        service.metrics.record_assembly(out, time.perf_counter() - started)
        return _json(out)

    @app.post("/v1/search", response_model=list[HitOut], tags=["context"])
    def search(body: SearchIn) -> Response:
        """Hybrid search (BM25 + vectors, fused by reciprocal rank)."""
        return _json(core.search(body))

    @app.post("/v1/ingest", response_model=JobOut, status_code=202, tags=["ingest"])
    def ingest(body: IngestIn) -> dict[str, Any]:
        """Queue an ingest job; follow it at /v1/jobs/{id}."""
        return service.ingest(body.sources, body.trigger)

    @app.get("/v1/jobs", response_model=list[JobOut], tags=["ingest"])
    def jobs(limit: int = Query(20, ge=1, le=1000)) -> list[dict[str, Any]]:
        return core.jobs(limit)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["ingest"])
    def job(job_id: str) -> dict[str, Any]:
        return core.job(job_id)

    @app.post("/v1/events", response_model=EventsOut, status_code=202, tags=["ingest"])
    def events(body: EventsIn) -> dict[str, Any]:
        """Push records into an append source (e.g. user session events). They are durable once accepted."""
        return service.push(body.source, body.events)

    @app.get("/v1/traces", response_model=list[TraceSummary], tags=["traces"])
    def traces(limit: int = Query(20, ge=1, le=10000)) -> list[dict[str, Any]]:
        return core.traces(limit)

    @app.get("/v1/traces/{trace_id}", response_model=TraceOut, tags=["traces"])
    def trace(trace_id: str) -> dict[str, Any]:
        return core.replay(ReplayIn.model_construct(trace_id=trace_id, rerun=False))

    @app.post("/v1/replay", response_model=TraceOut | RerunOut, tags=["traces"])
    def replay(body: ReplayIn) -> dict[str, Any]:
        """The exact context a trace got, or (``rerun``) the same request on today's data and the diff."""
        return core.replay(body)

    @app.get("/v1/sources", response_model=list[SourceOut], tags=["state"])
    def sources() -> list[dict[str, Any]]:
        return core.sources()

    @app.get("/v1/status", response_model=StatusOut, tags=["state"])
    def status() -> dict[str, Any]:
        return {**core.status(), "daemon": service.describe()}

    @app.get("/v1/quarantine", tags=["state"])
    def quarantine(source: str | None = Query(None, min_length=1, max_length=200),
                   limit: int = Query(50, ge=1, le=100000)) -> list[dict[str, Any]]:
        return core.quarantined(source, limit)

    @app.post("/v1/doctor", response_model=DoctorOut, tags=["state"])
    def doctor(body: DoctorIn) -> dict[str, Any]:
        return core.doctor(body)

    @app.post("/v1/archive", response_model=ArchiveOut, tags=["state"])
    def archive() -> dict[str, Any]:
        """Move document versions superseded longer ago than [archive] keep to the cold tier."""
        return core.archive()

    @app.get("/v1/cost", tags=["observe"])
    def cost(since: str = Query("7d", min_length=1, max_length=20, description="a duration: 1h, 24h, 7d, 30d")
             ) -> dict[str, Any]:
        """The cost ledger: spend by day, recipe, source, provider and tenant, the top drivers, what to cut first."""
        return core.cost(since)

    @app.get("/v1/slo", tags=["observe"])
    def slo() -> dict[str, Any]:
        """Each objective over 1h, 1d and 7d: SLI, error budget left and burn rate."""
        return core.slo()

    @app.get("/v1/audit", tags=["observe"])
    def audit(window: str = Query("7d", min_length=1, max_length=20, description="a duration: 1h, 24h, 7d, 30d"),
              sample: int = Query(20, ge=0, le=1000, description="recent traces replayed by the probe")
              ) -> dict[str, Any]:
        """The maturity-model audit: every level's checks (pass, warn, fail) with evidence, the level reached."""
        return core.audit(window, sample)

    @app.get("/v1/ab", tags=["versions"])
    def experiments() -> list[dict[str, Any]]:
        """The configured A/B experiments, the version each variant names today, and their traffic so far."""
        return core.experiments()

    @app.get("/v1/ab/{name:path}", tags=["versions"])
    def ab_report(name: str, since: str = Query("30d", min_length=1, max_length=20,
                                                description="a duration: 1h, 24h, 7d, 30d")) -> dict[str, Any]:
        """An experiment's per-variant figures with confidence intervals, and the verdict on its metric."""
        return core.ab_report(name, since)

    @app.get("/v1/alerts", response_model=list[AlertOut], tags=["observe"])
    def alerts(limit: int = Query(50, ge=1, le=10000),
               active: bool = Query(False, description="only firing alerts")) -> list[dict[str, Any]]:
        """Anomaly alerts, firing ones first, newest first, each with its notifications."""
        return core.alerts(limit, active)

    @app.post("/v1/alerts/check", response_model=AlertCheckOut, tags=["observe"])
    def check_alerts() -> dict[str, Any]:
        """Evaluate every alert rule now, take the escalation steps that are due and deliver them."""
        return service.check_alerts()

    # Versions: the same pattern as the CLI checks (ctx.api.schemas.VersionRefIn), so odd text is a 422 here
    # and the same one-line error there, never a lookup.
    ref_pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
    recipe_query = Query(None, min_length=1, max_length=200, pattern=ref_pattern,
                         description="a [recipes.NAME] of ctx.toml")

    @app.get("/v1/versions", response_model=list[VersionOut], tags=["versions"])
    def versions(recipe: str | None = recipe_query) -> list[dict[str, Any]]:
        """Every stored version, newest first, with its labels and whether it is the one in force."""
        return core.versions(recipe)

    # The fixed paths first: /v1/versions/{ref} would match them too (so those two names are not labels).
    @app.post("/v1/versions/label", response_model=VersionLabelOut, tags=["versions"])
    def label(body: VersionLabelIn) -> dict[str, Any]:
        """Point a label at a version (in the version's recipe); says where it pointed before."""
        return core.label(body)

    @app.post("/v1/versions/rollback", response_model=VersionRollbackOut, tags=["versions"])
    def rollback(body: VersionRollbackIn) -> dict[str, Any]:
        """Move a label back to the version it pointed at before its last move."""
        return core.rollback(body)

    @app.post("/v1/eval", tags=["versions"])
    def evaluate(body: EvalIn) -> dict[str, Any]:
        """Offline evaluation of labeled queries sent inline: recall@k, MRR, nDCG@10 and token efficiency
        of one version, or (``compare``) of two side by side. No trace is stored; the run is."""
        return core.eval(body)

    @app.get("/v1/versions/{ref}", response_model=VersionDetailOut, tags=["versions"])
    def version(ref: str = Path(min_length=1, max_length=200, pattern=ref_pattern,
                                description="a version id, an id prefix (4+ hex digits) or a label"),
                recipe: str | None = recipe_query) -> dict[str, Any]:
        """One version in full: its configuration, labels, index id and index state."""
        return core.version(ref, recipe)

    @app.get("/v1/versions/{a}/diff/{b}", response_model=VersionDiffOut, tags=["versions"])
    def version_diff(a: str = Path(min_length=1, max_length=200, pattern=ref_pattern),
                     b: str = Path(min_length=1, max_length=200, pattern=ref_pattern),
                     recipe: str | None = recipe_query) -> dict[str, Any]:
        """The settings that differ between two versions, and whether their indexes differ."""
        return core.version_diff(a, b, recipe)

    return Guard(app, token, settings.allowed_hosts, settings.max_body_bytes, service)

