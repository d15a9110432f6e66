"""The cold tier: superseded document versions move from the catalog to compressed JSON-lines files."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ctx.store.catalog import Catalog

ARCHIVE_DIR = "archive"
SUFFIX = ".jsonl.gz"
# A file no manifest row names is removed only when older than this: it may belong to a pass of
# another process that has written its file and not committed yet.
ORPHAN_GRACE_S = 3600.0
COLUMNS = ("doc_id", "version", "source", "key", "content_hash", "title", "text", "metadata", "run_id",
           "created_at", "deleted_at", "tenant", "format")
BATCH = 500
_LOCK = threading.Lock()  # one pass at a time in this process (two job workers may finish together)

# When a version stopped being the newest one: the next version's creation, or the document's deletion.
SUPERSEDED_SQL = """
select doc_id, version, superseded_at from (
  select doc_id, version, case
      when next_at is null then deleted_at
      when deleted_at is null or next_at < deleted_at then next_at
      else deleted_at end as superseded_at
  from (select doc_id, version, deleted_at,
               lead(created_at) over (partition by doc_id order by created_at, version) as next_at
        from document_versions)
) where superseded_at is not null and superseded_at <= ?
"""


@dataclass
class ArchivePass:
    """What one pass did, and what the archive holds after it."""

    moved: int = 0
    file: str | None = None
    bytes_before: int = 0  # the moved versions as uncompressed JSON lines
    bytes_after: int = 0  # the file written for them
    orphans_removed: int = 0
    archived: int = 0
    files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def archive_dir(home: Path) -> Path:
    return home / ARCHIVE_DIR


def run_pass(catalog: Catalog, home: Path, keep: float, write: Callable[[Callable[[], Any]], Any],
             now: datetime | None = None) -> ArchivePass:
    """Move every version superseded more than ``keep`` seconds ago to one new archive file.

    The file is complete on disk (fsynced, renamed) before the transaction that records it in the
    manifest and deletes the rows commits, so a crash at any point loses nothing: before the commit
    the rows are still in the catalog and the file is an orphan, removed by a later pass.
    """
    cutoff = ((now or datetime.now(UTC)) - timedelta(seconds=keep)).isoformat(timespec="milliseconds")
    with _LOCK:
        result = ArchivePass(orphans_removed=_remove_orphans(catalog, home))
        due = catalog.db.execute(SUPERSEDED_SQL, [cutoff]).fetchall()
        if due:
            _move(catalog, home, due, write, result)
        result.archived, result.files = catalog.db.execute(
            "select count(*), count(distinct file) from archived_versions").fetchone()
    return result


def _move(catalog: Catalog, home: Path, due: list[tuple[str, int, str]], write: Callable[[Callable[[], Any]], Any],
          result: ArchivePass) -> None:
    folder = archive_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"versions-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}{SUFFIX}"
    temp = folder / f".tmp-{name}"
    superseded = {(doc_id, version): at for doc_id, version, at in due}
    written: list[dict[str, Any]] = []
    with open(temp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            for row in _rows(catalog, list(superseded)):
                line = (json.dumps({**row, "superseded_at": superseded[(row["doc_id"], row["version"])]},
                                   ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
                out.write(line)
                result.bytes_before += len(line)
                written.append({k: row[k] for k in ("doc_id", "version", "source", "key", "tenant", "created_at",
                                                    "deleted_at")})
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(temp, folder / name)
    _fsync_dir(folder)

    def tx() -> int:
        with catalog.db.atomic():
            moved = []
            for row in written:
                # Only the row that was written out: a version rewritten since (a re-created document) stays.
                cursor = catalog.db.execute(
                    "delete from document_versions where doc_id = ? and version = ? and created_at = ?",
                    [row["doc_id"], row["version"], row["created_at"]])
                if cursor.rowcount:
                    moved.append({**row, "file": name, "superseded_at": superseded[(row["doc_id"], row["version"])]})
            record_manifest(catalog, moved)
        return len(moved)

    result.moved = write(tx)
    if result.moved:
        result.file, result.bytes_after = name, (folder / name).stat().st_size
    else:  # another pass moved them first: nothing names this file
        (folder / name).unlink(missing_ok=True)
        result.bytes_before = 0


def record_manifest(catalog: Catalog, rows: list[dict[str, Any]]) -> None:
    """Name the file that now holds each moved version (inside the pass's transaction)."""
    catalog.db.table("archived_versions").insert_all(rows, pk=("doc_id", "version"), replace=True)


def _rows(catalog: Catalog, keys: list[tuple[str, int]]) -> Iterator[dict[str, Any]]:
    for i in range(0, len(keys), BATCH):
        part = keys[i : i + BATCH]
        where = " or ".join("(doc_id = ? and version = ?)" for _ in part)
        cursor = catalog.db.execute(f"select {', '.join(COLUMNS)} from document_versions where {where}",
                                    [v for key in part for v in key])
        for values in cursor.fetchall():
            yield dict(zip(COLUMNS, values, strict=True))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_orphans(catalog: Catalog, home: Path) -> int:
    """Delete archive files (and temp files) that no manifest row names, once they are old enough."""
    folder = archive_dir(home)
    if not folder.is_dir():
        return 0
    named = {r[0] for r in catalog.db.execute("select distinct file from archived_versions")}
    removed = 0
    for path in orphans(folder, named):
        if time.time() - path.stat().st_mtime > ORPHAN_GRACE_S:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def orphans(folder: Path, named: set[str]) -> list[Path]:
    """Files in the archive folder that no manifest row names (left by a pass that did not commit)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name not in named
                  and (p.name.endswith(SUFFIX) or p.name.startswith(".tmp-")))


def read_file(path: Path, wanted: Iterable[tuple[str, int]] | None = None) -> Iterator[dict[str, Any]]:
    """The versions an archive file holds (only ``wanted`` ones when given), metadata still JSON text."""
    keys = set(wanted) if wanted is not None else None
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if keys is None or (row["doc_id"], row["version"]) in keys:
                yield row


def read_versions(catalog: Catalog, home: Path, keys: Iterable[tuple[str, int]]) -> Iterator[dict[str, Any]]:
    """Versions by (doc_id, version), from the catalog or, when archived, from their files."""
    wanted = set(keys)
    for row in _rows(catalog, list(wanted)):
        wanted.discard((row["doc_id"], row["version"]))
        yield row
    files: dict[str, set[tuple[str, int]]] = {}
    listed = list(wanted)
    for i in range(0, len(listed), BATCH):
        part = listed[i : i + BATCH]
        where = " or ".join("(doc_id = ? and version = ?)" for _ in part)
        for doc_id, version, file in catalog.db.execute(
                f"select doc_id, version, file from archived_versions where {where}", [v for k in part for v in k]):
            files.setdefault(file, set()).add((doc_id, version))
    for file, part_keys in sorted(files.items()):
        yield from read_file(archive_dir(home) / file, part_keys)


def read_version(catalog: Catalog, home: Path, doc_id: str, version: int) -> dict[str, Any] | None:
    """One version's text, title and metadata (a dict), wherever it lives now; None if it never existed."""
    for row in read_versions(catalog, home, [(doc_id, version)]):
        return {**row, "metadata": json.loads(row["metadata"] or "{}")}
    return None
