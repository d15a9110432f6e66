"""The one gateway the CLI and the TUI use: the home's daemon when one runs, this process when none does.

Both sides take the same request models (``ctx.api.schemas``) and return the same plain data, so
every command prints the same thing either way. Requests are validated here, before choosing a
side, so a bad option gives the same one-line error in both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from ctx.api import runtime as rt
from ctx.api.schemas import (
    API_VERSION,
    VERSION_HEADER,
    AssembleIn,
    DoctorIn,
    EvalIn,
    EventsIn,
    IngestIn,
    ReplayIn,
    SearchIn,
    VersionLabelIn,
    VersionRollbackIn,
    describe,
)
from ctx.errors import CtxError, NotFound, TransientError, UserError

if TYPE_CHECKING:
    from ctx.pipeline import Progress
    from ctx.workspace import Workspace

M = TypeVar("M", bound=BaseModel)
FINISHED = ("ok", "partial", "failed", "interrupted")
EVAL_TIMEOUT = 3600.0  # seconds for one `ctx eval` request to the daemon


def build(schema: type[M], **fields: Any) -> M:
    """A request model from command options; a bad value is a UserError naming the field."""
    try:
        return schema(**fields)
    except ValidationError as exc:
        raise UserError(describe(exc)) from None


class Client(Protocol):
    mode: str

    def assemble(self, body: AssembleIn) -> dict[str, Any]: ...
    def search(self, body: SearchIn) -> list[dict[str, Any]]: ...
    def ingest(self, body: IngestIn, progress: Progress | None = None) -> dict[str, Any]: ...
    def submit(self, body: IngestIn) -> dict[str, Any]: ...
    def job(self, job_id: str) -> dict[str, Any]: ...
    def metrics(self) -> str: ...
    def jobs(self, limit: int) -> list[dict[str, Any]]: ...
    def push(self, body: EventsIn) -> dict[str, Any]: ...
    def traces(self, limit: int) -> list[dict[str, Any]]: ...
    def replay(self, body: ReplayIn) -> dict[str, Any]: ...
    def sources(self) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
    def quarantined(self, source: str | None, limit: int) -> list[dict[str, Any]]: ...
    def doctor(self, body: DoctorIn) -> dict[str, Any]: ...
    def cost(self, since: str) -> dict[str, Any]: ...
    def slo(self) -> dict[str, Any]: ...
    def audit(self, window: str, sample: int) -> dict[str, Any]: ...
    def experiments(self) -> list[dict[str, Any]]: ...
    def ab_report(self, name: str, since: str) -> dict[str, Any]: ...
    def alerts(self, limit: int, active: bool) -> list[dict[str, Any]]: ...
    def check_alerts(self) -> dict[str, Any]: ...
    def archive(self) -> dict[str, Any]: ...
    def versions(self, recipe: str | None) -> list[dict[str, Any]]: ...
    def version(self, ref: str, recipe: str | None) -> dict[str, Any]: ...
    def version_diff(self, a: str, b: str, recipe: str | None) -> dict[str, Any]: ...
    def label(self, body: VersionLabelIn) -> dict[str, Any]: ...
    def rollback(self, body: VersionRollbackIn) -> dict[str, Any]: ...
    def eval(self, body: EvalIn, progress: Callable[[int, int], None] | None = None,
             note: Callable[[str], None] | None = None) -> dict[str, Any]: ...
    def close(self) -> None: ...


def _plain(data: Any) -> Any:
    """Exactly what the same data looks like after a trip through the API's JSON."""
    return json.loads(json.dumps(data, default=str))


def _same(data: Any) -> Any:
    return data


