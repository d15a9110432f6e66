"""Jobs through the durable queue, in-process: a job stopped between two batches resumes and counts
every document once; pushed events are validated on the way in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ctx.pipeline import Stopped
from ctx.workspace import Workspace
from tests.helpers import Workspaces, write_markdown_corpus

DOCS = 150  # three queue batches of 64


@pytest.fixture
def workspace(tmp_path: Path, write_config, open_workspace: Workspaces) -> Workspace:
    """A generated corpus of notes and an events source (closed at teardown)."""
    tables = write_markdown_corpus(tmp_path, ["notes"], DOCS, sections=1)
    extra = '[sources.sessions]\nkind = "events"\ntenant_field = "account"\n'
    return open_workspace(write_config('[embedding]\nembedder = "none"\n\n' + tables + extra))


def test_a_job_stopped_mid_fetch_resumes_and_counts_each_document_once(workspace: Workspace) -> None:
    ws = workspace
    job_id = ws.submit(["notes"])
    checks = iter(range(10_000))
    # Stop at the second batch boundary: the first batch is written, the fetch is not finished.
    with pytest.raises(Stopped):
        ws.run_job(job_id, should_stop=lambda: next(checks) >= 2)
    job = ws.jobs.get(job_id)
    assert job["status"] == "running" and not job["progress"]["notes"]["fetched"]
    written = ws.catalog.counts()["documents"]
    assert 0 < written < DOCS

    summary = ws.run_job(job_id)  # what the daemon does with an unfinished job when it starts

    totals = summary.totals()
    assert (totals["new"], totals["changed"], totals["unchanged"]) == (DOCS, 0, 0)
    assert ws.jobs.get(job_id)["status"] == "ok"
    db = sqlite3.connect(ws.home / "catalog.db")
    assert db.execute("select count(*), max(version) from documents").fetchone() == (DOCS, 1)
    assert db.execute("select count(*) from document_versions").fetchone()[0] == DOCS
    assert db.execute("select count(*) from queue").fetchone()[0] == 0  # finished jobs leave nothing queued

    again = ws.ingest(["notes"]).totals()
    assert (again["new"], again["unchanged"]) == (0, DOCS)


def test_pushed_events_are_validated_and_bad_ones_quarantined(workspace: Workspace) -> None:
    ws = workspace
    events = [
        {"id": "e1", "text": "opened the billing page", "account": "acme"},
        {"id": "e2", "text": "", "account": "acme"},  # empty text
        {"id": "e3", "text": "asked about refunds"},  # no tenant
        ["not", "an", "object"],
    ]
    job_id, accepted, quarantined = ws.push_events("sessions", events)
    assert (accepted, quarantined) == (4, 3)  # taken and durable; the bad ones are in quarantine, not lost
    summary = ws.run_job(job_id)
    assert summary.totals()["new"] == 1 and summary.totals()["quarantined"] == 3
    reasons = sorted(r["reason"] for r in ws.quarantined("sessions"))
    assert any("tenant" in r for r in reasons) and any("JSON object" in r for r in reasons)
    assert [h.doc_key for h in ws.search("billing", ws.filters(None, "acme"))] == ["e1"]


def test_events_only_go_to_append_sources_that_parse_them(workspace: Workspace) -> None:
    from ctx.errors import NotFound, UserError

    ws = workspace
    with pytest.raises(UserError, match="does not take pushed events"):
        ws.push_events("notes", [{"id": "x", "text": "y"}])
    with pytest.raises(NotFound, match="unknown source"):
        ws.push_events("nope", [{"id": "x", "text": "y"}])
