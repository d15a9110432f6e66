"""kill -9 of the daemon in the middle of a job, then a restart: every record processed, none twice, none lost.

The daemon runs as users run it (``ctx daemon start``, a detached subprocess with the real model), the
ingest is queued with ``ctx ingest --detach`` or pushed with ``ctx push``, and the SIGKILL lands while
the job works: with fetched records waiting in the durable queue, or right as a batch commits (often
before its vectors reach Chroma). The restarted daemon resumes the same job from the queue.

The catalog is watched with read-only SQLite connections, so the test never takes a write lock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_markdown_corpus

pytestmark = pytest.mark.model

SOURCES = ["alpha", "beta", "gamma"]
DOCS_PER_SOURCE = 24  # one queue batch (BATCH_DOCS = 64) per source: a commit point per source
SECTIONS = 2
DAEMON = "[daemon]\nscheduler = false\n\n"


# --- helpers (the corpus generator and read-only catalog checks follow tests/store/test_crash_recovery.py) ---


def _write_corpus(root: Path) -> str:
    return write_markdown_corpus(root, SOURCES, DOCS_PER_SOURCE, SECTIONS)


def _query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
    """Rows from a read-only connection, or None while the file or its schema is not there yet."""
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def _progress(db: Path, job_id: str, source: str | None = None) -> tuple[str | None, int, int]:
    """(job status, documents written, queue items of the job still pending)."""
    status = _query(db, "select status from ingest_runs where id = ?", (job_id,))
    if source is None:
        docs = _query(db, "select count(*) from documents")
    else:
        docs = _query(db, "select count(*) from documents where source = ?", (source,))
    pending = _query(db, "select count(*) from queue where job_id = ? and state = 'pending'", (job_id,))
    return (status[0][0] if status else None, docs[0][0] if docs else 0, pending[0][0] if pending else 0)


def _catalog_state(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {
            "docs": Counter((r[0], r[1]) for r in con.execute("select source, key from documents")),
            "versions": Counter(r[0] for r in con.execute("select version from documents")),
            "version_rows": con.execute("select count(*) from document_versions").fetchone()[0],
            "chunk_ids": [r[0] for r in con.execute("select id from chunks")],
            "chunk_rows": {r[0]: r[1:] for r in con.execute("select id, doc_id, start, end, content_hash from chunks")},
            "fts": con.execute("select count(*) from chunks_fts").fetchone()[0],
            "pending": con.execute("select count(*) from queue where state = 'pending'").fetchone()[0],
            "queue_rows": con.execute("select count(*) from queue").fetchone()[0],
            "runs": dict(con.execute("select id, status from ingest_runs").fetchall()),
        }
    finally:
        con.close()


def _kill_9(d: Any) -> int:
    """SIGKILL the daemon and wait until the process is really gone (reaped, not a zombie)."""
    from ctx.api import runtime as rt

    pid = d.runtime.pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while rt.alive(pid) and time.monotonic() < deadline:  # the reaper (init) may take a moment
        time.sleep(0.02)
    assert not rt.alive(pid), f"daemon pid {pid} still exists after SIGKILL"
    return pid


def _assert_runtime_stale(home: Path, pid: int) -> None:
    """The killed daemon could not clean up: its runtime file is left behind, and clients see it is stale."""
    from ctx.api import runtime as rt

    path = rt.runtime_path(home)
    assert path.exists(), "a SIGKILLed daemon cannot remove its runtime file"
    assert json.loads(path.read_text())["pid"] == pid
    assert rt.read(home) is None  # a dead pid: stale, not trusted
    assert not path.exists(), "a stale runtime file is removed on sight"


def _wait_job(d: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    """Follow the job through the API until it ends, then read it with the real `ctx jobs ID --json`."""
    from ctx.api import operations as ops
    from ctx.api.inputs import JobIn

    client = d.client()
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            job = client.call(ops.JOB, JobIn(job_id=job_id))
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"job {job_id} did not finish in {timeout:.0f}s: {job}\n{d.log()[-3000:]}")
    finally:
        client.close()
    shown = json.loads(d.cli("jobs", job_id, "--json").stdout)
    assert shown == job
    return shown


def _assert_stores_agree(d: Any, state: dict[str, Any]) -> None:
    """Through the daemon: Chroma holds one vector per chunk and doctor finds no drift anywhere."""
    status = json.loads(d.cli("status", "--json").stdout)
    assert status["daemon"] is not None and status["daemon"]["pid"] == d.runtime.pid  # answered by the daemon
    assert status["documents"] == len(state["docs"])
    assert status["chunks"] == len(state["chunk_ids"])
    assert status["vectors"] == len(state["chunk_ids"])
    doctor = d.cli("doctor", "--json", check=False)
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["ok"], report
    assert report["repaired"] == {}
    assert all(c["ok"] for c in report["checks"]), report["checks"]


@pytest.fixture(scope="module")
def clean_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same corpus ingested cleanly, in-process, into a home of its own.

    Chunk ids and spans do not depend on the embedder, so the reference skips the model (fast); the
    crashed home's vectors are checked against its own chunks instead.
    """
    from ctx.workspace import Workspace

    root = tmp_path_factory.mktemp("clean")
    config = root / "ctx.toml"
    config.write_text('[embedding]\nembedder = "none"\n\n' + _write_corpus(root))
    env = {**os.environ, "CTX_HOME": str(root / "home"), "CTX_LOAD_PLUGINS": ""}
    ws = Workspace.open(config, env=env)
    try:
        summary = ws.ingest()
        assert summary.ok and summary.totals()["new"] == len(SOURCES) * DOCS_PER_SOURCE
    finally:
        ws.close()
    return _catalog_state(root / "home" / "catalog.db")


