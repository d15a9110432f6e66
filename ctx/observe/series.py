"""Per-bucket series of the alerting metrics, from trace samples and the sync ledger (pure: no I/O, no clock).

Buckets are aligned to multiples of their width since the epoch, and only complete ones are judged:
the newest bucket ends at ``floor(now / width) * width``, so a bucket's value never changes once
judged (and can be cached), and evaluating twice within a bucket gives the same answer twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ctx.observe.stats import percentile

HITS = ("l1", "l2", "coalesced")  # served without building the context again
CACHEABLE = ("miss", *HITS)  # "off": caching is disabled, so it says nothing about the hit rate

TRACE_METRICS = ("latency_p95_ms", "latency_p99_ms", "tokens_per_request", "cost_per_request", "cache_hit_rate",
                 "request_rate", "error_rate")
METRICS = (*TRACE_METRICS, "staleness_ratio")
# The smallest spread each metric's z is computed with, in its own unit (see anomaly.Detector.floor).
FLOORS = {"latency_p95_ms": 1.0, "latency_p99_ms": 1.0, "tokens_per_request": 1.0, "cost_per_request": 1e-6,
          "cache_hit_rate": 0.02, "request_rate": 0.01, "error_rate": 0.01, "staleness_ratio": 0.05}


@dataclass(frozen=True)
class TraceSample:
    """What alerting reads of one trace (replays of old traces are left out before this)."""

    at: float  # epoch seconds
    ms: float
    tokens: int
    cost: float
    cache: str
    ok: bool


@dataclass
class BucketStats:
    """One bucket of requests, reduced to what every trace metric needs (complete buckets are cached)."""

    requests: int = 0
    ok: int = 0
    tokens: int = 0
    cost: float = 0.0
    cacheable: int = 0
    hits: int = 0
    p95_ms: float | None = None
    p99_ms: float | None = None
    _ms: list[float] = field(default_factory=list, repr=False)

    def add(self, s: TraceSample) -> None:
        self.requests += 1
        self._ms.append(s.ms)
        if s.ok:
            self.ok += 1
            self.tokens += s.tokens
            self.cost += s.cost
        if s.cache in CACHEABLE:
            self.cacheable += 1
            self.hits += s.cache in HITS

    def close(self) -> BucketStats:
        """Percentiles computed, the latencies themselves dropped: a cached hour holds a few numbers."""
        if self._ms:
            self.p95_ms, self.p99_ms = percentile(self._ms, 95), percentile(self._ms, 99)
        self._ms = []
        return self


def bucket_end(now: float, width: float) -> float:
    """The end of the newest complete bucket."""
    return round(math.floor(now / width) * width, 3)


def starts(end: float, width: float, count: int) -> list[float]:
    """Start times of the ``count`` buckets that end at ``end``, oldest first (to the ms: they are keys)."""
    return [round(end - (count - i) * width, 3) for i in range(count)]


def bucket_traces(samples: Iterable[TraceSample], first: float, width: float, count: int) -> list[BucketStats]:
    """Requests of ``count`` buckets from ``first`` on, each closed; samples outside are ignored."""
    buckets = [BucketStats() for _ in range(count)]
    for s in samples:
        i = math.floor((s.at - first) / width)
        if 0 <= i < count:
            buckets[i].add(s)
    return [b.close() for b in buckets]


def trace_value(b: BucketStats, metric: str, width: float, min_count: int) -> float | None:
    """The metric of one bucket, or None when the bucket has too few requests to say anything."""
    if metric == "request_rate":
        return b.requests / width
    if b.requests < min_count:
        return None
    if metric == "latency_p95_ms":
        return b.p95_ms
    if metric == "latency_p99_ms":
        return b.p99_ms
    if metric == "error_rate":
        return (b.requests - b.ok) / b.requests
    if metric == "cache_hit_rate":
        return b.hits / b.cacheable if b.cacheable >= min_count else None
    if not b.ok:
        return None
    if metric == "tokens_per_request":
        return b.tokens / b.ok
    if metric == "cost_per_request":
        return b.cost / b.ok
    raise ValueError(f"not a trace metric: {metric}")


def trace_series(buckets: Sequence[BucketStats | None], metric: str, width: float,
                 min_count: int) -> list[float | None]:
    """One value per bucket. A request rate of 0 is a value, but only once traffic has been seen:
    the empty buckets before a home's first request are no data, not a quiet time."""
    values = [trace_value(b, metric, width, min_count) if b is not None else None for b in buckets]
    if metric == "request_rate":
        seen = next((i for i, b in enumerate(buckets) if b is not None and b.requests), len(values))
        values = [None if i < seen or buckets[i] is None else v for i, v in enumerate(values)]
    return values


@dataclass(frozen=True)
class SyncBucket:
    """One source's successful syncs within one bucket."""

    max_lag: float | None = None  # the longest wait a sync of the bucket ended (staleness just before it)
    last_ok: float | None = None  # epoch seconds of its last successful sync


def staleness_series(buckets: Sequence[SyncBucket], first: float, width: float, limit: float,
                     prior_ok: float | None, first_attempt: float | None) -> list[float | None]:
    """The worst staleness of each bucket as a share of the source's limit (1.0: at the limit).

    Staleness at t is t minus the last successful sync at or before t. Within a bucket it is worst
    either at the bucket's end or just before a sync that reset it (that sync's lag). A source
    that has never synced successfully ages from its first attempt; before any attempt there is no data.
    """
    out: list[float | None] = []
    last_ok = prior_ok
    for i, b in enumerate(buckets):
        end = first + (i + 1) * width
        if b.last_ok is not None:
            last_ok = b.last_ok if last_ok is None else max(last_ok, b.last_ok)
        since = last_ok if last_ok is not None else first_attempt
        if since is None or since > end:
            out.append(None)
            continue
        worst = max(end - since, b.max_lag or 0.0)
        out.append(worst / limit if limit > 0 else None)
    return out
