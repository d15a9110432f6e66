"""Prometheus metrics for one workspace: request figures the daemon records, and state read at scrape time.

Each daemon builds its own registry (not prometheus_client's global one), so several apps in one
process, as in tests, never collide. Figures that live in the catalog (freshness, queue depth,
counts) are read when scraped, so they can never drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
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
        self.jobs = Counter("ctx_jobs", "Ingest jobs finished", ["kind", "trigger", "status"], registry=self.registry)
        self.ingested = Counter("ctx_ingest_records", "Records processed by ingest jobs", ["source", "outcome"],
                                registry=self.registry)
        self.events = Counter("ctx_events_accepted", "Events pushed through the API", ["source"],
                              registry=self.registry)

    def watch_state(self, collector: StateCollector) -> None:
        self.registry.register(collector)

    def record_job(self, job: dict[str, Any]) -> None:
        self.jobs.labels(job["kind"], job["trigger"], job["status"]).inc()
        for name, state in (job.get("progress") or {}).items():
            for outcome in ("new", "changed", "unchanged", "deleted", "quarantined"):
                if state.get(outcome):
                    self.ingested.labels(name, outcome).inc(state[outcome])

    def render(self) -> bytes:
        return generate_latest(self.registry)
