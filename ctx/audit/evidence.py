"""Evidence for the audit, gathered once per run: what is configured, what the window's traces, syncs and
alerts show, and two live probes (replay a sample of traces byte for byte; doctor for drift)."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ctx.errors import NotFound, UserError
from ctx.observe.cost import window_bounds as cost_window
from ctx.settings import Settings

if TYPE_CHECKING:
    from ctx.audit.ports import Audited
    from ctx.store.catalog import Catalog

MAX_SAMPLE = 1000
CACHE_HITS = ("l1", "l2", "coalesced")  # how a context was obtained without running its providers
PROVIDER_HITS = ("cached", "coalesced")
REROUTED = ("stale", "fallback")  # a failing provider's block still delivered
CIRCUIT_OPEN = "circuit open"  # the error of a call an open breaker did not let through (ctx.assemble.fanout)
SCHEDULED = ("schedule", "watch", "alert")  # syncs nobody typed a command for
STUCK = ("pending", "failed", "sending")
_WINDOW = "created_at >= ? and created_at <= ?"


@dataclass
class Traffic:
    """The window's requests (reruns from a trace are an operator's check, not traffic)."""

    requests: int = 0
    failed: int = 0
    daemon: int = 0
    context_hits: int = 0
    versioned: int = 0
    timed: int = 0
    costed: int = 0
    logged: int = 0
    provider_calls: int = 0  # provider outcomes of requests that ran their providers
    provider_hits: int = 0
    breaker_events: int = 0  # provider calls an open breaker did not let through
    breaker_served: int = 0  # ... whose block still came, stale or from a fallback
    breaker_failed: int = 0  # requests that failed while a provider's breaker was open
    rerouted: dict[str, int] = field(default_factory=dict)  # stale / fallback outcomes
    failed_critical: list[str] = field(default_factory=list)  # providers whose failure failed a request


@dataclass
class Alerting:
    fired: int = 0  # alerts opened in the window
    delivered: int = 0  # their notifications that were sent (webhook) or done (action)
    stuck: int = 0  # notifications still in the outbox past a grace period
    gave_up: int = 0
    actions: int = 0  # refresh actions carried out


@dataclass
class Evidence:
    settings: Settings
    window: str
    window_s: float
    start: str
    end: str
    documents: int
    sources: list[dict[str, Any]]
    traffic: Traffic
    syncs: dict[str, dict[str, int]]  # source -> trigger -> successful syncs in the window
    slo: dict[str, Any]
    alerting: Alerting
    daemon_pid: int | None
    sample: int
    replays: list[dict[str, Any]]
    doctor: dict[str, Any]

    @property
    def polled(self) -> list[str]:
        """Sources the daemon fetches (pushed ``events`` sources have nothing to fetch)."""
        return [n for n, s in self.settings.sources.items() if s.kind != "events"]


def window_bounds(window: str, now: datetime | None = None) -> tuple[float, str, str]:
    """(seconds, start, end) of the last ``window``; a bad duration is a UserError."""
    return cost_window(window, now, "--window")


def gather(ws: Audited, window: str, sample: int, now: datetime | None = None) -> Evidence:
    """Everything the checks decide from, read from the home once."""
    if not 0 <= sample <= MAX_SAMPLE:
        raise UserError(f"--sample must be between 0 and {MAX_SAMPLE}")
    seconds, start, end = window_bounds(window, now)
    catalog = ws.catalog
    return Evidence(
        settings=ws.settings, window=window, window_s=seconds, start=start, end=end,
        documents=int(catalog.db.execute("select count(*) from documents").fetchone()[0]),
        sources=ws.sources(), traffic=traffic(catalog, start, end), syncs=syncs(catalog, start, end),
        slo=ws.slo(), alerting=alerting(catalog, ws.settings, start, end), daemon_pid=_daemon(ws),
        sample=sample, replays=replay_probe(ws, start, end, sample), doctor=ws.doctor(repair=False).to_dict(),
    )


def traffic(catalog: Catalog, start: str, end: str) -> Traffic:
    db, span = catalog.db, [start, end]
    hits = ",".join("?" * len(CACHE_HITS))
    row = db.execute(
        "select count(*), coalesce(sum(status = 'failed'), 0), coalesce(sum(origin = 'daemon'), 0), "
        f"coalesce(sum(cache in ({hits})), 0), coalesce(sum(version is not null), 0), "
        "coalesce(sum(total_ms is not null), 0), "
        "coalesce(sum(json_extract(costs, '$.total_usd') is not null and ledger is not null), 0), "
        "coalesce(sum(rendered is not null and rendered_sha256 is not null and request is not null), 0) "
        f"from traces where {_WINDOW} and replay_of is null", [*CACHE_HITS, *span]).fetchone()
    requests, failed, daemon, context_hits, versioned, timed, costed, logged = (int(v) for v in row)
    t = Traffic(requests, failed, daemon, context_hits, versioned, timed, costed, logged)
    failed_by: dict[str, int] = {}
    for status, cache, raw in db.execute(
            f"select status, cache, providers from traces where {_WINDOW} and replay_of is null", span):
        outcomes: dict[str, dict[str, Any]] = json.loads(raw or "{}")
        ran = (cache or "off") not in CACHE_HITS  # a cached context lists the outcomes of the request that built it
        opened = False
        for name, o in outcomes.items():
            state = o.get("status")
            if ran:
                t.provider_calls += 1
                t.provider_hits += state in PROVIDER_HITS
            if ran and state in REROUTED:
                t.rerouted[state] = t.rerouted.get(state, 0) + 1
            # Skipped by its open breaker; a skipped call answered stale or by a fallback keeps the reason.
            if ran and (state == "skipped" or (o.get("error") or "").startswith(CIRCUIT_OPEN)):
                t.breaker_events += 1
                t.breaker_served += state in REROUTED
                opened = True
            if status == "failed" and o.get("criticality") == "critical" and state not in ("ok", "cached",
                                                                                          "coalesced", *REROUTED):
                failed_by[name] = failed_by.get(name, 0) + 1
        t.breaker_failed += opened and status == "failed"
    t.failed_critical = sorted(failed_by)
    return t


def syncs(catalog: Catalog, start: str, end: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for source, trigger, n in catalog.db.execute(
            "select s.source, coalesce(r.trigger, 'cli'), count(*) from syncs s left join ingest_runs r "
            "on r.id = s.job_id where s.at >= ? and s.at <= ? and s.ok = 1 group by 1, 2", [start, end]):
        out.setdefault(source, {})[trigger] = int(n)
    return out


def alerting(catalog: Catalog, settings: Settings, start: str, end: str) -> Alerting:
    db = catalog.db
    # A notification gets a delivery try at every evaluation: two intervals (at least a minute) without
    # one leaving the outbox means nothing is working it off.
    grace = _iso(datetime.fromisoformat(end) - timedelta(seconds=max(2 * settings.alerts.interval, 60.0)))
    fired = int(db.execute("select count(*) from alerts where first_at >= ? and first_at <= ?",
                           [start, end]).fetchone()[0])
    counts: dict[str, int] = {}
    actions = 0
    for status, kind, created, n in db.execute(
            "select n.status, n.kind, n.created_at < ?, count(*) from alert_notifications n join alerts a "
            "on a.id = n.alert_id where a.first_at >= ? and a.first_at <= ? group by 1, 2, 3", [grace, start, end]):
        if status in STUCK and not created:
            continue  # still inside its grace period: the next evaluation will try it
        counts[status] = counts.get(status, 0) + int(n)
        actions += int(n) if kind == "action" and status == "done" else 0
    return Alerting(fired, counts.get("sent", 0) + counts.get("done", 0), sum(counts.get(s, 0) for s in STUCK),
                    counts.get("gave_up", 0), actions)


def replay_probe(ws: Audited, start: str, end: str, sample: int) -> list[dict[str, Any]]:
    """Replay the newest ``sample`` traces of the window and check each is byte-identical to what was stored.

    Replay must give back exactly the bytes the request got: the stored bytes must hash to the trace's
    checksum (a replay of a tampered or damaged trace is refused), and what replay returns must be them.
    """
    if not sample:
        return []
    out = []
    for row in ws.catalog.db.execute(
            f"select id, rendered, rendered_sha256 from traces where {_WINDOW} order by id desc limit ?",
            [start, end, sample]):
        trace_id, packed, checksum = row
        try:
            stored = zlib.decompress(packed)
            replayed = ws.replay(trace_id).to_dict()["context"].encode("utf-8")
        except (NotFound, zlib.error, UnicodeError) as exc:
            out.append({"trace_id": trace_id, "ok": False, "problem": str(exc)})
            continue
        if hashlib.sha256(replayed).hexdigest() != checksum or replayed != stored:
            out.append({"trace_id": trace_id, "ok": False, "problem": "replayed bytes differ from the stored context"})
        else:
            out.append({"trace_id": trace_id, "ok": True, "problem": None, "bytes": len(replayed)})
    return out


def _daemon(ws: Audited) -> int | None:
    """The pid of the home's running daemon (this process, when the audit runs in it)."""
    if ws.origin == "daemon":
        return os.getpid()
    from ctx.api import runtime as rt

    found = rt.read(ws.home)
    return found.pid if found else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
