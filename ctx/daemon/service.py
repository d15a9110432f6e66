"""What the daemon runs besides the API: the job lanes, the scheduler, and the start and stop order."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ctx.api import operations as ops
from ctx.daemon.alerting import AlertLoop
from ctx.daemon.lanes import Lanes
from ctx.daemon.scheduler import Scheduler, lane_for
from ctx.observe.metrics import Metrics
from ctx.pipeline import Stopped
from ctx.store.catalog import now_iso
from ctx.workspace import Workspace

log = logging.getLogger("ctx.daemon")


class Service:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.metrics = Metrics()
        self.metrics.watch_workspace(ws)
        self.lanes = Lanes(self._run, self._finished)
        self.address = ""
        self.started = time.time()
        self.started_at = now_iso()
        daemon = ws.settings.daemon
        self.scheduler = Scheduler(ws.settings, self._last_syncs, self.sync, daemon.watch) if daemon.scheduler else None
        alerts = ws.settings.alerts
        self.alerting = ws.alerting  # built once, here: the loop and the API share its lock and its bucket cache
        self.alert_loop = AlertLoop(self.check_alerts, alerts.interval) if alerts.enabled else None
        # The operations a daemon does differently from a process of its own: jobs go to the lanes, status
        # describes the daemon, assembly is measured. Every other operation runs its table handler.
        self.overrides: dict[str, Callable[[Any], Any]] = {
            "assemble": self._assemble, "ingest": lambda body: self.ingest(body.sources, body.trigger),
            "push": lambda body: self.push(body.source, body.events), "status": self._status,
            "check_alerts": lambda body: self.check_alerts(), "metrics": lambda body: self.metrics.render(),
        }

    def run(self, op: ops.Operation[Any, Any], body: Any) -> Any:
        """One operation, as the daemon does it."""
        own = self.overrides.get(op.name)
        return own(body) if own is not None else op.handler(self.ws, body)

    def _assemble(self, body: Any) -> Any:
        started = time.perf_counter()
        out = ops.ASSEMBLE.handler(self.ws, body)
        self.metrics.record_assembly(out, time.perf_counter() - started)
        return out

    def _status(self, body: None) -> dict[str, Any]:
        return {**ops.STATUS.handler(self.ws, body), "daemon": self.describe()}

    def describe(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "address": self.address, "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started, 1), "queue_depth": self.ws.jobs.depth(),
            "lanes": dict(self.lanes.busy), "jobs_waiting": self.lanes.depth(),
        }

    def start(self) -> None:
        for job_id in self.ws.jobs.unfinished():
            job = self.ws.jobs.get(job_id)
            log.info("resuming %s job %s (%s)", job["kind"], job_id, ", ".join(job["sources"]))
            self.lanes.submit(job_id, self._lane(job), job["sources"])
        self.lanes.start()
        if self.scheduler:
            self.scheduler.start()
        if self.alert_loop:
            self.alert_loop.start()

    def stop(self, timeout: float) -> None:
        if self.alert_loop:  # first: its refresh actions queue jobs
            self.alert_loop.stop()
        if self.scheduler:
            self.scheduler.stop()
        self.lanes.stop(timeout)

    # --- jobs --------------------------------------------------------------------------------------

    def ingest(self, sources: list[str] | None, trigger: str = "api") -> dict[str, Any]:
        job_id = self.ws.submit(sources, trigger)
        job = self.ws.jobs.get(job_id)
        self.lanes.submit(job_id, self._lane(job), job["sources"])
        return job

    def sync(self, source: str, trigger: str) -> None:
        """A scheduled or watched sync of one source, unless one already waits."""
        lane = lane_for(self.ws.settings.sources[source])
        if not self.lanes.waiting(source, lane):
            job_id = self.ws.submit([source], trigger)
            self.lanes.submit(job_id, lane, [source])

    def check_alerts(self) -> dict[str, Any]:
        """Evaluate the alert rules now (the loop does it every interval); refresh actions sync in the lanes."""
        return self.ws.check_alerts(self._alert_refresh)

    def _alert_refresh(self, source: str) -> str:
        lane = lane_for(self.ws.settings.sources[source])  # alert keys are configured sources
        waiting = self.lanes.waiting(source, lane)
        self.sync(source, "alert")
        return f"a sync already waited in the {lane} lane" if waiting else f"sync queued in the {lane} lane"

    def push(self, source: str, events: list[Any]) -> dict[str, Any]:
        job_id, accepted, quarantined = self.ws.push_events(source, events)
        self.metrics.events.labels(source).inc(accepted)
        self.lanes.submit(job_id, "realtime", [source])
        return {"job_id": job_id, "accepted": accepted, "quarantined": quarantined}

    def _lane(self, job: dict[str, Any]) -> str:
        if job["kind"] == "events" or job["trigger"] == "watch":
            return "realtime"
        configured = self.ws.settings.sources
        tiers = {lane_for(configured[s]) for s in job["sources"] if s in configured}
        return "realtime" if tiers == {"realtime"} else "bulk"

    def _run(self, job_id: str, source_lock: Callable[[str], AbstractContextManager[Any]],
             should_stop: Callable[[], bool]) -> None:
        try:
            self.ws.run_job(job_id, None, source_lock, should_stop)
        except Stopped:
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self.ws.write(lambda: self.ws.jobs.finish(job_id, "failed", {}, message))
            raise

    def _finished(self, job_id: str) -> None:
        self.metrics.record_job(self.ws.jobs.get(job_id))

    def _last_syncs(self) -> dict[str, str | None]:
        return {name: row.get("last_sync_at") for name, row in self.ws.catalog.source_rows().items()}