class LocalClient:
    """Runs every call in this process, on the workspace (no daemon is running for this home)."""

    mode = "local"

    def __init__(self, ws: Workspace, plain: bool = True) -> None:
        self.ws = ws
        # The daemon serialises the result once itself; the CLI gets it as the API would deliver it.
        self._plain: Callable[[Any], Any] = _plain if plain else _same

    def assemble(self, body: AssembleIn) -> dict[str, Any]:
        ws = self.ws
        request = ws.request(body.query, body.budget, body.model, body.format,
                             ws.filters(body.sources, body.tenant, body.path), body.top_k, body.recipe, body.user,
                             body.session, body.params, body.deadline_ms / 1000 if body.deadline_ms else None,
                             body.as_of)
        return self._plain(ws.assemble(request, version=body.version).to_dict())

    def search(self, body: SearchIn) -> list[dict[str, Any]]:
        hits = self.ws.search(body.query, self.ws.filters(body.sources, body.tenant, body.path), body.limit)
        return self._plain([h.to_dict() for h in hits])

    def ingest(self, body: IngestIn, progress: Progress | None = None) -> dict[str, Any]:
        summary = self.ws.ingest(body.sources, progress)
        return self._plain(self.ws.jobs.get(summary.run_id))

    def submit(self, body: IngestIn) -> dict[str, Any]:
        raise UserError("no daemon runs for this home: `ctx ingest` runs the job here, "
                        "`ctx daemon start` runs it in the background")

    def job(self, job_id: str) -> dict[str, Any]:
        return self._plain(self.ws.jobs.get(job_id))

    def metrics(self) -> str:
        """The state metrics of this home (freshness, queue, store sizes); request counters live in a daemon."""
        from ctx.observe.metrics import Metrics

        metrics = Metrics()
        metrics.watch_workspace(self.ws)
        return metrics.render().decode("utf-8")

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        return self._plain(self.ws.jobs.recent(limit))

    def push(self, body: EventsIn) -> dict[str, Any]:
        job_id, accepted, quarantined = self.ws.push_events(body.source, body.events)
        self.ws.run_job(job_id)
        return {"job_id": job_id, "accepted": accepted, "quarantined": quarantined}

    def traces(self, limit: int) -> list[dict[str, Any]]:
        return self._plain([t.summary() for t in self.ws.traces.recent(limit)])

    def replay(self, body: ReplayIn) -> dict[str, Any]:
        if body.rerun:
            _, report = self.ws.rerun(body.trace_id, body.version)
            return self._plain(report.to_dict())
        if body.version is not None:
            raise UserError("a version is for a rerun: add --rerun (rerun: true) to re-assemble with it")
        return self._plain(self.ws.replay(body.trace_id).to_dict())

    def sources(self) -> list[dict[str, Any]]:
        return self._plain(self.ws.sources())

    def status(self) -> dict[str, Any]:
        return self._plain({**self.ws.status(), "daemon": None})

    def quarantined(self, source: str | None, limit: int) -> list[dict[str, Any]]:
        return self._plain(self.ws.quarantined(source, limit))

    def doctor(self, body: DoctorIn) -> dict[str, Any]:
        return self._plain(self.ws.doctor(body.repair).to_dict())

    def cost(self, since: str) -> dict[str, Any]:
        return self._plain(self.ws.cost(since))

    def slo(self) -> dict[str, Any]:
        return self._plain(self.ws.slo())

    def audit(self, window: str, sample: int) -> dict[str, Any]:
        return self._plain(self.ws.audit(window, sample))

    def experiments(self) -> list[dict[str, Any]]:
        return self._plain(self.ws.experiments())

    def ab_report(self, name: str, since: str) -> dict[str, Any]:
        return self._plain(self.ws.ab_report(name, since))

    def alerts(self, limit: int, active: bool) -> list[dict[str, Any]]:
        return self._plain(self.ws.alerts(limit, active))

    def check_alerts(self) -> dict[str, Any]:
        """Evaluate the alert rules now; a refresh action ingests the stale source in this process."""
        return self._plain(self.ws.check_alerts())

    def archive(self) -> dict[str, Any]:
        return self._plain(self.ws.archive())

    def versions(self, recipe: str | None) -> list[dict[str, Any]]:
        from ctx.versions import manage

        return self._plain(manage.listing(self.ws, recipe))

    def version(self, ref: str, recipe: str | None) -> dict[str, Any]:
        from ctx.versions import manage

        return self._plain(manage.show(self.ws, ref, recipe))

    def version_diff(self, a: str, b: str, recipe: str | None) -> dict[str, Any]:
        from ctx.versions import manage

        return self._plain(manage.compare(self.ws, a, b, recipe))

    def label(self, body: VersionLabelIn) -> dict[str, Any]:
        from ctx.versions import manage

        return self._plain(manage.label(self.ws, body.ref, body.label, body.recipe))

    def rollback(self, body: VersionRollbackIn) -> dict[str, Any]:
        from ctx.versions import manage

        return self._plain(manage.rollback(self.ws, body.label, body.recipe))

    def eval(self, body: EvalIn, progress: Callable[[int, int], None] | None = None,
             note: Callable[[str], None] | None = None) -> dict[str, Any]:
        from ctx.versions.evalset import from_dicts

        queries = from_dicts([q.model_dump() for q in body.queries])
        return self._plain(self.ws.evaluate(queries, body.k, body.version, body.compare, body.recipe, body.name,
                                            progress, note))

    def close(self) -> None:
        self.ws.close()


