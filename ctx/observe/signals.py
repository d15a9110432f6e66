"""What the alert rules measure, read from the catalog: trace buckets and per-source sync buckets.

Complete trace buckets never change (a trace is stored as it is made), so they are kept in memory
once they are ``GRACE_S`` old: an evaluation every few seconds reads only the traces of the newest
bucket, not hours of history. The sync ledger is grouped per bucket in SQL, where it is small.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from ctx.observe.series import BucketStats, SyncBucket, TraceSample, bucket_traces, starts
from ctx.store.catalog import Catalog

GRACE_S = 60.0  # a bucket this far in the past holds every trace it will ever hold (deadlines are shorter)
KEEP_BUCKETS = 10_000  # per width, the most any rule reads (``history`` is capped there)
_EPOCH = "(julianday(at) - 2440587.5) * 86400.0"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


@dataclass(frozen=True)
class SourceSyncs:
    """One source's sync history over a span of buckets."""

    buckets: list[SyncBucket]
    prior_ok: float | None  # the last successful sync before the span
    first_attempt: float | None  # the first sync ever recorded, ok or not


class Signals:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._cache: dict[float, dict[float, BucketStats]] = {}  # width → bucket start → stats
        self._lock = threading.Lock()

    def trace_buckets(self, width: float, end: float, count: int, now: float) -> list[BucketStats]:
        """Request stats of the ``count`` buckets of ``width`` seconds that end at ``end``, oldest first.

        Replays (``replay_of``) are left out: a rerun of an old request says nothing about today's traffic.
        """
        wanted = starts(end, width, count)
        with self._lock:
            cache = self._cache.setdefault(width, {})
            # Rules of one width may read different spans: keep what the longest could ask for.
            for start in [s for s in cache if s < end - KEEP_BUCKETS * width]:
                del cache[start]
            missing = [s for s in wanted if s not in cache]
        fresh: dict[float, BucketStats] = {}
        if missing:
            first, span = missing[0], round((end - missing[0]) / width)
            fresh = dict(zip(starts(end, width, span), bucket_traces(self._samples(first, end), first, width, span),
                             strict=True))
            with self._lock:
                for start, stats in fresh.items():
                    if start + width <= now - GRACE_S:
                        cache[start] = stats
        with self._lock:
            return [fresh[s] if s in fresh else cache[s] for s in wanted]

    def _samples(self, first: float, end: float) -> list[TraceSample]:
        rows = self.catalog.db.execute(
            "select created_at, total_ms, case when total_ms is null then timings end, tokens, cost, cache, status "
            "from traces where created_at >= ? and created_at < ? and replay_of is null", [iso(first), iso(end)])
        out = []
        for created, total_ms, timings, tokens, cost, cache, status in rows:
            # Traces older than the total_ms column carry it in their timings only.
            ms = total_ms if total_ms is not None else json.loads(timings or "{}").get("total_ms") or 0.0
            out.append(TraceSample(epoch(created), float(ms), int(tokens or 0), float(cost or 0.0), cache or "off",
                                   (status or "ok") == "ok"))
        return out

    def sync_buckets(self, sources: list[str], width: float, end: float, count: int) -> dict[str, SourceSyncs]:
        """Per source: the longest lag and the last successful sync of each bucket, and what came before."""
        first = end - count * width
        db = self.catalog.db
        grid: dict[str, list[SyncBucket]] = {s: [SyncBucket()] * count for s in sources}
        for source, index, lag, last in db.execute(
            f"select source, cast(({_EPOCH} - ?) / ? as integer) as b, max(case when ok = 1 then lag_s end), "
            "max(case when ok = 1 then at end) from syncs where at >= ? and at < ? group by source, b",
            [first, width, iso(first), iso(end)],
        ):
            if source in grid and 0 <= index < count:
                grid[source][index] = SyncBucket(lag, epoch(last) if last else None)
        prior = dict(db.execute("select source, max(at) from syncs where ok = 1 and at < ? group by source",
                                [iso(first)]).fetchall())
        attempts = dict(db.execute("select source, min(at) from syncs group by source").fetchall())
        rows = self.catalog.source_rows()
        out = {}
        for source in sources:
            buckets = grid[source]
            prior_ok = epoch(prior[source]) if prior.get(source) else None
            # Homes older than the ledger know a source's last success only from its sources row.
            known = (rows.get(source) or {}).get("last_success_at")
            if known:
                at = epoch(known)
                if at < first:
                    prior_ok = max(prior_ok or at, at)
                elif at < end:
                    i = int((at - first) // width)
                    b = buckets[i]
                    buckets[i] = SyncBucket(b.max_lag, max(b.last_ok or at, at))
            first_attempt = epoch(attempts[source]) if attempts.get(source) else None
            out[source] = SourceSyncs(buckets, prior_ok, first_attempt)
        return out