# --- an ingest job killed mid-run ----------------------------------------------------------------


@pytest.mark.parametrize("kill_point", ["early", "middle"])
def test_kill_9_mid_ingest_then_restart_loses_nothing(kill_point: str, tmp_path: Path, write_config, daemon,
                                                       ctx_env: dict[str, str],
                                                       clean_reference: dict[str, Any]) -> None:
    """early: the first source is fetched into the queue and being embedded, nothing written yet.
    middle: the first source's batch has just committed (its vectors may not be in Chroma yet)."""
    home = Path(ctx_env["CTX_HOME"])
    db = home / "catalog.db"
    total = len(SOURCES) * DOCS_PER_SOURCE
    config = write_config(DAEMON + _write_corpus(tmp_path))
    d = daemon(config=config)

    job = json.loads(d.cli("ingest", "--detach", "--json").stdout)
    job_id = job["id"]
    assert job["status"] in ("queued", "running") and job["kind"] == "ingest" and job["sources"] == SOURCES

    def landed(status: str | None, docs: int, pending: int) -> bool:
        if status != "running":
            return False
        if kill_point == "early":
            return docs == 0 and pending > 0
        return 0 < docs < total

    seen: tuple[str | None, int, int] = (None, 0, 0)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        seen = _progress(db, job_id)
        if landed(*seen) or seen[0] not in (None, "queued", "running"):
            break
        time.sleep(0.005)
    assert landed(*seen), f"missed the {kill_point} of the ingest: (status, docs, pending) = {seen}"
    pid = _kill_9(d)
    _assert_runtime_stale(home, pid)

    status, at_kill, pending_at_kill = _progress(db, job_id)
    assert status == "running" and at_kill < total, "the job had already finished"
    print(f"{kill_point}: killed at {at_kill}/{total} documents, {pending_at_kill} queue items pending")

    d.start()
    assert d.runtime.pid != pid
    done = _wait_job(d, job_id)
    assert done["status"] == "ok", done
    assert f"resuming ingest job {job_id}" in d.log()
    # A kill between a batch's SQLite commit and its Chroma write is healed by the resumed job itself.
    print(f"{kill_point}: resumed job warnings: {done['summary']['warnings']}")
    assert done["pending"] == 0 and done["error"] is None
    # Each record was counted once across the two processes: all new, none seen twice as unchanged.
    totals = done["summary"]["totals"]
    assert totals["new"] == total and totals["unchanged"] == 0 and totals["changed"] == 0, totals
    assert totals["deleted"] == 0 and totals["quarantined"] == 0
    assert all(p["finalized"] and p["error"] is None for p in done["progress"].values())
    # No other job appeared: the restart resumed this one rather than starting over.
    assert [j["id"] for j in json.loads(d.cli("jobs", "--json").stdout)] == [job_id]

    state = _catalog_state(db)
    clean = clean_reference
    # Every document exactly once, at version 1: processing a record twice would have made a version 2.
    assert len(state["docs"]) == total and set(state["docs"]) == set(clean["docs"])
    assert all(n == 1 for n in state["docs"].values())
    assert state["versions"] == Counter({1: total}) and state["version_rows"] == total
    # The same chunks as a clean ingest, none twice.
    assert len(state["chunk_ids"]) == len(set(state["chunk_ids"])) == len(clean["chunk_ids"])
    assert state["chunk_rows"] == clean["chunk_rows"]
    assert state["fts"] == len(state["chunk_ids"])
    # Nothing left in flight.
    assert state["pending"] == 0 and state["queue_rows"] == 0
    assert state["runs"] == {job_id: "ok"}
    _assert_stores_agree(d, state)


