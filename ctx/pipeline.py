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
from ctx.ingest.source import FetchContext
from ctx.ingest.validate import validate
from ctx.models import Document, Record, Rejected
from ctx.process.chunking import Chunker
from ctx.process.embedding import CachedEmbedder
from ctx.process.tokens import count_tokens
from ctx.store.catalog import Catalog, DocumentWrite, now_iso
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

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.sources)

    def totals(self) -> dict[str, Any]:
        keys = ("new", "changed", "unchanged", "deleted", "quarantined", "chunks_written", "chunks_embedded")
        return {k: sum(getattr(s, k) for s in self.sources) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "model_id": self.model_id, "ok": self.ok,
            "seconds": round(self.seconds, 3), "embed_seconds": round(self.embed_seconds, 3),
            "totals": self.totals(), "sources": [asdict(s) for s in self.sources], "warnings": self.warnings,
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

    def process(self, doc: Document, version: int) -> DocumentWrite:
        chunks = self.chunker.chunk(doc.id, doc.text)
        return DocumentWrite(
            doc=doc, version=version, summary=self.summarize(doc.title, doc.text), chunks=chunks,
            token_count=count_tokens(doc.text, self.encoding),
        )


class IngestRun:
    def __init__(self, catalog: Catalog, vectors: VectorStore | None, embedder: CachedEmbedder | None,
                 processor: Processor, run_id: str, progress: Progress | None = None) -> None:
        self.catalog = catalog
        self.vectors = vectors
        self.embedder = embedder
        self.processor = processor
        self.run_id = run_id
        self.progress = progress or Progress()

    def sync_source(self, name: str, kind: Any, settings: Any, context: FetchContext) -> SourceSummary:
        summary = SourceSummary(name)
        started = time.perf_counter()
        self.progress.source_started(name)
        existing = self.catalog.existing(name)
        seen: set[str] = set()
        batch: list[DocumentWrite] = []
        try:
            for item in _guarded(kind.fetch(settings, context), name):
                self.progress.advance()
                key = item.key
                if key in seen:
                    self._quarantine(summary, name, key, f"duplicate record id {key!r} in this run", None)
                    continue
                seen.add(key)
                if isinstance(item, Rejected):
                    self._quarantine(summary, name, key, item.reason, item.raw)
                    continue
                doc = validate(item, name, settings)
                if isinstance(doc, str):
                    self._quarantine(summary, name, key, doc, _preview(item))
                    continue
                old = existing.get(key)
                if old is not None and old.content_hash == doc.content_hash:
                    summary.unchanged += 1
                    continue
                if old is None:
                    summary.new += 1
                else:
                    summary.changed += 1
                batch.append(self.processor.process(doc, (old.version + 1) if old else 1))
                if len(batch) >= BATCH_DOCS:
                    self._store(batch, summary)
                    batch = []
            self._store(batch, summary)
            if settings.mode == "mirror":
                gone = [old.id for key, old in existing.items() if key not in seen]
                if gone:
                    self.progress.phase(f"{name}: removing {len(gone)} deleted documents")
                    self._drop_vectors(self.catalog.delete_documents(gone))
                    summary.deleted = len(gone)
        except SourceError as exc:
            # What was written stays (it is valid); deletions are skipped since the listing is incomplete.
            self._store(batch, summary)
            summary.error = str(exc)
        summary.seconds = time.perf_counter() - started
        self.progress.source_finished(name, summary.error is not None)
        return summary

    def _quarantine(self, summary: SourceSummary, source: str, key: str, reason: str, raw: str | None) -> None:
        self.catalog.quarantine(self.run_id, source, key, reason, raw)
        summary.quarantined += 1

    def _store(self, batch: list[DocumentWrite], summary: SourceSummary) -> None:
        if not batch:
            return
        chunks = [c for w in batch for c in w.chunks]
        vectors = None
        if self.embedder is not None and self.vectors is not None and chunks:
            before = self.embedder.embedded
            done = 0

            def embedded(n: int) -> None:
                nonlocal done
                done += n
                self.progress.phase(f"embedding {done}/{len(chunks)} chunks of this batch")

            self.progress.phase(f"embedding {len(chunks)} chunks")
            vectors = self.embedder.embed_hashed([(c.content_hash, c.text) for c in chunks], embedded)
            summary.chunks_embedded += self.embedder.embedded - before
        replaced = self.catalog.write_documents(self.run_id, batch)
        summary.chunks_written += len(chunks)
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
