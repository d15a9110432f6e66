"""The ingest run: sources → validation and dedup → chunking, enrichment, embedding → every store tier.

Order of writes is what makes a crash safe: SQLite (the truth) commits a batch first, then Chroma
follows. A crash in between leaves vectors missing or orphaned, which ``ctx doctor`` detects by
comparing ids and repairs from SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ctx.errors import CtxError, SourceError
from ctx.ingest.queue import decode, encode
from ctx.ingest.source import FetchContext
from ctx.ingest.validate import validate
from ctx.models import Document, Record, Rejected
from ctx.process.chunking import Chunker
from ctx.process.embedding import CachedEmbedder
from ctx.process.tokens import count_tokens
from ctx.store.catalog import Catalog, DocumentWrite, Existing, now_iso
from ctx.store.jobs import JobStore
from ctx.store.vectors import VectorStore, metadata_for

BATCH_DOCS = 64


@dataclass
class SourceSummary:
    source: str
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    tokens_embedded: int = 0  # tokens of the chunks that went through the model (cache hits cost nothing)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class IngestSummary:
    run_id: str
    model_id: str
    sources: list[SourceSummary] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    embedding_price: float = 0.0  # USD per 1K tokens embedded ([pricing] embedding)

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.sources)

    def usd(self, tokens: int) -> float:
        return round(tokens / 1000 * self.embedding_price, 8)

    def totals(self) -> dict[str, Any]:
        keys = ("new", "changed", "unchanged", "deleted", "quarantined", "chunks_written", "chunks_embedded",
                "tokens_embedded")
        totals: dict[str, Any] = {k: sum(getattr(s, k) for s in self.sources) for k in keys}
        totals["embedding_usd"] = self.usd(totals["tokens_embedded"])
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "model_id": self.model_id, "ok": self.ok,
            "seconds": round(self.seconds, 3), "embed_seconds": round(self.embed_seconds, 3),
            "totals": self.totals(),
            "sources": [{**asdict(s), "embedding_usd": self.usd(s.tokens_embedded)} for s in self.sources],
            "warnings": self.warnings,
        }


class Progress:
    """What the ingest run reports while it works; the CLI draws a progress bar from it."""

    def source_started(self, name: str) -> None: ...
    def source_finished(self, name: str, failed: bool) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def phase(self, text: str) -> None: ...


@dataclass
class Processor:
    """Turns documents into what the stores hold; knows nothing of where documents came from."""

    chunker: Chunker
    summarize: Callable[[str, str], str]
    encoding: str
    fingerprint: str | None = None  # of the chunking and enrichment settings: stored with each document

    def process(self, doc: Document, version: int) -> DocumentWrite:
        chunks = self.chunker.chunk(doc.id, doc.text)
        return DocumentWrite(
            doc=doc, version=version, summary=self.summarize(doc.title, doc.text), chunks=chunks,
            token_count=count_tokens(doc.text, self.encoding), processed_with=self.fingerprint,
        )

    def same(self, old: Existing | None, doc: Document) -> bool:
        """Nothing to do: stored with this content, and chunked and enriched the way these settings would."""
        if old is None or old.content_hash != doc.content_hash:
            return False
        return old.processed_with is None or self.fingerprint is None or old.processed_with == self.fingerprint


class Stopped(Exception):
    """The process is shutting down: the job stopped between two batches and resumes from the queue."""


class JobRunner:
    """Runs one ingest job: per source, fetch into the durable queue, process what is queued, finalize.

    Fetching and processing interleave a batch at a time, so memory stays flat and the progress bar
    moves. Every SQLite write goes through ``write`` (the home's single writer); the slow parts
    (fetching, chunking, embedding) run on the caller's thread. Run again on the same job id after a
    crash, it picks up where the queue says it stopped.
    """

    def __init__(self, catalog: Catalog, vectors: VectorStore | None, embedder: CachedEmbedder | None,
                 processor: Processor, write: Callable[[Callable[[], Any]], Any],
                 progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> None:
        self.catalog = catalog
        self.jobs = JobStore(catalog)
        self.vectors = vectors
        self.embedder = embedder
        self.processor = processor
        self.write = write
        self.progress = progress or Progress()
        self.should_stop = should_stop or (lambda: False)

    def run_source(self, job_id: str, name: str, kind: Any, settings: Any, context: FetchContext) -> SourceSummary:
        state = self.jobs.source_state(job_id, name)
        summary = SourceSummary(**state.summary) if state.summary else SourceSummary(name)
        if state.finalized:
            return summary
        started = time.perf_counter() - summary.seconds
        self.progress.source_started(name)
        if not state.fetched:
            self._fetch(job_id, name, kind, settings, context, summary)
        else:
            summary.error = state.error
        self._process(job_id, name, summary)
        if settings.mode == "mirror" and summary.error is None:
            gone = self.jobs.gone_documents(job_id, name)
            if gone:
                self.progress.phase(f"{name}: removing {len(gone)} deleted documents")
                self._drop_vectors(self.write(lambda: self.catalog.delete_documents(gone)))
                summary.deleted = len(gone)
        summary.seconds = time.perf_counter() - started
        self.write(lambda: self._finalize(job_id, name, settings, summary))
        self.progress.source_finished(name, summary.error is not None)
        return summary

    def _finalize(self, job_id: str, name: str, settings: Any, summary: SourceSummary) -> None:
        with self.catalog.db.atomic():
            previous = self.catalog.source_rows().get(name)
            row = source_row(name, settings, summary, previous, settings.fingerprint())
            self.catalog.upsert_source(row)
            self.catalog.record_sync(name, job_id, row["last_sync_at"], summary.error is None,
                                     (previous or {}).get("last_success_at"), settings.staleness_limit)
            self.jobs.set_source(job_id, name, finalized=True, summary=asdict(summary))

    def _fetch(self, job_id: str, name: str, kind: Any, settings: Any, context: FetchContext,
               summary: SourceSummary) -> None:
        """Read the source, validate each record, and queue what is new or changed (quarantining the rest)."""
        resumed = self.jobs.source_state(job_id, name).summary is not None
        seen: set[str] = set()
        docs: list[Document] = []
        rejected: list[tuple[str, str, str | None]] = []

        def flush(fetched: bool = False, error: str | None = None) -> None:
            keys = [d.key for d in docs]
            existing = self.catalog.existing_keys(name, keys)
            todo: list[tuple[str, bytes, str]] = []
            unchanged: list[tuple[str, str]] = []
            for d in docs:
                if self.processor.same(existing.get(d.key), d):
                    unchanged.append((d.key, d.content_hash))
                else:
                    todo.append(encode(d))
            # A fetch resumed after a crash meets again what this job already counted: count it once.
            earlier = self.jobs.queued(job_id, name, keys) if resumed else {}
            summary.unchanged += sum(1 for key, digest in unchanged if earlier.get(key) != digest)
            summary.quarantined += len(rejected)
            bad = list(rejected)
            docs.clear()
            rejected.clear()

            def tx() -> None:
                with self.catalog.db.atomic():
                    self.jobs.enqueue(job_id, name, todo)
                    self.jobs.mark_seen(job_id, name, unchanged)
                    for key, reason, raw in bad:
                        self.catalog.quarantine(job_id, name, key, reason, raw)
                    self.jobs.set_source(job_id, name, fetched=fetched, error=error, summary=asdict(summary))

            self.write(tx)
            self._process(job_id, name, summary)
            if self.should_stop():
                raise Stopped(job_id)

        try:
            for item in _guarded(kind.fetch(settings, context), name):
                self.progress.advance()
                if item.key in seen:
                    rejected.append((item.key, f"duplicate record id {item.key!r} in this run", None))
                    continue
                seen.add(item.key)
                outcome = check(item, name, settings)
                if isinstance(outcome, Document):
                    docs.append(outcome)
                else:
                    rejected.append(outcome)
                if len(docs) + len(rejected) >= BATCH_DOCS:
                    flush()
        except SourceError as exc:
            # What was read is still processed (it is valid); deletions are skipped since the listing is incomplete.
            summary.error = str(exc)
        flush(fetched=True, error=summary.error)

    def _process(self, job_id: str, name: str, summary: SourceSummary) -> None:
        while items := self.jobs.pending(job_id, name, BATCH_DOCS):
            if self.should_stop():
                raise Stopped(job_id)
            existing = self.catalog.existing_keys(name, [key for _, key, _, _ in items])
            docs = [(decode(key, payload, content_hash), existing.get(key)) for _, key, payload, content_hash in items]
            # A document deleted and then recreated continues its numbering: version 1 again would overwrite
            # the first version of its history (kept for --as-of and lineage).
            history = self.catalog.last_versions([doc.id for doc, old in docs if old is None])
            writes: list[DocumentWrite] = []
            for doc, old in docs:
                if self.processor.same(old, doc):  # written by an earlier delivery of the same content
                    summary.unchanged += 1
                    continue
                if old is None:
                    summary.new += 1
                else:
                    summary.changed += 1
                version = old.version + 1 if old else history.get(doc.id, 0) + 1
                writes.append(self.processor.process(doc, version))
            self._store(job_id, writes, [seq for seq, _, _, _ in items], summary)

    def write_batch(self, job_id: str, batch: list[DocumentWrite], summary: SourceSummary) -> None:
        """Embed and store processed documents that did not come through the queue (an --as-of snapshot)."""
        self._store(job_id, batch, [], summary)

    def _store(self, job_id: str, batch: list[DocumentWrite], seqs: list[int], summary: SourceSummary) -> None:
        chunks = [c for w in batch for c in w.chunks]
        vectors = None
        if self.embedder is not None and self.vectors is not None and chunks:
            done = 0

            def embedded(n: int) -> None:
                nonlocal done
                done += n
                self.progress.phase(f"embedding {done}/{len(chunks)} chunks of this batch")

            self.progress.phase(f"embedding {len(chunks)} chunks")
            # What reached the model for this batch only: the embedder's own counters also move with the
            # queries a daemon embeds meanwhile.
            sent: list[str] = []
            vectors = self.embedder.embed_hashed([(c.content_hash, c.text) for c in chunks], embedded, sent)
            summary.chunks_embedded += len(sent)
            tokens = {c.content_hash: c.token_count for c in chunks}
            summary.tokens_embedded += sum(tokens[h] for h in sent)
        summary.chunks_written += len(chunks)

        def tx() -> list[str]:
            # The documents and the acks of their queue items commit together: never one without the other.
            with self.catalog.db.atomic():
                replaced = self.catalog.write_documents(job_id, batch) if batch else []
                self.jobs.ack(seqs)
                self.jobs.set_source(job_id, summary.source, summary=asdict(summary))
            return replaced

        replaced = self.write(tx)
        if vectors is not None and self.vectors is not None:
            metas = [
                metadata_for({"source": w.doc.source, "doc_id": w.doc.id, "tenant": w.doc.tenant, "version": w.version})
                for w in batch
                for _ in w.chunks
            ]
            self.vectors.upsert([c.id for c in chunks], np.stack(vectors), metas)
        self._drop_vectors(replaced)

    def _drop_vectors(self, chunk_ids: list[str]) -> None:
        if chunk_ids and self.vectors is not None:
            self.vectors.delete(chunk_ids)


def check(item: Record | Rejected, source: str, settings: Any) -> Document | tuple[str, str, str | None]:
    """A valid document, or (key, reason, raw preview) for quarantine."""
    if isinstance(item, Rejected):
        return item.key, item.reason, item.raw
    doc = validate(item, source, settings)
    return (item.key, doc, _preview(item)) if isinstance(doc, str) else doc


def _guarded(items: Iterator[Record | Rejected], name: str) -> Iterator[Record | Rejected]:
    """Turns a plugin's unexpected exception into a SourceError naming the source."""
    try:
        yield from items
    except CtxError:
        raise
    except Exception as exc:  # boundary: third-party source code
        raise SourceError(f"source {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _preview(record: Record) -> str:
    text = record.text
    if isinstance(text, bytes):
        text = text[:400].decode("utf-8", "replace")
    return (text or "")[:400]


def source_row(name: str, settings: Any, summary: SourceSummary | None, previous: dict[str, Any] | None,
               config_hash: str) -> dict[str, Any]:
    row = {
        "name": name, "kind": settings.kind, "config_hash": config_hash, "freshness": settings.freshness.value,
        "max_staleness": settings.staleness_limit, "criticality": settings.criticality.value,
        "mode": settings.mode,
    }
    if summary is not None:
        stamp = now_iso()
        row["last_sync_at"] = stamp
        row["last_error"] = summary.error
        row["last_success_at"] = stamp if summary.error is None else (previous or {}).get("last_success_at")
    return row
