"""The ingest service: jobs through the durable queue, run in this process or by the daemon's lanes."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from typing import Any

from ctx import plugins
from ctx.errors import NotFound, UserError
from ctx.ingest.source import FetchContext
from ctx.observe.traces import new_trace_id
from ctx.pipeline import IngestSummary, JobRunner, Processor, Progress, SourceSummary
from ctx.services import upkeep
from ctx.services.stores import NO_SOURCES, Stores
from ctx.settings import Settings
from ctx.store import private

log = logging.getLogger(__name__)


def processor_for(settings: Settings) -> Processor:
    """What turns documents into chunks and summaries under ``settings`` (ingest and --as-of snapshots)."""
    from ctx.process.chunking import Chunker

    chunking = settings.chunking
    summarizer = plugins.summarizers()[settings.enrichment.summarizer]  # name checked by settings
    return Processor(Chunker(chunking.max_tokens, chunking.overlap_tokens, chunking.encoding),
                     summarizer, chunking.encoding, settings.fingerprint("chunking", "enrichment"))


class IngestService:
    """Queue ingest jobs and run them to the end, healing what an interrupted run left behind."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        # Set when a job a dead process had started is found: the next job checks vectors id by id.
        self._crashed = False

    def check_sources(self, names: list[str] | None) -> list[str]:
        configured = self.stores.settings.sources
        if not configured:
            raise UserError(NO_SOURCES)
        unknown = [n for n in names or [] if n not in configured]
        if unknown:
            raise UserError(f"unknown source {unknown[0]!r} (configured: {', '.join(configured)})")
        return list(dict.fromkeys(names)) if names else list(configured)

    def submit(self, names: list[str] | None = None, trigger: str = "cli") -> str:
        """Queue an ingest job for ``names`` (default: every source); returns its id."""
        chosen = self.check_sources(names)
        job_id = new_trace_id()
        stores = self.stores
        stores.write(lambda: stores.jobs.create(job_id, "ingest", trigger, chosen, stores.model_id()))
        return job_id

    def ingest(self, names: list[str] | None = None, progress: Progress | None = None) -> IngestSummary:
        """Ingest in this process: queue a job and run it here, now."""
        resume, crashed = self.stores.write(lambda: self.stores.jobs.abandon_dead(keep_kinds=("events",)))
        self._crashed |= crashed
        for job_id in resume:
            self.run_job(job_id)  # pushed events exist only in the queue: finish them first
        return self.run_job(self.submit(names), progress)

    def push_events(self, source: str, events: list[Any]) -> tuple[str, int, int]:
        """Queue pushed records (e.g. user session events) for an append source.

        Returns (job id, events taken, of which quarantined): a bad event is kept in quarantine, not lost.
        """
        stores = self.stores
        settings = stores.settings
        cfg = settings.sources.get(source)
        if cfg is None:
            raise NotFound(f"unknown source {source!r} (configured: {', '.join(settings.sources) or 'none'})")
        kind = plugins.source_kinds()[cfg.kind]
        if cfg.mode != "append" or not hasattr(kind, "parse"):
            raise UserError(f"source {source!r} does not take pushed events (it needs mode = \"append\" and a kind "
                            "that parses events, such as events or jsonl)")
        if not events:
            raise UserError("no events given")
        from ctx.ingest.queue import encode
        from ctx.models import Document
        from ctx.pipeline import check

        job_id = new_trace_id()
        # Validated here, as a fetch would: the queue holds documents, and a bad event is quarantined at once.
        checked = [check(kind.parse(cfg, event, f"event:{job_id}:{i}"), source, cfg) for i, event in enumerate(events)]
        items = [encode(d) for d in checked if isinstance(d, Document)]
        rejected = [r for r in checked if not isinstance(r, Document)]

        def tx() -> None:
            with stores.catalog.db.atomic():
                stores.jobs.create(job_id, "events", "push", [source], stores.model_id())
                stores.jobs.enqueue(job_id, source, items)
                for key, reason, raw in rejected:
                    stores.catalog.quarantine(job_id, source, key, reason, raw)
                stores.jobs.set_source(job_id, source, fetched=True,
                                       summary=asdict(SourceSummary(source, quarantined=len(rejected))))

        stores.write(tx)
        return job_id, len(checked), len(rejected)

    def run_job(self, job_id: str, progress: Progress | None = None,
                source_lock: Callable[[str], AbstractContextManager[Any]] | None = None,
                should_stop: Callable[[], bool] | None = None) -> IngestSummary:
        """Run (or resume) a queued job to the end; safe to call again after a crash.

        ``source_lock`` keeps two jobs off one source at a time; ``should_stop`` ends the run between
        two batches (raising :class:`ctx.pipeline.Stopped`) when the process shuts down.
        """
        stores = self.stores
        settings = stores.settings
        job = stores.jobs.get(job_id)
        self._crashed |= job["status"] == "running"  # started by a process that died (or stopped): resumed
        processor = self.processor()
        summary = IngestSummary(job_id, stores.model_id(), embedding_price=settings.pricing.embedding)
        started = time.perf_counter()
        embed_before = stores.embedder.seconds if stores.embedder else 0.0
        stores.write(lambda: stores.jobs.start(job_id))
        runner = JobRunner(stores.catalog, stores.vectors, stores.embedder, processor, stores.write, progress,
                           should_stop)
        lock = source_lock or (lambda name: nullcontext())
        kinds = plugins.source_kinds()
        for name in job["sources"]:
            cfg = settings.sources.get(name)
            if cfg is None:  # removed from ctx.toml since the job was queued
                summary.sources.append(SourceSummary(name, error="no longer configured"))
                continue
            with lock(name):
                summary.sources.append(runner.run_source(job_id, name, kinds[cfg.kind], cfg,
                                                         FetchContext(name, stores.env)))
        summary.seconds = time.perf_counter() - started
        summary.embed_seconds = (stores.embedder.seconds if stores.embedder else 0.0) - embed_before
        self._heal(summary)
        if settings.archive.enabled:
            try:
                upkeep.archive(stores)
            except (OSError, sqlite3.Error) as exc:  # the job's data is written: a failed pass only waits
                log.warning("archive pass after job %s failed: %s", job_id, exc)
                summary.warnings.append(f"archiving superseded versions failed: {exc}")
        error = "; ".join(s.error for s in summary.sources if s.error) or None
        stores.write(lambda: stores.jobs.finish(job_id, "ok" if summary.ok else "partial", summary.to_dict(), error))
        # A job is where Chroma and the caches create files; in a process that keeps the default umask (an
        # application using ctx in-process) they are made private here (see ctx/store/private.py).
        private.tighten(stores.home)
        return summary

    def _heal(self, summary: IngestSummary) -> None:
        stores = self.stores
        if stores.vectors is not None and (self._crashed or stores.vectors.count() != stores.catalog.chunk_count()):
            # An earlier run died between its SQLite commit and its Chroma write: heal it now, from the truth.
            # Sizes alone miss replaced documents (as many orphan vectors as missing ones), so after a crash
            # the ids are compared.
            self._crashed = False
            repaired = upkeep.doctor(stores, repair=True, modes=False).repaired
            if repaired:
                summary.warnings.append(
                    "repaired drift left by an interrupted run: "
                    + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in repaired.items())
                )

    def processor(self) -> Processor:
        """What turns documents into chunks and summaries under these settings."""
        return processor_for(self.stores.settings)

    def close(self) -> None:
        """Close the stores: for an ingest that is the only service over them (a side index's build)."""
        self.stores.close()
