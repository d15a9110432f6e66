"""Time travel: the data as it was at a past moment, as a snapshot index that ``--as-of`` assembles against."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ctx.errors import UserError
from ctx.models import Document
from ctx.settings import parse_duration
from ctx.store.archive import read_versions
from ctx.store.catalog import Catalog
from ctx.store.writer import InlineWriter
from ctx.versions.ports import Closeable, History, SnapshotTarget

if TYPE_CHECKING:
    from ctx.pipeline import JobRunner, SourceSummary
    from ctx.store.catalog import DocumentWrite

S = TypeVar("S", bound=Closeable)

_RELATIVE = re.compile(r"^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)\s*$")
OPEN_SNAPSHOTS = 8  # snapshots kept open per target (each has its own assembler thread)
KEEP_ON_DISK = 16  # snapshot indexes kept under HOME/cache/asof/, the most recently used ones
_LOCK = threading.Lock()

# For each document, its newest version created at or before T, unless it was deleted at T; archived
# versions count as well (a version in both tables, during a pass, is read from the catalog).
AT_SQL = """
with every as (
  select doc_id, version, source, tenant, created_at, deleted_at from document_versions where created_at <= :t
  union all
  select a.doc_id, a.version, a.source, a.tenant, a.created_at, a.deleted_at from archived_versions a
  where a.created_at <= :t
    and not exists (select 1 from document_versions v where v.doc_id = a.doc_id and v.version = a.version)
), ranked as (
  select *, row_number() over (partition by doc_id order by created_at desc, version desc) as n from every
)
select doc_id, version, source, tenant from ranked
where n = 1 and (deleted_at is null or deleted_at > :t)
order by doc_id
"""


def parse_as_of(value: str, now: datetime | None = None) -> str:
    """An ISO-8601 time (UTC unless it has an offset) or an age (``2h``, ``3d``) → the catalog's UTC stamp form.

    Raises:
        UserError: for a value that is neither, or a time in the future.
    """
    now = now or datetime.now(UTC)
    text = value.strip()
    try:
        if _RELATIVE.match(text):
            when = now - timedelta(seconds=parse_duration(text))
        else:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        raise UserError(f"--as-of {value!r} is before any data could exist") from None
    except ValueError:
        raise UserError(f"--as-of {value!r}: expected an ISO-8601 time (2025-01-31T12:00:00Z) or an age "
                        "such as 2h or 3d") from None
    if when > now + timedelta(seconds=1):  # a second of slack for clocks read in two processes
        raise UserError(f"--as-of {value!r} is in the future")
    return when.isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Pick:
    doc_id: str
    version: int
    source: str


def picks_at(catalog: Catalog, when: str, tenanted: set[str]) -> list[Pick]:
    """The (document, version) pairs that made up the data at ``when``.

    A version without a tenant from a source that has a ``tenant_field`` is left out: it was written
    before versions recorded their tenant, and a document of unknown tenant must never be served.
    """
    rows = catalog.db.execute(AT_SQL, {"t": when}).fetchall()
    return [Pick(d, v, s) for d, v, s, tenant in rows if tenant is not None or s not in tenanted]


def snapshot(target: SnapshotTarget, as_of: str, history: History, opened: MutableMapping[str, S],
             open_at: Callable[[Path], S]) -> S:
    """``target`` (its settings, embedder and processing) over ``history``'s data as it was at ``as_of``.

    The snapshot index is built once per set of versions (chunked and embedded by the normal ingest
    code; the embedding cache makes unchanged chunks free) under HOME/cache/asof/HASH/, and kept open:
    ``open_at(directory)`` opens it (the caller's factory), and ``opened`` (the target's open variants,
    closed with it) keeps it under ``asof-HASH``.
    """
    tenanted = {name for name, cfg in target.settings.sources.items() if cfg.tenant_field}
    picks = picks_at(history.catalog, as_of, tenanted)
    key = _key(target, picks)
    with _LOCK:
        found = opened.get(f"asof-{key}")
        if found is not None:
            return found
        root = history.home / "cache" / "asof"
        directory = root / key
        with _file_lock(root / f"{key}.lock"):
            if not (directory / "ready").exists():
                shutil.rmtree(directory, ignore_errors=True)  # a build that died half-way
                _build(target, history, directory, picks)
            (directory / "ready").touch()
        found = open_at(directory)
        _remember(opened, f"asof-{key}", found)
        _prune(root, keep={k.removeprefix("asof-") for k in opened if k.startswith("asof-")})
    return found


def _key(target: SnapshotTarget, picks: list[Pick]) -> str:
    data = {"index": target.settings.fingerprint("chunking", "embedding", "enrichment"),
            "versions": [[p.doc_id, p.version] for p in picks]}
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()[:16]


def _documents(history: History, picks: list[Pick]) -> Iterator[tuple[Document, int]]:
    for row in read_versions(history.catalog, history.home, [(p.doc_id, p.version) for p in picks]):
        yield Document(row["doc_id"], row["source"], row["key"], row["text"] or "", row["title"] or "",
                       row["format"] or "text", row["tenant"], json.loads(row["metadata"] or "{}"),
                       row["content_hash"]), row["version"]


def _build(target: SnapshotTarget, history: History, directory: Path, picks: list[Pick]) -> None:
    from ctx.pipeline import BATCH_DOCS, JobRunner

    catalog = Catalog(directory / "catalog.db")
    try:
        vectors = None
        if target.embedder is not None:
            from ctx.store.vectors import ChromaVectors

            vectors = ChromaVectors(directory / "vectors", target.embedder.model_id)
        # Its own file, so its own writer: a snapshot build never queues behind (or blocks) the home's writes.
        runner = JobRunner(catalog, vectors, target.embedder, target.processor(), InlineWriter())
        summaries: dict[str, SourceSummary] = {}
        batch: list[DocumentWrite] = []
        for doc, version in _documents(history, picks):
            batch.append(runner.processor.process(doc, version))
            if len(batch) >= BATCH_DOCS:
                _store(runner, batch, summaries)
                batch = []
        _store(runner, batch, summaries)
    finally:
        catalog.close()
    (directory / "ready").write_text(json.dumps({"versions": len(picks)}))


def _store(runner: JobRunner, batch: list[DocumentWrite], summaries: dict[str, SourceSummary]) -> None:
    from ctx.pipeline import SourceSummary

    by_source: dict[str, list[DocumentWrite]] = {}
    for write in batch:
        by_source.setdefault(write.doc.source, []).append(write)
    for source, writes in by_source.items():
        runner.write_batch("asof", writes, summaries.setdefault(source, SourceSummary(source)))


def _remember(opened: MutableMapping[str, S], name: str, found: S) -> None:
    """Kept with the target's open variants (closed with it); the oldest snapshots beyond a few close."""
    opened[name] = found
    names = [k for k in opened if k.startswith("asof-")]
    for old in names[:-OPEN_SNAPSHOTS]:
        opened.pop(old).close()


def _prune(root: Path, keep: set[str]) -> None:
    """Remove the least recently used snapshot indexes beyond a few (they are rebuilt when asked for)."""
    ready = sorted((p.parent for p in root.glob("*/ready")), key=lambda d: (d / "ready").stat().st_mtime)
    for directory in ready[:-KEEP_ON_DISK]:
        if directory.name not in keep:
            shutil.rmtree(directory, ignore_errors=True)
            (root / f"{directory.name}.lock").unlink(missing_ok=True)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Two processes asking for the same snapshot: one builds it, the other waits and opens it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
