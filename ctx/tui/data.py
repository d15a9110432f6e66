"""The dashboard's figures, computed from what a client returns; no Textual here, so they are tested on their own.

Every figure that depends on the time takes ``now`` as an argument (freshness lag too, rather than the
``staleness_s`` the server computed), so a fixed clock gives a fixed dashboard.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ctx.errors import CtxError, NotFound, TransientError
from ctx.observe.stats import percentile

if TYPE_CHECKING:
    from ctx.client import Client

log = logging.getLogger(__name__)
T = TypeVar("T")

TRACE_LIMIT = 200  # the newest traces the latency, rate and trace table are computed from
ALERT_LIMIT = 50
MINUTES = 30  # how far back the per-minute latency series goes
RATE_WINDOW_S = 60.0
WARN_SHARE = 0.75  # a source past this share of its staleness limit is shown as a warning
# The cost and SLO reports scan days of traces (about a second per 50,000): the daemon would spend a core
# on them at every refresh. They move slowly, so they are read this often (and when `r` asks for them).
SLOW_S = 30.0


@dataclass(frozen=True)
class Minute:
    start: str  # ISO, the minute's first second (UTC)
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class CacheRate:
    level: str  # context | provider (live counters of the serving process) | traces (from recent traces)
    tier: str  # l1 | l2 | coalesced
    hits: int
    lookups: int
    entries: int | None

    @property
    def rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True)
class BreakerRow:
    name: str
    state: str  # closed | half_open | open
    recent_failures: int
    opened: int
    live: bool  # False: the serving process has not assembled yet, so every breaker is still closed


@dataclass(frozen=True)
class Freshness:
    name: str
    kind: str
    lag_s: float | None  # None: never synced
    limit_s: float
    level: str  # ok | warn | stale | never
    last_error: str | None


@dataclass(frozen=True)
class CostView:
    since: str
    requests: int
    total_usd: float
    per_request_usd: float
    today_usd: float
    today_requests: int
    days: list[dict[str, Any]]  # {"key": date, "requests", "total_usd"}, oldest first
    breakdown: dict[str, float]


@dataclass(frozen=True)
class Objective:
    name: str
    description: str
    target: float
    windows: dict[str, dict[str, Any]]  # "1h" | "1d" | "7d" → sli, good, total, budget_left, burn_rate, met

    @property
    def met(self) -> bool | None:
        """Met over its longest window that has data; None when no window has any."""
        for window in ("7d", "1d", "1h"):
            met = self.windows.get(window, {}).get("met")
            if met is not None:
                return bool(met)
        return None


@dataclass
class Board:
    """One refresh of the dashboard: every panel's figures, and per panel why it could not be read."""

    fetched_at: str
    mode: str  # daemon | local
    home: str
    traces: list[dict[str, Any]]
    latency: list[Minute]
    rps: float
    requests: int  # traces in the per-minute series' window
    cache: list[CacheRate]
    breakers: list[BreakerRow]
    freshness: list[Freshness]
    cost: CostView | None
    objectives: list[Objective]
    alerts: list[dict[str, Any]]
    problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cache"] = [{**asdict(c), "rate": c.rate} for c in self.cache]
        out["objectives"] = [{**asdict(o), "met": o.met} for o in self.objectives]
        return out


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def latency_by_minute(traces: Sequence[dict[str, Any]], now: datetime, minutes: int = MINUTES) -> list[Minute]:
    """p50/p95/p99 of total assembly time per minute, oldest first, one entry per minute (empty ones too)."""
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    buckets: dict[int, list[float]] = {i: [] for i in range(minutes)}
    for t in traces:
        index = int((parse_time(t["created_at"]) - first).total_seconds() // 60)
        if 0 <= index < minutes:
            buckets[index].append(float(t.get("total_ms") or 0.0))
    out = []
    for i, values in buckets.items():
        start = (first + timedelta(minutes=i)).isoformat()
        if values:
            out.append(Minute(start, len(values), *(percentile(values, q) for q in (50, 95, 99))))
        else:
            out.append(Minute(start, 0, None, None, None))
    return out


def request_rate(traces: Sequence[dict[str, Any]], now: datetime, window_s: float = RATE_WINDOW_S,
                 limit: int = TRACE_LIMIT) -> float:
    """Requests per second over the last ``window_s``.

    Only the newest ``limit`` traces are fetched: when every one of them falls inside the window the
    window holds more, so the rate is taken over the span those traces cover instead.
    """
    times = [parse_time(t["created_at"]) for t in traces]
    recent = [m for m in times if (now - m).total_seconds() <= window_s]
    if times and len(times) >= limit and len(recent) == len(times):
        span = max((now - min(times)).total_seconds(), 1.0)
        return len(times) / span
    return len(recent) / window_s


def cache_rates(assembly: dict[str, Any] | None, traces: Sequence[dict[str, Any]]) -> list[CacheRate]:
    """Hit rate per tier: live counters of the serving process, then how the recent traces were served.

    The trace-based rows work for a dashboard over ``--local`` too, where this process has served nothing.
    """
    rows = []
    for level in ("context", "provider"):
        stats = ((assembly or {}).get("cache") or {}).get(level) or {}
        if not stats.get("enabled"):
            continue
        entries: dict[str, int] = stats.get("entries") or {}
        hits = {key.removeprefix("hit_"): int(n) for key, n in stats.items() if key.startswith("hit_")}
        lookups = sum(hits.values()) + int(stats.get("miss", 0)) + int(stats.get("expired", 0))
        for tier in sorted({*entries, *hits}):
            rows.append(CacheRate(level, tier, hits.get(tier, 0), lookups, entries.get(tier)))
    served = Counter(t.get("cache") or "off" for t in traces)
    looked_up = sum(n for how, n in served.items() if how != "off")
    if looked_up:
        for tier in ("l1", "l2", "coalesced"):
            rows.append(CacheRate("traces", tier, served[tier], looked_up, None))
    return rows


def breaker_rows(status: dict[str, Any]) -> list[BreakerRow]:
    live: dict[str, dict[str, Any]] = (status.get("assembly") or {}).get("breakers") or {}
    names = sorted({*(p["name"] for p in status.get("providers") or []), *live})
    rows = []
    for name in names:
        b = live.get(name)
        rows.append(BreakerRow(name, (b or {}).get("state", "closed"), int((b or {}).get("recent_failures", 0)),
                               int((b or {}).get("opened", 0)), b is not None))
    return rows


def freshness_rows(sources: Sequence[dict[str, Any]], now: datetime) -> list[Freshness]:
    rows = []
    for s in sources:
        limit = float(s["max_staleness_s"])
        last = s.get("last_success_at")
        lag = max((now - parse_time(last)).total_seconds(), 0.0) if last else None
        if lag is None:
            level = "never"
        elif lag > limit:
            level = "stale"
        elif lag > limit * WARN_SHARE:
            level = "warn"
        else:
            level = "ok"
        rows.append(Freshness(s["name"], s.get("kind", ""), lag, limit, level, s.get("last_error")))
    return rows


def cost_view(cost: dict[str, Any], now: datetime) -> CostView:
    today = now.date().isoformat()
    days = sorted(({"key": d["key"], "requests": int(d.get("requests", 0)), "total_usd": float(d["total_usd"])}
                   for d in (cost.get("by") or {}).get("day") or []), key=lambda d: d["key"])
    current = next((d for d in days if d["key"][:10] == today), None)
    return CostView(
        since=cost.get("since", ""), requests=int(cost.get("requests", 0)), total_usd=float(cost.get("total_usd", 0.0)),
        per_request_usd=float(cost.get("per_request_usd", 0.0)),
        today_usd=current["total_usd"] if current else 0.0, today_requests=current["requests"] if current else 0,
        days=days, breakdown={k: float(v) for k, v in (cost.get("breakdown") or {}).items()},
    )


def objectives(slo: dict[str, Any]) -> list[Objective]:
    return [Objective(o["name"], o.get("description", ""), float(o["target"]), dict(o.get("windows") or {}))
            for o in slo.get("objectives") or []]


SEVERITY = {"critical": 0, "error": 1, "warning": 2}


def alert_rows(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Active alerts, the most severe first, then the most recent."""
    newest_first = sorted(alerts, key=lambda a: a.get("last_at") or "", reverse=True)
    return sorted(newest_first, key=lambda a: SEVERITY.get(a.get("severity", ""), 3))


def _optional(problems: dict[str, str], panel: str, read: Callable[[], T]) -> T | None:
    """One panel's figures, or None with the reason kept for that panel; a daemon that went away still raises.

    A panel is a boundary: whatever goes wrong reading or computing it (a route this daemon does not
    have, a method this client lacks, a figure that does not parse) shows in that panel alone.
    """
    try:
        return read()
    except TransientError:
        raise
    except NotFound as exc:  # from a panel's route: this daemon does not serve it (an older ctx)
        problems[panel] = f"not available: {exc}"
    except CtxError as exc:
        problems[panel] = str(exc)
    except Exception as exc:  # boundary: one panel's failure must not blank the others
        log.warning("dashboard panel %s failed", panel, exc_info=True)
        problems[panel] = f"unexpected {type(exc).__name__}: {exc}"
    return None


@dataclass
class Slow:
    """The last reading of the panels that scan days of traces (cost, SLOs), kept between refreshes."""

    at: datetime | None = None
    cost: CostView | None = None
    objectives: list[Objective] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)

    def due(self, now: datetime, every: float = SLOW_S) -> bool:
        return self.at is None or (now - self.at).total_seconds() >= every


def fetch(client: Client, now: datetime, limit: int = TRACE_LIMIT, slow: Slow | None = None,
          force: bool = False) -> Board:
    """Read everything the dashboard shows, through the one client (daemon or this process).

    ``status`` must answer (it is the dashboard's liveness check); every other panel that cannot be
    read is listed in ``problems`` and the rest still show. With ``slow``, the cost and SLO panels
    are read again only every ``SLOW_S`` (or with ``force``) and shown from it in between.

    Raises:
        TransientError: the daemon is not answering; the caller shows it and tries again later.
        CtxError: the status itself could not be read.
    """
    from ctx.api import operations as ops
    from ctx.api.inputs import AlertsIn, CostIn, TracesIn

    status = client.call(ops.STATUS)
    problems: dict[str, str] = {}
    traces: list[dict[str, Any]] = _optional(
        problems, "traces", lambda: list(client.call(ops.TRACES, TracesIn(limit=limit)))) or []
    series = _optional(problems, "latency", lambda: latency_by_minute(traces, now)) or []
    rps = _optional(problems, "latency", lambda: request_rate(traces, now, limit=limit)) or 0.0
    slow = slow if slow is not None else Slow()
    if force or slow.due(now):
        read: dict[str, str] = {}
        slow.cost = _optional(read, "cost", lambda: cost_view(client.call(ops.COST, CostIn(since="7d")), now))
        slow.objectives = _optional(read, "slo", lambda: objectives(client.call(ops.SLO))) or []
        slow.problems, slow.at = read, now
    problems.update(slow.problems)
    return Board(
        fetched_at=now.isoformat(timespec="seconds"), mode=client.mode, home=str(status.get("home") or ""),
        traces=traces, latency=series, rps=rps,
        requests=sum(m.count for m in series),
        cache=_optional(problems, "cache", lambda: cache_rates(status.get("assembly"), traces)) or [],
        breakers=_optional(problems, "breakers", lambda: breaker_rows(status)) or [],
        freshness=_optional(problems, "freshness", lambda: freshness_rows(status.get("sources") or [], now)) or [],
        cost=slow.cost, objectives=slow.objectives,
        alerts=_optional(problems, "alerts",
                         lambda: alert_rows(client.call(ops.ALERTS, AlertsIn(limit=ALERT_LIMIT, active=True)))) or [],
        problems=problems,
    )


# --- one trace ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceDetail:
    trace: dict[str, Any]  # the full trace as client.replay returns it
    blocks: list[dict[str, Any]]  # kept candidates, in the order they were packed
    dropped: list[dict[str, Any]]  # candidates left out, with the reason
    degradations: list[dict[str, Any]]  # everything that was not served as asked (provider-level ones first)
    timings: list[tuple[str, float]]
    checksum: str  # sha256 of the stored bytes
    size: int  # bytes of the stored context
    verified: bool  # the bytes replay returned hash to the checksum stored with the trace


def trace_detail(trace: dict[str, Any]) -> TraceDetail:
    """A trace as the detail screen shows it; the replay check re-hashes the exact bytes replay returned."""
    data = trace.get("context", "").encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    candidates = trace.get("candidates") or []
    degradations = sorted(trace.get("degradations") or [], key=lambda d: bool(d.get("chunk_id")))
    timings = [(k.removesuffix("_ms"), float(v)) for k, v in (trace.get("timings") or {}).items()]
    return TraceDetail(
        trace=trace, blocks=[c for c in candidates if c.get("kept")],
        dropped=[c for c in candidates if not c.get("kept")], degradations=degradations, timings=timings,
        checksum=digest, size=len(data), verified=digest == trace.get("context_sha256"),
    )
