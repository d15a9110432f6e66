"""Service level objectives: each objective's SLI over 1h, 1d and 7d, with its error budget and burn rate.

Every objective counts good events out of all events in a window, read from what the catalog already
holds: traces for requests (latency, availability, relevance) and the sync ledger for freshness. A
request rerun from a trace (``replay_of``) is an operator's check, not traffic, and is left out.

The error budget is the share of events allowed to be bad (``1 - target``). The burn rate is how fast a
window spent it: 1.0 spends exactly the budget, 10 would exhaust a 30-day budget in 3 days. What is left
is ``1 - burn rate``: below 0 the window overspent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ctx.observe.stats import percentile
from ctx.observe.traces import MISSING
from ctx.settings import Objective, Settings
from ctx.store.catalog import Catalog

WINDOWS = (("1h", 3600), ("1d", 86400), ("7d", 7 * 86400))
_REQUESTS = "created_at >= ? and created_at <= ? and replay_of is null"

# (catalog, start, end) -> (good, total, extra figures of the window)
Counter = Callable[[Catalog, str, str], tuple[int, int, dict[str, Any]]]


def slo_report(catalog: Catalog, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Every enabled objective of ``[slo]`` over each window, newest data up to ``now``."""
    end = now or datetime.now(UTC)
    slo = settings.slo
    polled = sorted(name for name, cfg in settings.sources.items() if cfg.kind != "events")
    definitions: list[tuple[str, Objective, str, Counter]] = [
        ("latency", slo.latency, f"requests assembled within {slo.latency.threshold * 1000:g} ms",
         _latency(slo.latency.threshold * 1000)),
        ("availability", slo.availability, "requests whose critical blocks were all present", _availability),
        ("freshness", slo.freshness, "syncs of polled sources that landed within the source's max_staleness",
         _freshness(polled)),
        ("relevance", slo.relevance, "requests whose kept retrieval blocks have a mean cosine similarity of "
         f"at least {slo.relevance.min_similarity:g} to the query", _relevance(slo.relevance.min_similarity)),
    ]
    objectives = []
    for name, objective, description, count in definitions:
        if not objective.enabled:
            continue
        windows = {}
        for label, seconds in WINDOWS:
            good, total, extra = count(catalog, _iso(end - timedelta(seconds=seconds)), _iso(end))
            windows[label] = {**window_figures(good, total, objective.target), **extra}
        objectives.append({"name": name, "description": description, "target": objective.target,
                           "windows": windows})
    return {"at": _iso(end), "objectives": objectives}


def window_figures(good: int, total: int, target: float) -> dict[str, Any]:
    """SLI, error budget left and burn rate of one window; all None when the window saw no events."""
    if not total:
        return {"good": 0, "total": 0, "sli": None, "budget_left": None, "burn_rate": None, "met": None}
    sli = good / total
    burn = (1 - sli) / (1 - target)
    return {"good": good, "total": total, "sli": round(sli, 6), "budget_left": round(1 - burn, 6),
            "burn_rate": round(burn, 6), "met": sli >= target}


def _latency(threshold_ms: float) -> Counter:
    def count(catalog: Catalog, start: str, end: str) -> tuple[int, int, dict[str, Any]]:
        values = [float(v or 0.0) for (v,) in catalog.db.execute(
            f"select coalesce(total_ms, json_extract(timings, '$.total_ms')) from traces where {_REQUESTS}",
            [start, end])]
        good = sum(1 for v in values if v <= threshold_ms)
        extra = {f"p{q}_ms": round(percentile(values, q), 2) if values else None for q in (50, 95, 99)}
        return good, len(values), extra

    return count


def _availability(catalog: Catalog, start: str, end: str) -> tuple[int, int, dict[str, Any]]:
    # ``complete`` is TraceRecord.complete; traces older than that column are judged the same way here.
    kinds = ",".join("?" * len(MISSING))
    row = catalog.db.execute(
        f"select count(*), coalesce(sum(coalesce(complete, coalesce(status, 'ok') = 'ok' and not exists ("
        f"select 1 from json_each(traces.degradations) d where json_extract(d.value, '$.criticality') = 'critical' "
        f"and json_extract(d.value, '$.kind') in ({kinds})))), 0) from traces where {_REQUESTS}",
        [*MISSING, start, end],
    ).fetchone()
    return int(row[1]), int(row[0]), {}


def _freshness(sources: list[str]) -> Counter:
    def count(catalog: Catalog, start: str, end: str) -> tuple[int, int, dict[str, Any]]:
        if not sources:
            return 0, 0, {}
        names = ",".join("?" * len(sources))
        row = catalog.db.execute(
            f"select count(*), coalesce(sum(ok = 1 and (lag_s is null or lag_s <= limit_s)), 0), "
            f"coalesce(max(case when ok = 1 then lag_s / limit_s end), 0) "
            f"from syncs where at >= ? and at <= ? and source in ({names})", [start, end, *sources],
        ).fetchone()
        return int(row[1]), int(row[0]), {"worst_lag_share": round(float(row[2]), 4) if row[0] else None}

    return count


def _relevance(min_similarity: float) -> Counter:
    def count(catalog: Catalog, start: str, end: str) -> tuple[int, int, dict[str, Any]]:
        row = catalog.db.execute(
            f"select count(*), coalesce(sum(relevance >= ?), 0), avg(relevance) from traces "
            f"where {_REQUESTS} and relevance is not null", [min_similarity, start, end],
        ).fetchone()
        return int(row[1]), int(row[0]), {"mean": round(float(row[2]), 4) if row[2] is not None else None}

    return count


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