ERRORS: dict[str, type[CtxError]] = {
    "bad_request": UserError, "invalid_request": UserError, "conflict": UserError,
    "payload_too_large": UserError, "not_found": NotFound, "unavailable": TransientError,
}


class DaemonClient:
    """Every call to the daemon goes through :meth:`call`: auth, the API version check, typed errors."""

    mode = "daemon"

    def __init__(self, runtime: rt.Runtime, timeout: float = 60.0) -> None:
        import httpx

        self.runtime = runtime
        transport = httpx.HTTPTransport(uds=runtime.uds) if runtime.uds else None
        # trust_env=False: a loopback daemon is never reached through HTTP_PROXY (nor is its token sent there).
        self.http = httpx.Client(
            base_url=runtime.base_url, transport=transport, timeout=timeout, trust_env=False,
            headers={"Authorization": f"Bearer {runtime.token}", VERSION_HEADER: API_VERSION},
        )

    def call(self, method: str, path: str, body: BaseModel | None = None, raw: bool = False,
             timeout: float | None = None, **params: Any) -> Any:
        """The response's JSON (or its text, with ``raw``); an error response raises its typed error."""
        import httpx

        try:
            response = self.http.request(
                method, path, params={k: v for k, v in params.items() if v is not None} or None,
                content=body.model_dump_json(exclude_unset=True) if body is not None else None,
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TransportError as exc:
            raise TransientError(
                f"the daemon (pid {self.runtime.pid}) is not answering at {self.runtime.address}: {exc} "
                "(`ctx daemon status`, or `ctx daemon stop` and start it again)"
            ) from None
        served = response.headers.get(VERSION_HEADER)
        if served is not None and served != API_VERSION:
            raise UserError(f"the daemon speaks API v{served} and this ctx speaks v{API_VERSION}: "
                            "restart it with `ctx daemon stop && ctx daemon start`")
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "internal", f"HTTP {response.status_code}: {response.text[:200]}"
            raise ERRORS.get(code, CtxError)(message)
        return response.text if raw else response.json()

    def assemble(self, body: AssembleIn) -> dict[str, Any]:
        return self.call("POST", "/v1/assemble", body)  # type: ignore[no-any-return]

    def search(self, body: SearchIn) -> list[dict[str, Any]]:
        return self.call("POST", "/v1/search", body)  # type: ignore[no-any-return]

    def submit(self, body: IngestIn) -> dict[str, Any]:
        return self.call("POST", "/v1/ingest", body)  # type: ignore[no-any-return]

    def ingest(self, body: IngestIn, progress: Progress | None = None) -> dict[str, Any]:
        """Queue the job in the daemon and follow it to the end, drawing progress from its counts."""
        job = self.submit(body)
        follower = _Follower(progress) if progress is not None else None
        while job["status"] not in FINISHED:
            if follower:
                follower.update(job)
            time.sleep(0.2)
            job = self.job(job["id"])
        if follower:
            follower.update(job)
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/jobs/{job_id}")  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return self.call("GET", "/metrics", raw=True)  # type: ignore[no-any-return]

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/jobs", limit=limit)  # type: ignore[no-any-return]

    def push(self, body: EventsIn) -> dict[str, Any]:
        return self.call("POST", "/v1/events", body)  # type: ignore[no-any-return]

    def traces(self, limit: int) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/traces", limit=limit)  # type: ignore[no-any-return]

    def replay(self, body: ReplayIn) -> dict[str, Any]:
        return self.call("POST", "/v1/replay", body)  # type: ignore[no-any-return]

    def sources(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/sources")  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/v1/status")  # type: ignore[no-any-return]

    def quarantined(self, source: str | None, limit: int) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/quarantine", source=source, limit=limit)  # type: ignore[no-any-return]

    def doctor(self, body: DoctorIn) -> dict[str, Any]:
        return self.call("POST", "/v1/doctor", body)  # type: ignore[no-any-return]

    def cost(self, since: str) -> dict[str, Any]:
        return self.call("GET", "/v1/cost", since=since)  # type: ignore[no-any-return]

    def slo(self) -> dict[str, Any]:
        return self.call("GET", "/v1/slo")  # type: ignore[no-any-return]

    def audit(self, window: str, sample: int) -> dict[str, Any]:
        return self.call("GET", "/v1/audit", window=window, sample=sample)  # type: ignore[no-any-return]

    def experiments(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/ab")  # type: ignore[no-any-return]

    def ab_report(self, name: str, since: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/ab/{_segment(name)}", since=since)  # type: ignore[no-any-return]

    def alerts(self, limit: int, active: bool) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/alerts", limit=limit, active=active)  # type: ignore[no-any-return]

    def check_alerts(self) -> dict[str, Any]:
        return self.call("POST", "/v1/alerts/check")  # type: ignore[no-any-return]

    def archive(self) -> dict[str, Any]:
        return self.call("POST", "/v1/archive")  # type: ignore[no-any-return]

    def versions(self, recipe: str | None) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/versions", recipe=recipe)  # type: ignore[no-any-return]

    def version(self, ref: str, recipe: str | None) -> dict[str, Any]:
        return self.call("GET", f"/v1/versions/{_segment(ref)}", recipe=recipe)  # type: ignore[no-any-return]

    def version_diff(self, a: str, b: str, recipe: str | None) -> dict[str, Any]:
        return self.call("GET", f"/v1/versions/{_segment(a)}/diff/{_segment(b)}",  # type: ignore[no-any-return]
                         recipe=recipe)

    def label(self, body: VersionLabelIn) -> dict[str, Any]:
        return self.call("POST", "/v1/versions/label", body)  # type: ignore[no-any-return]

    def rollback(self, body: VersionRollbackIn) -> dict[str, Any]:
        return self.call("POST", "/v1/versions/rollback", body)  # type: ignore[no-any-return]

    def eval(self, body: EvalIn, progress: Callable[[int, int], None] | None = None,
             note: Callable[[str], None] | None = None) -> dict[str, Any]:
        # One request for the whole run (and maybe a side index build): far longer than a lookup.
        return self.call("POST", "/v1/eval", body, timeout=EVAL_TIMEOUT)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()


def _segment(value: str) -> str:
    """A path segment that stays one segment, whatever the user typed (``/``, ``?``, ``%``)."""
    return quote(value, safe="")


class _Follower:
    """Turns a polled job's per-source counts into the same progress calls an in-process run makes."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.done: dict[str, int] = {}
        self.finished: set[str] = set()

    def update(self, job: dict[str, Any]) -> None:
        for name, state in job["progress"].items():
            if name not in self.done:
                self.progress.source_started(name)
                self.done[name] = 0
            count = sum(state.get(k, 0) for k in ("new", "changed", "unchanged", "quarantined"))
            if count > self.done[name]:
                self.progress.advance(count - self.done[name])
                self.done[name] = count
            if state.get("finalized") and name not in self.finished:
                self.finished.add(name)
                self.progress.source_finished(name, state.get("error") is not None)


def connect(ws: Workspace) -> Client:
    """The daemon of the workspace's home if one runs, else this process."""
    runtime = rt.read(ws.home)
    if runtime is not None:
        return DaemonClient(runtime)
    return LocalClient(ws)