# --- pushed events: accepted means durable ---------------------------------------------------------

EVENTS = 100
PAGES = ["billing", "invoices", "webhooks", "SAML settings", "audit log", "API keys", "usage", "team members"]


def _events() -> list[dict[str, Any]]:
    rnd = random.Random("events")
    return [
        {"id": f"evt-{i:04d}", "title": f"Session event {i}",
         "text": f"User {rnd.randint(1, 500)} opened the {rnd.choice(PAGES)} page in session {i} "
                 f"and stayed {rnd.randint(2, 600)} seconds before leaving."}
        for i in range(EVENTS)
    ]


@pytest.mark.parametrize("kill_point", ["right-after-202", "mid-processing"])
def test_kill_9_after_push_then_restart_keeps_every_event_once(kill_point: str, tmp_path: Path, write_config,
                                                               daemon, ctx_env: dict[str, str]) -> None:
    """right-after-202: SIGKILL as soon as `POST /v1/events` answers (before or as the job starts).
    mid-processing: pushed with `ctx push`, killed once the first batch of events is written."""
    from ctx.api import operations as ops
    from ctx.api.inputs import EventsIn

    home = Path(ctx_env["CTX_HOME"])
    db = home / "catalog.db"
    config = write_config(DAEMON + '[sources.sessions]\nkind = "events"\ntitle_field = "title"\n')
    d = daemon(config=config)
    events = _events()

    if kill_point == "right-after-202":
        client = d.client()
        try:
            accepted = client.call(ops.PUSH, EventsIn(source="sessions", events=events))
            pid = _kill_9(d)
        finally:
            client.close()
    else:
        feed = tmp_path / "events.jsonl"
        feed.write_text("".join(json.dumps(e) + "\n" for e in events))
        accepted = json.loads(d.cli("push", "sessions", str(feed), "--json").stdout)
        seen: tuple[str | None, int, int] = (None, 0, 0)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            seen = _progress(db, accepted["job_id"], "sessions")
            if seen[1] > 0 or seen[0] not in (None, "queued", "running"):
                break
            time.sleep(0.005)
        assert seen[0] == "running" and 0 < seen[1] < EVENTS, f"missed the middle of the job: {seen}"
        pid = _kill_9(d)
    assert accepted["accepted"] == EVENTS
    job_id = accepted["job_id"]
    _assert_runtime_stale(home, pid)

    status, at_kill, pending_at_kill = _progress(db, job_id, "sessions")
    assert status in ("queued", "running") and at_kill < EVENTS, "the job had already finished"
    assert at_kill + pending_at_kill == EVENTS  # written or still queued: nothing accepted is missing
    print(f"{kill_point}: killed with job {status}, {at_kill}/{EVENTS} events written, {pending_at_kill} queued")

    d.start()
    done = _wait_job(d, job_id)
    assert done["status"] == "ok" and done["kind"] == "events" and done["trigger"] == "push", done
    assert f"resuming events job {job_id}" in d.log()
    totals = done["summary"]["totals"]
    assert totals["new"] == EVENTS and totals["unchanged"] == 0 and totals["quarantined"] == 0, totals

    state = _catalog_state(db)
    assert state["docs"] == Counter({("sessions", e["id"]): 1 for e in events})
    assert state["versions"] == Counter({1: EVENTS}) and state["version_rows"] == EVENTS
    assert len(state["chunk_ids"]) == len(set(state["chunk_ids"])) >= EVENTS
    assert state["fts"] == len(state["chunk_ids"])
    assert state["pending"] == 0 and state["queue_rows"] == 0
    assert state["runs"] == {job_id: "ok"}
    _assert_stores_agree(d, state)

    # And the events answer queries: one of them, by its own words.
    hits = json.loads(d.cli("search", "session 77", "--source", "sessions", "--json").stdout)
    assert any(h["doc_key"] == "evt-0077" for h in hits)


# --- a kill exactly between a batch's SQLite commit and its Chroma write ----------------------------

# Loaded by every Python process started with this folder on PYTHONPATH. It fires once: when the trigger
# file exists, the next Chroma upsert (which follows a batch's SQLite commit) SIGKILLs the process instead.
CRASH_HOOK = '''
import os, signal

_trigger = os.environ.get("CTX_TEST_KILL_BEFORE_VECTORS")
if _trigger:
    import ctx.store.vectors as _vectors

    _upsert = _vectors.ChromaVectors.upsert

    def _killing_upsert(self, *args, **kwargs):
        if os.path.exists(_trigger):
            os.unlink(_trigger)
            os.kill(os.getpid(), signal.SIGKILL)
        return _upsert(self, *args, **kwargs)

    _vectors.ChromaVectors.upsert = _killing_upsert
'''


