"""Drift between the tiers: SQLite is the truth; Chroma and FTS are checked against it and repaired."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctx.process.embedding import CachedEmbedder
from ctx.store.catalog import Catalog
from ctx.store.vectors import VectorStore, metadata_for


@dataclass
class DoctorReport:
    checks: list[dict[str, Any]] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def add(self, name: str, ok: bool, detail: str, **extra: Any) -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail, **extra})

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": self.checks, "repaired": self.repaired}


def diagnose(catalog: Catalog, vectors: VectorStore | None, embedder: CachedEmbedder | None,
             repair: bool = False) -> DoctorReport:
    report = DoctorReport()
    integrity = catalog.db.execute("PRAGMA quick_check").fetchone()[0]
    report.add("sqlite integrity", integrity == "ok", integrity)
    try:
        catalog.db.execute("insert into chunks_fts(chunks_fts) values('integrity-check')")
        report.add("fts index", True, "in step with chunks")
    except Exception as exc:  # sqlite reports a corrupt index as an error
        report.add("fts index", False, f"out of step: {exc}")
        if repair:
            catalog.db.table("chunks").rebuild_fts()
            report.repaired["fts"] = 1
    if vectors is None or embedder is None:
        report.add("vectors", True, "lexical-only (embedder = none): no vector tier to check")
        return report
    truth = catalog.chunk_ids()
    held = set(vectors.ids())
    missing = sorted(truth - held)
    orphans = sorted(held - truth)
    report.add("missing vectors", not missing, f"{len(missing)} chunks in SQLite have no vector",
               count=len(missing), sample=missing[:5])
    report.add("orphan vectors", not orphans, f"{len(orphans)} vectors have no chunk in SQLite",
               count=len(orphans), sample=orphans[:5])
    if repair and orphans:
        vectors.delete(orphans)
        report.repaired["orphan_vectors"] = len(orphans)
    if repair and missing:
        rows = list(catalog.chunks_for_embedding(missing))
        vecs = embedder.embed_hashed([(r["content_hash"], r["text"]) for r in rows])
        vectors.upsert([r["id"] for r in rows], np.stack(vecs), [metadata_for(r) for r in rows])
        report.repaired["missing_vectors"] = len(rows)
    return report
