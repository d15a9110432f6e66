"""Jobs and the durable queue in the catalog: what was asked for, what was fetched, what is left to process.

Delivery is at least once: an item stays ``pending`` until the transaction that writes its document
also marks it ``done``. Processing is idempotent (documents are keyed by source and key, and an
unchanged content hash is skipped), so an item delivered twice after a crash changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ctx.errors import NotFound
from ctx.pids import alive
from ctx.store.catalog import Catalog, now_iso

KEEP_IDLE_SYNCS = 200


@dataclass(slots=True)
class SourceState:
    fetched: bool
    finalized: bool
    summary: dict[str, Any] | None
    error: str | None


class JobStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # --- writes (run them through the workspace's writer) -----------------------------------------

    def create(self, job_id: str, kind: str, trigger: str, sources: list[str], model_id: str) -> None:
        self.catalog.db.table("ingest_runs").insert(
            {"id": job_id, "kind": kind, "trigger": trigger, "created_at": now_iso(), "status": "queued",
             "sources": json.dumps(sources), "model_id": model_id}
        )

    def start(self, job_id: str) -> None:
        self.catalog.db.execute(
            "update ingest_runs set status = 'running', pid = ?, started_at = coalesce(started_at, ?) where id = ?",
            [os.getpid(), now_iso(), job_id],
        )

    def enqueue(self, job_id: str, source: str, items: list[tuple[str, bytes, str]]) -> None:
        """Queue (key, payload, content hash) items; a key queued before in this job is re-opened only if it changed."""
        stamp = now_iso()
        db = self.catalog.db
        with db.atomic():
            db.conn.executemany(
                "insert into queue (job_id, source, key, payload, payload_hash, state, enqueued_at) "
                "values (?, ?, ?, ?, ?, 'pending', ?) on conflict (job_id, source, key) do update set "
                "payload = excluded.payload, payload_hash = excluded.payload_hash, state = 'pending' "
                "where queue.payload_hash != excluded.payload_hash",
                [(job_id, source, key, payload, digest, stamp) for key, payload, digest in items],
            )

    def mark_seen(self, job_id: str, source: str, items: list[tuple[str, str]]) -> None:
        """(key, content hash) this job saw unchanged: nothing to process, but the mirror sync must not
        delete them, and a resumed fetch must not count them twice."""
        stamp = now_iso()
        db = self.catalog.db
        with db.atomic():
            db.conn.executemany(
                "insert into queue (job_id, source, key, payload, payload_hash, state, enqueued_at) "
                "values (?, ?, ?, x'', ?, 'done', ?) on conflict (job_id, source, key) do update set "
                "payload = x'', payload_hash = excluded.payload_hash, state = 'done'",
                [(job_id, source, key, digest, stamp) for key, digest in items],
            )

    def queued(self, job_id: str, source: str, keys: list[str]) -> dict[str, str]:
        """key → content hash of what this job already queued or saw (a fetch resumed after a crash)."""
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            out.update(self.catalog.db.execute(
                "select key, payload_hash from queue where job_id = ? and source = ? and key in (%s)"
                % ",".join("?" * len(part)), [job_id, source, *part],
            ).fetchall())
        return out

    def set_source(self, job_id: str, source: str, *, fetched: bool | None = None, finalized: bool | None = None,
                   summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        row: dict[str, Any] = {"job_id": job_id, "source": source}
        if fetched is not None:
            row["fetched"] = int(fetched)
        if finalized is not None:
            row["finalized"] = int(finalized)
        if summary is not None:
            row["summary"] = json.dumps(summary)
        if error is not None:
            row["error"] = error
        self.catalog.db.table("job_sources").upsert(row, pk=("job_id", "source"))

    def ack(self, seqs: list[int]) -> None:
        for i in range(0, len(seqs), 500):
            part = seqs[i : i + 500]
            self.catalog.db.execute(
                "update queue set state = 'done' where seq in (%s)" % ",".join("?" * len(part)), part
            )

    def finish(self, job_id: str, status: str, summary: dict[str, Any], error: str | None) -> None:
        self.catalog.db.table("ingest_runs").update(
            job_id,
            {"finished_at": now_iso(), "status": status, "counts": json.dumps(summary.get("totals", {})),
             "summary": json.dumps(summary), "seconds": summary.get("seconds"),
             "embed_seconds": summary.get("embed_seconds"), "error": error},
        )
        # Every item is applied by now; the queue only ever holds work in flight.
        self.catalog.db.execute("delete from queue where job_id = ?", [job_id])
        self._prune_idle_syncs()

    def _prune_idle_syncs(self) -> None:
        """Scheduled and watched syncs that changed nothing are kept only as the newest few: a realtime
        source polled every few seconds would otherwise add tens of thousands of rows a day. Jobs that
        wrote anything stay, since documents name the job that wrote them (lineage)."""
        idle = (
            "select id from ingest_runs where trigger in ('schedule', 'watch') and status = 'ok' "
            "and coalesce(json_extract(counts, '$.new'), 0) + coalesce(json_extract(counts, '$.changed'), 0) "
            "+ coalesce(json_extract(counts, '$.deleted'), 0) + coalesce(json_extract(counts, '$.quarantined'), 0) = 0 "
            f"order by id desc limit -1 offset {KEEP_IDLE_SYNCS}"
        )
        with self.catalog.db.atomic():
            self.catalog.db.execute(f"delete from job_sources where job_id in ({idle})")
            self.catalog.db.execute(f"delete from ingest_runs where id in ({idle})")

    def abandon_dead(self, keep_kinds: tuple[str, ...]) -> tuple[list[str], bool]:
        """Marks jobs of dead processes interrupted, except kinds whose data exists only in the queue
        (pushed events): those are returned to be resumed. Also says whether a dead process had a job
        running (it may have died between a SQLite commit and the Chroma write that follows)."""
        resume = []
        crashed = False
        for job_id, pid, kind, status in self.catalog.db.execute(
            "select id, pid, kind, status from ingest_runs where status in ('queued', 'running') order by id"
        ).fetchall():
            if pid is not None and alive(pid):
                continue
            crashed |= status == "running"
            if kind in keep_kinds:
                resume.append(job_id)
                continue
            self.catalog.db.table("ingest_runs").update(job_id, {"status": "interrupted", "finished_at": now_iso()})
            self.catalog.db.execute("delete from queue where job_id = ?", [job_id])
        return resume, crashed

    # --- reads ---------------------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        rows = list(self.catalog.db.query("select * from ingest_runs where id = ?", [job_id]))
        if not rows:
            raise NotFound(f"no job with id {job_id!r}")
        return self._view(rows[0])

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.catalog.db.query("select * from ingest_runs order by id desc limit ?", [limit])
        return [self._view(r) for r in rows]

    def unfinished(self) -> list[str]:
        """Jobs not yet done whose process is gone (or never started): the daemon resumes these."""
        return [
            job_id for job_id, pid in self.catalog.db.execute(
                "select id, pid from ingest_runs where status in ('queued', 'running') order by id"
            ).fetchall()
            if pid is None or pid == os.getpid() or not alive(pid)
        ]

    def source_state(self, job_id: str, source: str) -> SourceState:
        row = self.catalog.db.execute(
            "select fetched, finalized, summary, error from job_sources where job_id = ? and source = ?",
            [job_id, source],
        ).fetchone()
        if row is None:
            return SourceState(False, False, None, None)
        return SourceState(bool(row[0]), bool(row[1]), json.loads(row[2]) if row[2] else None, row[3])

    def pending(self, job_id: str, source: str, limit: int) -> list[tuple[int, str, bytes, str]]:
        """(seq, key, payload, content hash) of the next items to process, in the order they were queued."""
        return [
            (r[0], r[1], r[2], r[3]) for r in self.catalog.db.execute(
                "select seq, key, payload, payload_hash from queue where job_id = ? and source = ? "
                "and state = 'pending' order by seq limit ?", [job_id, source, limit],
            )
        ]

    def depth(self) -> int:
        return int(self.catalog.db.execute("select count(*) from queue where state = 'pending'").fetchone()[0])

    def gone_documents(self, job_id: str, source: str) -> list[str]:
        """Documents of ``source`` this job's complete listing no longer contains (mirror deletions)."""
        return [
            r[0] for r in self.catalog.db.execute(
                "select id from documents where source = ? and key not in "
                "(select key from queue where job_id = ? and source = ?)", [source, job_id, source],
            )
        ]

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        progress = {
            r["source"]: {
                "fetched": bool(r["fetched"]), "finalized": bool(r["finalized"]), "error": r["error"],
                **(json.loads(r["summary"]) if r["summary"] else {}),
            }
            for r in self.catalog.db.query("select * from job_sources where job_id = ?", [row["id"]])
        }
        pending = self.catalog.db.execute(
            "select count(*) from queue where job_id = ? and state = 'pending'", [row["id"]]
        ).fetchone()[0]
        return {
            "id": row["id"], "kind": row.get("kind") or "ingest", "trigger": row.get("trigger") or "cli",
            "status": row["status"], "sources": json.loads(row["sources"] or "[]"),
            "created_at": row.get("created_at") or row["started_at"], "started_at": row["started_at"],
            "finished_at": row["finished_at"], "error": row["error"], "pending": pending, "progress": progress,
            "summary": json.loads(row["summary"]) if row.get("summary") else None,
        }

