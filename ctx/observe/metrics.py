"""Prometheus metrics for one workspace: request figures the daemon records, and state read at scrape time.

Each daemon builds its own registry (not prometheus_client's global one), so several apps in one
process, as in tests, never collide. Figures that live in the catalog (freshness, queue depth,
counts) are read when scraped, so they can never drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ASSEMBLY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0)


class StateCollector(Collector):
    """Per-source freshness against its threshold, queue depth and store sizes, read from the workspace."""

    def __init__(self, sources: Callable[[], list[dict[str, Any]]], counts: Callable[[], dict[str, int]],
                 queue_depth: Callable[[], int]) -> None:
        self.sources = sources
        self.counts = counts
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        staleness = GaugeMetricFamily("ctx_source_staleness_seconds",
                                      "Seconds since the source's last successful sync", labels=["source", "freshness"])
        threshold = GaugeMetricFamily("ctx_source_max_staleness_seconds",
                                      "The source's staleness threshold", labels=["source", "freshness"])
        stale = GaugeMetricFamily("ctx_source_stale", "1 when the source is past its threshold or never synced",
                                  labels=["source", "freshness"])
        documents = GaugeMetricFamily("ctx_source_documents", "Documents held per source", labels=["source"])
        for s in self.sources():
            labels = [s["name"], s["freshness"]]
            if s["staleness_s"] is not None:
                staleness.add_metric(labels, s["staleness_s"])
            threshold.add_metric(labels, s["max_staleness_s"])
            stale.add_metric(labels, 1.0 if s["stale"] else 0.0)
            documents.add_metric([s["name"]], s["documents"])
        yield from (staleness, threshold, stale, documents)
        yield GaugeMetricFamily("ctx_queue_depth", "Fetched records waiting to be processed", value=self.queue_depth())
        store = GaugeMetricFamily("ctx_store_rows", "Rows held in the catalog", labels=["table"])
        for table, n in self.counts().items():
            store.add_metric([table], n)
        yield store


_STATES = {"closed": 0, "half_open": 1, "open": 2}


class AssemblyCollector(Collector):
    """Breaker states and cache counters, read from the assembler at scrape time."""

    def __init__(self, state: Callable[[], dict[str, Any] | None]) -> None:
        # Not called ``describe``: the registry would take it for Collector.describe().
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self.state()
        if state is None:
            return
        breaker = GaugeMetricFamily("ctx_breaker_state", "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
                                    labels=["provider"])
        opened = CounterMetricFamily("ctx_breaker_opened", "Times a provider's breaker opened", labels=["provider"])
        for name, b in state["breakers"].items():
            breaker.add_metric([name], _STATES[b["state"]])
            opened.add_metric([name], b["opened"])
        lookups = CounterMetricFamily("ctx_cache_lookups", "Cache lookups by level and result (hit_l1, hit_l2, "
                                      "expired, miss)", labels=["level", "result"])
        coalesced = CounterMetricFamily("ctx_cache_coalesced", "Requests that joined a computation already "
                                        "running (single-flight)", labels=["level"])
        refreshes = CounterMetricFamily("ctx_cache_refreshes", "Background refreshes: early (XFetch) or hot",
                                        labels=["level", "why"])
        stale = CounterMetricFamily("ctx_cache_stale_served", "Expired entries served because the provider failed",
                                    labels=["level"])
        entries = GaugeMetricFamily("ctx_cache_entries", "Entries held per cache tier", labels=["tier"])
        for level, c in state["cache"].items():
            for result in ("hit_l1", "hit_l2", "expired", "miss"):
                lookups.add_metric([level, result], c.get(result, 0))
            coalesced.add_metric([level], c.get("coalesced", 0))
            stale.add_metric([level], c.get("stale_served", 0))
            for why in ("early", "hot"):
                refreshes.add_metric([level, why], c.get(f"refresh_{why}", 0))
        for tier, n in state["cache"]["provider"].get("entries", {}).items():
            entries.add_metric([tier], n)  # both levels share the tiers
        yield from (breaker, opened, lookups, coalesced, refreshes, stale, entries)


class AlertsCollector(Collector):
    """Firing anomaly alerts per severity, read from the alerts table at scrape time."""

    def __init__(self, active_counts: Callable[[], dict[str, int]]) -> None:
        self.active_counts = active_counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily("ctx_alerts_active", "Anomaly alerts firing now (`ctx alerts`)",
                                   labels=["severity"])
        for severity, n in self.active_counts().items():
            active.add_metric([severity], n)
        yield active


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ctx_http_requests", "API requests served", ["route", "method", "status"],
                                registry=self.registry)
        self.request_seconds = Histogram("ctx_http_request_duration_seconds", "API request latency", ["route"],
                                         registry=self.registry)
        self.assembly_seconds = Histogram("context_assembly_duration_seconds", "Time to assemble one context",
                                          ["pipeline", "version"], buckets=ASSEMBLY_BUCKETS, registry=self.registry)
        self.assembly_tokens = Histogram("ctx_assembly_tokens", "Tokens per assembled context",
                                         buckets=(100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000),
                                         registry=self.registry)
        self.provider_seconds = Histogram("ctx_provider_duration_seconds", "Time each provider took in a request",
                                          ["provider", "status"], buckets=ASSEMBLY_BUCKETS, registry=self.registry)
        # Fractions of a cent per request, up to a few dollars for a long context on an expensive model.
        self.assembly_cost = Histogram("ctx_assembly_cost_usd", "USD per assembled context (context tokens, query "
                                       "embedding, provider calls)", ["recipe"],
                                       buckets=(0.0, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
                                       registry=self.registry)
        self.context_cache = Counter("ctx_context_cache", "Assembled contexts by how they were obtained",
                                     ["recipe", "cache"], registry=self.registry)
        self.jobs = Counter("ctx_jobs", "Ingest jobs finished", ["kind", "trigger", "status"], registry=self.registry)
        self.ingested = Counter("ctx_ingest_records", "Records processed by ingest jobs", ["source", "outcome"],
                                registry=self.registry)
        self.ingest_chunks = Counter("ctx_ingest_chunks", "Chunks written by ingest jobs, and of those the ones the "
                                     "model embedded (cache misses)", ["source", "stage"], registry=self.registry)
        self.ingest_tokens_embedded = Counter("ctx_ingest_tokens_embedded", "Tokens sent to the embedding model",
                                              ["source"], registry=self.registry)
        self.ingest_cost = Counter("ctx_ingest_embedding_cost_usd", "USD spent embedding at ingest", ["source"],
                                   registry=self.registry)
        self.events = Counter("ctx_events_accepted", "Events pushed through the API", ["source"],
                              registry=self.registry)

    def watch_state(self, collector: Collector) -> None:
        self.registry.register(collector)

    def watch_workspace(self, ws: Any) -> None:
        """The state a workspace holds, read at scrape time: freshness, queue, store sizes, breakers and
        caches (once it has assembled), firing alerts. The daemon and ``ctx metrics`` watch the same."""
        self.watch_state(StateCollector(ws.sources, ws.catalog.counts, ws.jobs.depth))
        self.watch_state(AssemblyCollector(ws.describe_assembly))  # None until a request built the assembler
        self.watch_state(AlertsCollector(ws.alert_counts))

    def record_assembly(self, out: dict[str, Any], seconds: float) -> None:
        # version: the configuration version (ctx versions) that served it, so an A/B split shows per variant
        self.assembly_seconds.labels(out["recipe"], out.get("version") or "").observe(seconds)
        self.assembly_tokens.observe(out["tokens"])
        self.assembly_cost.labels(out["recipe"]).observe(out["cost"])
        self.context_cache.labels(out["recipe"], out["cache"]).inc()
        if out["cache"] in ("miss", "off"):  # a cached context asked no provider
            for name, p in out["providers"].items():
                self.provider_seconds.labels(name, p["status"]).observe(p["ms"] / 1000)

    def record_job(self, job: dict[str, Any]) -> None:
        self.jobs.labels(job["kind"], job["trigger"], job["status"]).inc()
        for name, state in (job.get("progress") or {}).items():
            for outcome in ("new", "changed", "unchanged", "deleted", "quarantined"):
                if state.get(outcome):
                    self.ingested.labels(name, outcome).inc(state[outcome])
            for stage, key in (("written", "chunks_written"), ("embedded", "chunks_embedded")):
                if state.get(key):
                    self.ingest_chunks.labels(name, stage).inc(state[key])
            if state.get("tokens_embedded"):
                self.ingest_tokens_embedded.labels(name).inc(state["tokens_embedded"])
        for s in (job.get("summary") or {}).get("sources", []):
            if s.get("embedding_usd"):
                self.ingest_cost.labels(s["source"]).inc(s["embedding_usd"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
