"""kill -9 in the middle of an ingest loses nothing, and drift between SQLite and Chroma is found and repaired.

These run the real CLI in a real subprocess with the real model, so a SIGKILL lands wherever the
ingest happens to be: between two sources, inside a SQLite batch, or between the SQLite commit
and the Chroma upsert (the window ``ctx doctor`` exists for).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_markdown_corpus

pytestmark = pytest.mark.model

SOURCES = ["alpha", "beta", "gamma"]
DOCS_PER_SOURCE = 20


def _write_corpus(root: Path) -> str:
    return write_markdown_corpus(root, SOURCES, DOCS_PER_SOURCE)


def _documents(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("select count(*) from documents").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0  # the schema is not there yet, or the file is mid-creation


def _ingest_process(cwd: Path, env: dict[str, str], batch_docs: int | None) -> subprocess.Popen[bytes]:
    # Smaller batches (set before the CLI runs) make more commit points for the kill to land between.
    prelude = f"import ctx.pipeline as p; p.BATCH_DOCS = {batch_docs}; " if batch_docs else ""
    return subprocess.Popen(
        [sys.executable, "-c", prelude + "from ctx.cli import main; main()", "ingest", "--json"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _state(home: Path, config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    from ctx.workspace import Workspace

    env = {**os.environ, **(env or {}), "CTX_HOME": str(home)}
    ws = Workspace.open(config, env=env)
    try:
        db = ws.catalog.db
        vector_ids = list(ws.vectors.ids())
        return {
            "docs": Counter((r[0], r[1]) for r in db.execute("select source, key from documents")),
            "versions": {r[0] for r in db.execute("select distinct version from documents")},
            "version_rows": db.execute("select count(*) from document_versions").fetchone()[0],
            "chunk_ids": [r[0] for r in db.execute("select id from chunks")],
            "chunk_rows": {r[0]: r[1:] for r in db.execute("select id, doc_id, start, end, content_hash from chunks")},
            "vector_ids": vector_ids,
            "fts": db.execute("select count(*) from chunks_fts").fetchone()[0],
        }
    finally:
        ws.close()


@pytest.fixture(scope="module")
def clean_reference(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Any]:
    """The same corpus ingested cleanly, without a crash, into a home of its own."""
    from ctx.workspace import Workspace

    root = tmp_path_factory.mktemp("clean")
    config = root / "ctx.toml"
    config.write_text(_write_corpus(root))
    env = {**os.environ, "CTX_HOME": str(root / "home"), "CTX_MODEL_DIR": str(model_dir)}
    ws = Workspace.open(config, env=env)
    try:
        assert ws.ingest().ok
    finally:
        ws.close()
    return _state(root / "home", config, env)


@pytest.fixture
def corpus(tmp_path: Path, write_config) -> Path:
    return write_config(_write_corpus(tmp_path))


@pytest.mark.parametrize(
    ("batch_docs", "delay"),
    [
        (None, 0.0),   # as shipped: kill as soon as the first source's batch has committed
        (4, 0.0),      # small batches: kill right after a commit, often before its vectors are written
        (4, 0.7),      # small batches: kill somewhere later, mid-embedding or mid-write
    ],
    ids=["after-first-source", "right-after-a-commit", "later"],
)
def test_kill_9_mid_ingest_loses_nothing(corpus: Path, tmp_path: Path, ctx_cli, ctx_env: dict[str, str],
                                         clean_reference: dict[str, Any], batch_docs: int | None,
                                         delay: float) -> None:
    home = Path(ctx_env["CTX_HOME"])
    total = len(SOURCES) * DOCS_PER_SOURCE
    env = {**os.environ, "CTX_HOME": str(home), "CTX_MODEL_DIR": ctx_env["CTX_MODEL_DIR"], "CTX_LOAD_PLUGINS": ""}

    proc = _ingest_process(tmp_path, env, batch_docs)
    seen = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _documents(home / "catalog.db")
            if 0 < seen < total:
                break
            time.sleep(0.01)
        if delay:
            time.sleep(delay)
        alive = proc.poll() is None
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert alive and 0 < seen < total, f"missed the middle of the ingest: {seen}/{total}, {proc.stderr.read()[-2000:]!r}"
    assert proc.returncode == -signal.SIGKILL
    at_kill = _documents(home / "catalog.db")
    assert at_kill < total, "the ingest had already finished"
    crashed = _state(home, corpus)
    drift_at_kill = set(crashed["chunk_ids"]) != set(crashed["vector_ids"])

    # Run it again, in-process, as a user would after the crash.
    again = ctx_cli("ingest", "--json").json()
    assert again["ok"]
    assert again["totals"]["new"] + again["totals"]["unchanged"] == total
    assert again["totals"]["changed"] == 0 and again["totals"]["deleted"] == 0
    assert again["totals"]["unchanged"] == at_kill  # what was committed before the kill is kept as is
    # The killed run is recorded as interrupted, not left "running" forever.
    with sqlite3.connect(home / "catalog.db") as conn:
        runs = dict(conn.execute("select id, status from ingest_runs").fetchall())
    assert runs.pop(again["run_id"]) == "ok" and set(runs.values()) == {"interrupted"}

    clean = clean_reference
    state = _state(home, corpus)

    # Every document is there exactly once, at version 1 (a crash and a rerun are not an edit).
    assert set(state["docs"]) == set(clean["docs"]) and len(state["docs"]) == total
    assert all(n == 1 for n in state["docs"].values())
    assert state["versions"] == {1} and state["version_rows"] == total
    # The same chunks, with the same ids and spans, and none twice.
    assert len(state["chunk_ids"]) == len(set(state["chunk_ids"])) == len(clean["chunk_ids"])
    assert state["chunk_rows"] == clean["chunk_rows"]
    assert state["fts"] == len(state["chunk_ids"])
    assert len(state["vector_ids"]) == len(set(state["vector_ids"]))

    # Vectors: drift the crash left (SQLite committed, Chroma not yet written) is healed by the rerun
    # itself, from SQLite, and said so; with no drift there is nothing to say.
    print(f"kill at {at_kill}/{total} docs; drift at kill: {drift_at_kill}")
    assert any("repaired drift" in w for w in again["warnings"]) == drift_at_kill
    assert sorted(state["vector_ids"]) == sorted(state["chunk_ids"]) == sorted(clean["vector_ids"])
    doctor = ctx_cli("doctor", "--json", ok=False)
    assert doctor.exit_code == 0 and doctor.json()["ok"], doctor.stdout
    final = state

    # And the recovered home answers queries like the clean one.
    hits = ctx_cli("search", "SAML procedure", "--json", "--limit", "5").json()
    assert hits and all(h["chunk_id"] in final["chunk_rows"] for h in hits)


def test_doctor_finds_and_repairs_deliberate_drift(tmp_path: Path, write_config, ctx_cli) -> None:
    import numpy as np

    from ctx.store.vectors import metadata_for
    from ctx.workspace import Workspace

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"note-{i}.md").write_text(
            f"# Note {i}\n\n" + " ".join(f"Fact {k} of note {i} concerns invoice INV-{i}{k}." for k in range(30))
        )
    write_config('[sources.docs]\nkind = "files"\npath = "docs"\n')
    ctx_cli("ingest", "--json")
    assert ctx_cli("doctor", "--json").json()["ok"]

    ws = Workspace.open()
    chunk_ids = sorted(ws.catalog.chunk_ids())
    assert len(chunk_ids) >= 6
    gone = chunk_ids[:3]
    before = ws.vectors.collection.get(ids=gone, include=["embeddings", "metadatas"])
    ws.vectors.delete(gone)
    orphan = "orphan-0000000000000000"
    ws.vectors.upsert([orphan], np.ones((1, ws.embedder.dimension), dtype=np.float32) / ws.embedder.dimension ** 0.5,
                      [metadata_for({"source": "docs", "doc_id": "nope", "tenant": None, "version": 1})])
    ws.close()

    res = ctx_cli("doctor", "--json", ok=False)
    assert res.exit_code == 1
    report = res.json()
    assert report["ok"] is False and report["repaired"] == {}
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["missing vectors"]["ok"] is False and checks["missing vectors"]["count"] == 3
    assert set(checks["missing vectors"]["sample"]) == set(gone)
    assert checks["orphan vectors"]["ok"] is False and checks["orphan vectors"]["count"] == 1
    assert checks["orphan vectors"]["sample"] == [orphan]
    assert checks["sqlite integrity"]["ok"] and checks["fts index"]["ok"]
    # The human form fails the same way.
    human = ctx_cli("doctor", ok=False)
    assert human.exit_code == 1 and "FAIL" in human.stderr

    fixed = ctx_cli("doctor", "--repair", "--json")
    assert fixed.exit_code == 0
    assert fixed.json()["repaired"] == {"orphan_vectors": 1, "missing_vectors": 3}

    after = ctx_cli("doctor", "--json")
    assert after.exit_code == 0 and after.json()["ok"] and after.json()["repaired"] == {}
    ws = Workspace.open()
    try:
        assert sorted(ws.vectors.ids()) == chunk_ids
        # The repaired vectors are the ones that were lost: same embedding, same metadata.
        restored = ws.vectors.collection.get(ids=gone, include=["embeddings", "metadatas"])
        old = dict(zip(before["ids"], zip(before["embeddings"], before["metadatas"], strict=True), strict=True))
        for cid, emb, meta in zip(restored["ids"], restored["embeddings"], restored["metadatas"], strict=True):
            assert np.allclose(emb, old[cid][0], atol=1e-6)
            assert meta == old[cid][1]
    finally:
        ws.close()
