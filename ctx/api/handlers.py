"""What each operation does in this process: its input model turned into one call on one of the workspace's services.

The daemon runs these same handlers (a few it replaces with its own, where the daemon does the work
differently: jobs go to its lanes, status describes it). Each returns plain data, the shape of the
operation's output model; heavy modules are imported inside, so the operations table stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ctx.api.inputs import (
    AbReportIn,
    AlertsIn,
    AssembleIn,
    AuditIn,
    CostIn,
    DoctorIn,
    EvalIn,
    EventsIn,
    FiltersIn,
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
from ctx.errors import UserError

if TYPE_CHECKING:
    from ctx.pipeline import Progress
    from ctx.retrieve.hybrid import Filters
    from ctx.workspace import Workspace

Data = Any  # plain data in the shape of the operation's output model


def _filters(ws: Workspace, body: FiltersIn) -> Filters:
    return ws.assembly.filters(body.sources, body.tenant, body.path)


def assemble(ws: Workspace, body: AssembleIn) -> Data:
    request = ws.assembly.request(
        body.query, budget=body.budget, model=body.model, fmt=body.format, filters=_filters(ws, body),
        top_k=body.top_k, recipe=body.recipe, user=body.user, session=body.session, params=body.params,
        deadline=body.deadline_ms / 1000 if body.deadline_ms else None, as_of=body.as_of,
    )
    return ws.assembly.assemble(request, version=body.version).to_dict()


def search(ws: Workspace, body: SearchIn) -> Data:
    return [hit.to_dict() for hit in ws.assembly.search(body.query, _filters(ws, body), body.limit)]


def ingest(ws: Workspace, body: IngestIn, progress: Progress | None = None) -> Data:
    """Run the job here, now (the daemon queues it in its lanes instead)."""
    summary = ws.ingestion.ingest(body.sources, progress)
    return ws.stores.jobs.get(summary.run_id)


def jobs(ws: Workspace, body: JobsIn) -> Data:
    return ws.stores.jobs.recent(body.limit)


def job(ws: Workspace, body: JobIn) -> Data:
    return ws.stores.jobs.get(body.job_id)


def push(ws: Workspace, body: EventsIn) -> Data:
    """Queue the events and process them here (the daemon hands them to its realtime lane instead)."""
    job_id, accepted, quarantined = ws.ingestion.push_events(body.source, body.events)
    ws.ingestion.run_job(job_id)
    return {"job_id": job_id, "accepted": accepted, "quarantined": quarantined}


def traces(ws: Workspace, body: TracesIn) -> Data:
    return [trace.summary() for trace in ws.stores.traces.recent(body.limit)]


def trace(ws: Workspace, body: TraceIn) -> Data:
    return ws.assembly.replay(body.trace_id).to_dict()


def replay(ws: Workspace, body: ReplayIn) -> Data:
    if body.rerun:
        _, report = ws.assembly.rerun(body.trace_id, body.version)
        return report.to_dict()
    if body.version is not None:
        raise UserError("a version is for a rerun: add --rerun (rerun: true) to re-assemble with it")
    return ws.assembly.replay(body.trace_id).to_dict()


def sources(ws: Workspace, body: None) -> Data:
    return ws.operations.sources()


def status(ws: Workspace, body: None) -> Data:
    return {**ws.operations.status(), "daemon": None}


def quarantine(ws: Workspace, body: QuarantineIn) -> Data:
    return ws.operations.quarantined(body.source, body.limit)


def doctor(ws: Workspace, body: DoctorIn) -> Data:
    return ws.operations.doctor(body.repair).to_dict()


def archive(ws: Workspace, body: None) -> Data:
    return ws.operations.archive()


def cost(ws: Workspace, body: CostIn) -> Data:
    return ws.operations.cost(body.since)


def slo(ws: Workspace, body: None) -> Data:
    return ws.operations.slo()


def audit(ws: Workspace, body: AuditIn) -> Data:
    return ws.operations.audit(body.window, body.sample)


def experiments(ws: Workspace, body: None) -> Data:
    return ws.operations.experiments()


def ab_report(ws: Workspace, body: AbReportIn) -> Data:
    return ws.operations.ab_report(body.name, body.since)


def alerts(ws: Workspace, body: AlertsIn) -> Data:
    return ws.operations.alerts(body.limit, body.active)


def check_alerts(ws: Workspace, body: None) -> Data:
    """Evaluate the alert rules now; a refresh action ingests the stale source in this process."""
    return ws.operations.check_alerts()


def versions(ws: Workspace, body: VersionsIn) -> Data:
    from ctx.versions import manage

    return manage.listing(ws.assembly, body.recipe)


def version(ws: Workspace, body: VersionRefIn) -> Data:
    from ctx.versions import manage

    return manage.show(ws.assembly, body.ref, body.recipe)


def version_diff(ws: Workspace, body: VersionDiffIn) -> Data:
    from ctx.versions import manage

    return manage.compare(ws.assembly, body.a, body.b, body.recipe)


def label(ws: Workspace, body: VersionLabelIn) -> Data:
    from ctx.versions import manage

    return manage.label(ws.assembly, body.ref, body.label, body.recipe)


def rollback(ws: Workspace, body: VersionRollbackIn) -> Data:
    from ctx.versions import manage

    return manage.rollback(ws.assembly, body.label, body.recipe)


def evaluate(ws: Workspace, body: EvalIn, progress: Callable[[int, int], None] | None = None,
             note: Callable[[str], None] | None = None) -> Data:
    from ctx.versions.evalset import from_dicts

    queries = from_dicts([q.model_dump() for q in body.queries])
    return ws.assembly.evaluate(queries, body.k, body.version, body.compare, body.recipe, body.name, progress, note)


def metrics(ws: Workspace, body: None) -> str:
    """The state metrics of this home (freshness, queue, store sizes); request counters live in a daemon."""
    from ctx.observe.metrics import Metrics

    registry = Metrics()
    registry.watch_workspace(ws)
    return registry.render().decode("utf-8")