def _note(folder: Path, i: int, topic: str) -> None:
    body = "\n\n".join(
        f"## Part {j}\n\n" + " ".join(f"Step {k} of part {j} covers {topic} for account {i}." for k in range(12))
        for j in range(3)
    )
    (folder / f"note-{i}.md").write_text(f"# Note {i}\n\n{body}\n")


def _crash_setup(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """(env that arms the hook, its trigger file, a folder of four notes)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    trigger = tmp_path / "kill-before-vectors"
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(4):
        _note(notes, i, "refunds")
    return {"PYTHONPATH": str(hook), "CTX_TEST_KILL_BEFORE_VECTORS": str(trigger)}, trigger, notes


def test_kill_9_between_commit_and_vectors_of_an_edit_is_healed(tmp_path: Path, write_config, daemon,
                                                                 ctx_env: dict[str, str]) -> None:
    """An edited document keeps its chunk count, so the crash leaves as many orphan vectors (the old
    chunks) as missing ones (the new chunks): the stores' sizes agree while their contents do not.
    The resumed job must still find and heal that drift."""
    home = Path(ctx_env["CTX_HOME"])
    hook_env, trigger, notes = _crash_setup(tmp_path)
    config = write_config(DAEMON + '[sources.notes]\nkind = "files"\npath = "notes"\n')
    d = daemon(config=config, **hook_env)

    first = json.loads(d.cli("ingest", "--json").stdout)
    assert first["ok"] and first["totals"]["new"] == 4
    chunks_before = first["totals"]["chunks_written"]

    _note(notes, 2, "chargebacks")  # same shape, new words: the same number of chunks, all replaced
    trigger.touch()
    pid = d.runtime.pid
    job_id = json.loads(d.cli("ingest", "--detach", "--json").stdout)["id"]
    from ctx.api import runtime as rt

    deadline = time.monotonic() + 120
    while rt.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not rt.alive(pid) and not trigger.exists(), "the daemon did not die at its Chroma write"
    _assert_runtime_stale(home, pid)
    state = _catalog_state(home / "catalog.db")
    assert state["versions"] == Counter({1: 3, 2: 1})  # the edit is committed in SQLite ...
    assert len(state["chunk_ids"]) == chunks_before  # ... with as many chunks as before

    d.start()
    done = _wait_job(d, job_id)
    assert done["status"] == "ok" and done["summary"]["totals"]["changed"] == 1, done
    assert any("repaired drift" in w for w in done["summary"]["warnings"]), done["summary"]["warnings"]
    _assert_stores_agree(d, _catalog_state(home / "catalog.db"))
    # The edited text is found by meaning too: its new chunks have vectors.
    hits = json.loads(d.cli("search", "chargebacks for account 2", "--json").stdout)
    top = [h for h in hits if h["doc_key"] == "note-2.md"]
    assert top and top[0]["version"] == 2 and any(h["vector_rank"] is not None for h in top)


def test_cli_rerun_after_kill_between_commit_and_vectors_of_an_edit_heals_it(tmp_path: Path, write_config, ctx_cli,
                                                                            ctx_env: dict[str, str]) -> None:
    """The same crash without a daemon: the next `ctx ingest` finds the dead run and heals its drift."""
    import subprocess
    import sys

    hook_env, trigger, notes = _crash_setup(tmp_path)
    config = write_config('[sources.notes]\nkind = "files"\npath = "notes"\n')
    first = ctx_cli("ingest", "--json").json()
    assert first["ok"] and first["totals"]["new"] == 4

    _note(notes, 2, "chargebacks")
    trigger.touch()
    proc = subprocess.run([sys.executable, "-m", "ctx.cli", "--config", str(config), "ingest", "--json"],
                          env={**os.environ, **ctx_env, **hook_env}, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -signal.SIGKILL and not trigger.exists(), proc.stderr[-2000:]

    again = ctx_cli("ingest", "--json").json()
    assert again["ok"] and again["totals"]["unchanged"] == 4  # the edit was committed before the kill
    assert any("repaired drift" in w and "missing vectors" in w and "orphan vectors" in w
               for w in again["warnings"]), again["warnings"]
    doctor = ctx_cli("doctor", "--json").json()
    assert doctor["ok"] and doctor["repaired"] == {}
    hits = ctx_cli("search", "chargebacks for account 2", "--json").json()
    assert any(h["doc_key"] == "note-2.md" and h["version"] == 2 and h["vector_rank"] is not None for h in hits)
