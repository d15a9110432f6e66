"""The SQLite catalog (via sqlite-utils): sources, documents and their versions, chunks + FTS5,
quarantine, ingest runs and traces. It is the source of truth every other tier is checked against."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ctx.ingest.values import printable
from ctx.models import Chunk, Document
from ctx.store import private
from ctx.store.schema import migrations

SYNC_RETENTION_DAYS = 8  # the sync ledger's history: the 7-day SLO window and a day to spare


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class Existing:
    id: str
    content_hash: str
    version: int
    processed_with: str | None = None


@dataclass(slots=True)
class DocumentWrite:
    """A new or changed document with everything processing produced for it."""

    doc: Document
    version: int
    summary: str
    chunks: list[Chunk]
    token_count: int
    processed_with: str | None = None  # the fingerprint of the chunking and enrichment that made the chunks


class Catalog:
    """One connection per thread, so the daemon's request threads read side by side (WAL gives each
    statement a consistent snapshot) while writes go through whichever single thread owns them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600 before SQLite opens it: SQLite creates the -wal and -shm files with the database's mode.
        private.create_private(path)
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Database] = []
        self.db.enable_wal()
        migrations.apply(self.db)

    @property
    def db(self) -> Database:
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            # check_same_thread=False only so close() can close every thread's connection at shutdown;
            # each connection is still used by the one thread that opened it.
            conn = sqlite3.connect(self.path, check_same_thread=False)
            db = Database(conn)
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, crash-safe
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # --- sources and runs -------------------------------------------------------------------

    def upsert_source(self, row: dict[str, Any]) -> None:
        self.db.table("sources").upsert(row, pk="name", alter=False)

    def source_rows(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.db.table("sources").rows}

    def record_sync(self, source: str, job_id: str, at: str, ok: bool, last_success: str | None,
                    limit_s: float) -> None:
        """One finished sync in the ledger, with how long the source had then gone without a good one.

        ``lag_s`` is None for a source's first sync (there is no earlier success to measure from).
        """
        lag = None
        if last_success:
            lag = round((datetime.fromisoformat(at) - datetime.fromisoformat(last_success)).total_seconds(), 3)
        self.db.table("syncs").insert({"source": source, "job_id": job_id, "at": at, "ok": int(ok), "lag_s": lag,
                                       "limit_s": limit_s})
        # Kept a day past the longest SLO window: a source synced every few seconds writes thousands a day.
        cutoff = (datetime.fromisoformat(at) - timedelta(days=SYNC_RETENTION_DAYS)).isoformat(timespec="milliseconds")
        self.db.execute("delete from syncs where at < ?", [cutoff])

    # --- documents and chunks ---------------------------------------------------------------

    def existing(self, source: str) -> dict[str, Existing]:
        rows = self.db.execute(
            "select key, id, content_hash, version, processed_with from documents where source = ?", [source]
        ).fetchall()
        return {r[0]: Existing(*r[1:]) for r in rows}

    def existing_keys(self, source: str, keys: list[str]) -> dict[str, Existing]:
        out: dict[str, Existing] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            for key, *rest in self.db.execute(
                "select key, id, content_hash, version, processed_with from documents where source = ? and key in "
                "(%s)" % ",".join("?" * len(part)), [source, *part],
            ):
                out[key] = Existing(*rest)
        return out

    def last_versions(self, doc_ids: list[str]) -> dict[str, int]:
        """The highest version ever stored per document: kept in document_versions or archived."""
        out: dict[str, int] = {}
        for i in range(0, len(doc_ids), 400):
            part = doc_ids[i : i + 400]
            marks = ",".join("?" * len(part))
            for doc_id, version in self.db.execute(
                f"select doc_id, max(version) from (select doc_id, version from document_versions where doc_id in "
                f"({marks}) union all select doc_id, version from archived_versions where doc_id in ({marks})) "
                "group by doc_id", [*part, *part]):
                out[doc_id] = int(version)
        return out

    def write_documents(self, run_id: str, writes: list[DocumentWrite]) -> list[str]:
        """Write documents, their versions and chunks in one transaction; returns replaced chunk ids."""
        stamp = now_iso()
        ids = [w.doc.id for w in writes]
        with self.db.atomic():
            old = self._chunk_ids_of(ids)
            self._delete_chunks_of(ids)
            self.db.table("documents").upsert_all(
                (
                    {
                        "id": w.doc.id, "source": w.doc.source, "key": w.doc.key, "tenant": w.doc.tenant,
                        "title": w.doc.title, "format": w.doc.format, "content_hash": w.doc.content_hash,
                        "version": w.version, "summary": w.summary, "token_count": w.token_count,
                        "chunk_count": len(w.chunks), "metadata": json.dumps(w.doc.metadata, default=str),
                        "updated_at": stamp, "run_id": run_id, "processed_with": w.processed_with,
                    }
                    for w in writes
                ),
                pk="id",
            )
            self.db.execute(
                "update documents set created_at = ? where created_at is null and id in (%s)"
                % ",".join("?" * len(ids)), [stamp, *ids],
            )
            self.db.table("document_versions").insert_all(
                (
                    {
                        "doc_id": w.doc.id, "version": w.version, "source": w.doc.source, "key": w.doc.key,
                        "content_hash": w.doc.content_hash, "title": w.doc.title, "text": w.doc.text,
                        "metadata": json.dumps(w.doc.metadata, default=str), "run_id": run_id,
                        "created_at": stamp, "tenant": w.doc.tenant, "format": w.doc.format,
                    }
                    for w in writes
                ),
                pk=("doc_id", "version"),
                replace=True,
            )
            self.db.table("chunks").insert_all(
                (
                    {
                        "id": c.id, "doc_id": c.doc_id, "source": w.doc.source, "tenant": w.doc.tenant,
                        "title": w.doc.title, "version": w.version, "ordinal": c.ordinal,
                        "heading": " › ".join(c.heading_path),
                        "text": c.text, "start": c.start, "end": c.end, "token_count": c.token_count,
                        "heading_path": json.dumps(c.heading_path), "content_hash": c.content_hash,
                        "run_id": run_id,
                    }
                    for w in writes
                    for c in w.chunks
                ),
                pk="id",
                batch_size=500,
            )
        new = {c.id for w in writes for c in w.chunks}
        return [cid for cid in old if cid not in new]

    def delete_documents(self, doc_ids: list[str]) -> list[str]:
        """Remove documents and their chunks (FTS follows by trigger); versions stay for lineage."""
        if not doc_ids:
            return []
        stamp = now_iso()
        with self.db.atomic():
            old = self._chunk_ids_of(doc_ids)
            self._delete_chunks_of(doc_ids)
            marks = ",".join("?" * len(doc_ids))
            self.db.execute(
                f"update document_versions set deleted_at = ? where deleted_at is null and doc_id in ({marks})",
                [stamp, *doc_ids],
            )
            self.db.execute(f"delete from documents where id in ({marks})", doc_ids)
        return old

    def _chunk_ids_of(self, doc_ids: list[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            out += [r[0] for r in self.db.execute(
                "select id from chunks where doc_id in (%s)" % ",".join("?" * len(part)), part
            )]
        return out

    def _delete_chunks_of(self, doc_ids: list[str]) -> None:
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            self.db.execute("delete from chunks where doc_id in (%s)" % ",".join("?" * len(part)), part)

    def data_versions(self) -> dict[str, int]:
        """Per source, a number that changes with every document write: part of every cache key."""
        return dict(self.db.execute("select source, version from data_versions").fetchall())

    def recent_documents(self, source: str, match: dict[str, str], tenant: str | None, limit: int,
                         time_field: str | None = None) -> list[dict[str, Any]]:
        """The newest documents of ``source`` whose metadata fields equal ``match`` (e.g. a user's events),
        newest first (by the metadata field ``time_field`` when given, else by when they were stored),
        with their text. Tenant rules as in retrieval: the tenant's and untenanted ones."""
        where = ["d.source = ?"]
        args: list[Any] = [source]
        for name, value in match.items():
            where.append("json_extract(d.metadata, ?) = ?")
            args += ["$." + json.dumps(name), value]
        where.append("(d.tenant is null or d.tenant = ?)" if tenant else "d.tenant is null")
        args += [tenant] if tenant else []
        order = "json_extract(d.metadata, ?) desc," if time_field else ""
        rows = self.db.execute(
            "select d.key, d.title, v.text, d.metadata, d.created_at, d.version, d.tenant from documents d "
            "join document_versions v on v.doc_id = d.id and v.version = d.version "
            f"where {' and '.join(where)} order by {order} d.created_at desc, d.rowid desc limit ?",
            [*args, *([f"$.{json.dumps(time_field)}"] if time_field else []), limit],
        ).fetchall()
        return [{"key": r[0], "title": r[1], "text": r[2], "metadata": json.loads(r[3] or "{}"),
                 "created_at": r[4], "version": r[5], "tenant": r[6]} for r in rows]

    def data_fingerprint(self) -> tuple[str, int]:
        """sha256 over every document's source, key and content hash, and how many documents that is.

        What an index holds, independent of how it is chunked or embedded: a version's side index of the
        same documents has the same fingerprint, while any ingest that changes, adds or removes a document
        changes it. Data version counters cannot say this: they count one home's writes, and a side index
        built later counts its own.
        """
        digest = hashlib.sha256()
        count = 0
        for source, key, content_hash in self.db.execute(
                "select source, key, content_hash from documents order by source, key"):
            digest.update(json.dumps([source, key, content_hash]).encode())
            digest.update(b"\n")
            count += 1
        return digest.hexdigest(), count

    def chunk_count(self) -> int:
        return int(self.db.execute("select count(*) from chunks").fetchone()[0])

    def has_tenants(self) -> bool:
        """Whether any chunk belongs to a tenant; if none does, tenant filters can be skipped."""
        return bool(self.db.execute("select exists(select 1 from chunks where tenant is not null)").fetchone()[0])

    def chunk_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("select id from chunks")}

    def chunks_for_embedding(self, chunk_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            yield from self.db.query(
                "select id, doc_id, source, tenant, version, content_hash, text from chunks where id in (%s)"
                % ",".join("?" * len(part)), part,
            )

    # --- quarantine ---------------------------------------------------------------------------

    def quarantine(self, run_id: str, source: str, record_id: str, reason: str, raw: str | None) -> None:
        # What is quarantined is often the very text no UTF-8 writer takes (a lone surrogate): kept escaped.
        record_id, reason, raw = printable(record_id), printable(reason), printable((raw or "")[:2000])
        stamp = now_iso()
        self.db.execute(
            "insert into quarantine (run_id, source, record_id, reason, raw, created_at, last_seen_at, seen) "
            "values (?, ?, ?, ?, ?, ?, ?, 1) on conflict (source, record_id, reason) do update set "
            "run_id = excluded.run_id, raw = excluded.raw, last_seen_at = excluded.last_seen_at, seen = seen + 1",
            [run_id, source, record_id, reason, raw, stamp, stamp],
        )

    def quarantined(self, source: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, params = ("where source = ?", [source]) if source else ("", [])
        return list(self.db.query(
            "select id, run_id, source, record_id, reason, raw, created_at, last_seen_at, seen "
            f"from quarantine {where} order by last_seen_at desc, id desc limit ?", [*params, limit],
        ))

    # --- counts for status ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        q = {
            "documents": "select count(*) from documents",
            "chunks": "select count(*) from chunks",
            "versions": "select count(*) from document_versions",
            "quarantined": "select count(*) from quarantine",
            "traces": "select count(*) from traces",
            "runs": "select count(*) from ingest_runs",
        }
        return {name: self.db.execute(sql).fetchone()[0] for name, sql in q.items()}

    def per_source_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for source, docs, chunks in self.db.execute(
            "select source, count(*), coalesce(sum(chunk_count), 0) from documents group by source"
        ):
            out[source] = {"documents": docs, "chunks": chunks, "quarantined": 0}
        for source, n in self.db.execute("select source, count(*) from quarantine group by source"):
            out.setdefault(source, {"documents": 0, "chunks": 0, "quarantined": 0})["quarantined"] = n
        return out
