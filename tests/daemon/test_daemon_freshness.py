"""Freshness through the real daemon: watched edits and pushed events reach assembly within 2 s, polled
sources within a few seconds, and each source's staleness against its threshold is reported everywhere.

Each test starts a real daemon subprocess (``ctx daemon start``) and asks it through its API (the
DaemonClient, for timing) and the real CLI. The realtime and events tests use the real model, since
what they check is what a user's assembled context shows; the polling and staleness tests do not need it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctx.api import operations as ops
from ctx.api.inputs import AssembleIn, EventsIn, JobIn, JobsIn, SearchIn
from tests.helpers import wait_until

VISIBLE_WITHIN = 2.0  # seconds from a write (or a push) to the assembled context


def _wait(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.02) -> tuple[Any, float]:
    """``wait_until`` that also says how long it waited: (what ``probe`` returned, seconds)."""
    started = time.monotonic()
    value = wait_until(probe, timeout, interval, what)
    return value, time.monotonic() - started


def _synced(client: Any, *names: str) -> Callable[[], bool]:
    def probe() -> bool:
        rows = {s["name"]: s for s in client.call(ops.SOURCES)}
        return all(rows[n]["last_success_at"] is not None for n in names)

    return probe


def _assembled(client: Any, query: str, **options: Any) -> dict[str, Any]:
    return client.call(ops.ASSEMBLE, AssembleIn(query=query, **options))  # type: ignore[no-any-return]


def _source_rows(d: Any) -> dict[str, dict[str, Any]]:
    """`ctx sources --json` through the daemon, by name."""
    return {s["name"]: s for s in json.loads(d.cli("sources", "--json").stdout)}


# --- realtime: watched files --------------------------------------------------------------------


@pytest.mark.model
def test_realtime_watched_edit_create_and_delete_reach_assembly_within_2s(docs_dir: Path, write_config,
                                                                           daemon) -> None:
    for folder in docs_dir.iterdir():  # a small corpus: two folders of the fixture docs
        if folder.name not in ("billing", "security"):
            shutil.rmtree(folder)
    files = sorted(p.relative_to(docs_dir).as_posix() for p in docs_dir.rglob("*") if p.is_file())
    config = write_config(f'[sources.docs]\nkind = "files"\npath = "{docs_dir}"\nfreshness = "realtime"\n')
    d = daemon(config=config)
    client = d.client()
    try:
        _wait("first sync of docs", _synced(client, "docs"), timeout=240, interval=0.2)
        row = _source_rows(d)["docs"]
        assert row["documents"] == len(files) and row["freshness"] == "realtime"
        assert row["max_staleness_s"] == 5.0 and row["stale"] is False and row["last_error"] is None

        # 1. An edit: a new section with a phrase no document has.
        edited = docs_dir / "billing" / "refunds-and-disputes.md"
        phrase = "zephyrquokka escalation"
        assert not any(phrase.split()[0] in b["text"] for b in _assembled(client, phrase)["blocks"])
        with open(edited, "a", encoding="utf-8") as handle:
            handle.write(f"\n\n## Quokka alerts\n\nWhen a {phrase} alert fires, page the billing on-call "
                         "engineer within ten minutes and freeze refunds for the account.\n")
        written = time.monotonic()
        out, _ = _wait("the edit in the assembled context",
                       lambda: (o := _assembled(client, phrase)) and phrase in o["context"] and o, timeout=30)
        edit_latency = time.monotonic() - written
        block = next(b for b in out["blocks"] if phrase in b["text"])
        assert block["source"] == "docs" and block["document"] == "billing/refunds-and-disputes.md"
        assert block["version"] == 2  # the same document, changed: not a second copy

        # 2. A new file.
        created = docs_dir / "billing" / "quokka-credits.md"
        fresh = "marsupialcredit voucher"
        created.write_text(f"# Quokka credits\n\nA {fresh} is issued once per workspace when an "
                           "invoice is disputed and the dispute is upheld.\n", encoding="utf-8")
        written = time.monotonic()
        out, _ = _wait("the new file in the assembled context",
                       lambda: (o := _assembled(client, fresh)) and fresh in o["context"] and o, timeout=30)
        create_latency = time.monotonic() - written
        assert any(b["document"] == "billing/quokka-credits.md" and b["version"] == 1 for b in out["blocks"])

        # 3. Deletions: a mirror source forgets what is gone.
        edited.unlink()
        created.unlink()
        deleted = time.monotonic()

        def forgotten() -> bool:
            texts = [_assembled(client, q)["context"] for q in (phrase, fresh)]
            return not any(phrase in t or fresh in t for t in texts)

        _wait("deleted files out of the assembled context", forgotten, timeout=30)
        delete_latency = time.monotonic() - deleted
        hits = client.call(ops.SEARCH, SearchIn(query="zephyrquokka marsupialcredit", limit=50))
        assert not {"billing/refunds-and-disputes.md", "billing/quokka-credits.md"} & {h["doc_key"] for h in hits}
        row = _source_rows(d)["docs"]
        assert row["documents"] == len(files) - 1

        jobs = client.call(ops.JOBS, JobsIn(limit=200))
        assert any(j["trigger"] == "watch" and j["status"] == "ok" for j in jobs)
        assert all(j["status"] == "ok" for j in jobs), [j for j in jobs if j["status"] != "ok"]
    finally:
        client.close()
    print(f"realtime: edit visible in {edit_latency * 1000:.0f} ms, new file in {create_latency * 1000:.0f} ms, "
          f"deletions gone in {delete_latency * 1000:.0f} ms")
    assert edit_latency <= VISIBLE_WITHIN, f"edit took {edit_latency:.2f}s to reach the context"
    assert create_latency <= VISIBLE_WITHIN, f"new file took {create_latency:.2f}s to reach the context"
    assert delete_latency <= VISIBLE_WITHIN, f"deletion took {delete_latency:.2f}s to leave the context"


# --- realtime: pushed events ----------------------------------------------------------------------


@pytest.mark.model
def test_pushed_event_is_in_search_and_assembly_within_2s(write_config, daemon) -> None:
    config = write_config('[sources.sessions]\nkind = "events"\ntitle_field = "title"\n')
    d = daemon(config=config)
    client = d.client()
    try:
        warm = client.call(ops.PUSH, EventsIn(source="sessions", events=[
            {"id": "s-1", "title": "Login", "text": "User u7 signed in with SAML and opened the billing page."}]))
        _wait("the first event", lambda: client.call(ops.JOB, JobIn(job_id=warm["job_id"]))["status"] == "ok", timeout=60)

        phrase = "wombatcheckout abandoned"
        pushed = time.monotonic()
        accepted = client.call(ops.PUSH, EventsIn(source="sessions", events=[
            {"id": "s-2", "title": "Checkout", "text": f"User u9 saw a {phrase} cart after the card was declined."}]))
        assert accepted["accepted"] == 1
        hits, _ = _wait("the event in search",
                        lambda: [h for h in client.call(ops.SEARCH, SearchIn(query=phrase, limit=5)) if h["doc_key"] == "s-2"],
                        timeout=30)
        search_latency = time.monotonic() - pushed
        out = _assembled(client, phrase)
        assemble_latency = time.monotonic() - pushed
        assert phrase in out["context"]
        assert any(b["source"] == "sessions" and b["document"] == "s-2" for b in out["blocks"])
        assert hits[0]["source"] == "sessions" and hits[0]["version"] == 1

        row = {s["name"]: s for s in client.call(ops.SOURCES)}["sessions"]
        assert row["freshness"] == "realtime" and row["documents"] == 2 and row["stale"] is False
        jobs = [j for j in client.call(ops.JOBS, JobsIn(limit=20)) if j["kind"] == "events"]
        assert len(jobs) == 2 and {j["trigger"] for j in jobs} == {"push"}
    finally:
        client.close()
    print(f"events: pushed event searchable in {search_latency * 1000:.0f} ms, "
          f"in an assembled context in {assemble_latency * 1000:.0f} ms")
    assert search_latency <= VISIBLE_WITHIN and assemble_latency <= VISIBLE_WITHIN


# --- near_realtime: polling ---------------------------------------------------------------------


def _ticket(i: int, text: str) -> str:
    return json.dumps({"id": f"T-{i}", "subject": f"Ticket {i}", "text": text}) + "\n"


def test_near_realtime_jsonl_is_polled_every_interval(tmp_path: Path, write_config, daemon) -> None:
    feed = tmp_path / "tickets.jsonl"
    feed.write_text("".join(_ticket(i, f"Customer {i} asks how refunds work for annual plans.") for i in range(3)))
    config = write_config(
        '[embedding]\nembedder = "none"\n\n'
        f'[sources.tickets]\nkind = "jsonl"\npath = "{feed}"\nfreshness = "near_realtime"\nevery = "1s"\n'
        'title_field = "subject"\n'
    )
    d = daemon(config=config)
    client = d.client()
    try:
        _wait("first sync of tickets", _synced(client, "tickets"), timeout=60, interval=0.1)
        phrase = "platypusinvoice duplicated"
        with open(feed, "a", encoding="utf-8") as handle:
            handle.write(_ticket(99, f"The {phrase} twice on the March statement; please credit one."))
        appended = time.monotonic()
        hits, _ = _wait("the appended line in search",
                        lambda: [h for h in client.call(ops.SEARCH, SearchIn(query=phrase)) if h["doc_key"] == "T-99"],
                        timeout=30, interval=0.05)
        latency = time.monotonic() - appended
        assert hits[0]["source"] == "tickets" and hits[0]["title"] == "Ticket 99"
        time.sleep(2.5)  # a few more polls
    finally:
        client.close()

    jobs = json.loads(d.cli("jobs", "--json", "--limit", "100").stdout)
    scheduled = [j for j in jobs if j["trigger"] == "schedule"]
    assert len(scheduled) >= 3, jobs  # the first sync, the one that found the new line, and later ones
    assert all(j["sources"] == ["tickets"] and j["kind"] == "ingest" for j in scheduled)
    assert all(j["status"] == "ok" for j in scheduled), [j for j in scheduled if j["status"] != "ok"]
    assert {j["trigger"] for j in jobs} == {"schedule"}  # nothing else ran: no watch on a near_realtime source
    news = sorted(j["summary"]["totals"]["new"] for j in scheduled)
    assert news[-2:] == [1, 3] and set(news[:-2]) <= {0}  # 3 at first, the appended line once, then nothing
    row = _source_rows(d)["tickets"]
    assert row["documents"] == 4 and row["stale"] is False and row["max_staleness_s"] == 300.0
    print(f"near_realtime (every 1s): appended line searchable in {latency * 1000:.0f} ms, "
          f"{len(scheduled)} scheduled syncs")
    assert latency <= 1.0 + 3.0, f"took {latency:.2f}s with every = 1s"


# --- staleness against the threshold ---------------------------------------------------------------


def _metrics(d: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """/metrics over the daemon's unix socket with its token, parsed: {name: {labels: value}}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    runtime = d.runtime
    assert runtime.uds
    with httpx.Client(transport=httpx.HTTPTransport(uds=runtime.uds), base_url="http://localhost",
                      headers={"Authorization": f"Bearer {runtime.token}"}) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_staleness_is_tracked_per_source_and_exported(tmp_path: Path, write_config, daemon) -> None:
    for name in ("tiny", "relaxed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "note.md").write_text(f"# {name}\n\nA note in the {name} source about invoices.\n")
    config = write_config(
        '[embedding]\nembedder = "none"\n\n'
        # Synced once by the scheduler, then not for an hour: stale after a second.
        '[sources.tiny]\nkind = "files"\npath = "tiny"\nmax_staleness = "1s"\nevery = "1h"\n\n'
        '[sources.relaxed]\nkind = "files"\npath = "relaxed"\nfreshness = "near_realtime"\n\n'
        # Pushed to only: never synced until an event arrives.
        '[sources.pushed]\nkind = "events"\n'
    )
    d = daemon(config=config)
    client = d.client()
    try:
        _wait("first syncs", _synced(client, "tiny", "relaxed"), timeout=60, interval=0.1)
        _wait("tiny past its threshold",
              lambda: {s["name"]: s for s in client.call(ops.SOURCES)}["tiny"]["stale"], timeout=30, interval=0.1)
    finally:
        client.close()

    rows = _source_rows(d)
    tiny, relaxed, pushed = rows["tiny"], rows["relaxed"], rows["pushed"]
    assert tiny["max_staleness_s"] == 1.0 and tiny["freshness"] == "batch"
    assert tiny["stale"] is True and tiny["staleness_s"] > 1.0 and tiny["documents"] == 1
    assert relaxed["max_staleness_s"] == 300.0 and relaxed["freshness"] == "near_realtime"
    assert relaxed["stale"] is False and 0 <= relaxed["staleness_s"] < 300.0
    assert pushed["freshness"] == "realtime" and pushed["max_staleness_s"] == 5.0
    assert pushed["staleness_s"] is None and pushed["last_success_at"] is None and pushed["stale"] is True

    # `ctx status --json`, answered by the daemon, carries the same per-source figures.
    status = json.loads(d.cli("status", "--json").stdout)
    assert status["daemon"]["pid"] == d.runtime.pid
    by_name = {s["name"]: s for s in status["sources"]}
    assert by_name["tiny"]["stale"] is True and by_name["tiny"]["staleness_s"] >= tiny["staleness_s"]
    assert by_name["relaxed"]["stale"] is False and by_name["pushed"]["stale"] is True

    # The scheduler kept to `every`: one sync of tiny, although it went stale.
    jobs = json.loads(d.cli("jobs", "--json", "--limit", "100").stdout)
    assert [j["trigger"] for j in jobs if j["sources"] == ["tiny"]] == ["schedule"]
    assert not [j for j in jobs if "pushed" in j["sources"]]  # an events source is never polled

    metrics = _metrics(d)
    staleness = metrics["ctx_source_staleness_seconds"]
    threshold = metrics["ctx_source_max_staleness_seconds"]
    stale = metrics["ctx_source_stale"]
    key = {n: (("freshness", rows[n]["freshness"]), ("source", n)) for n in rows}
    assert staleness[key["tiny"]] >= tiny["staleness_s"] > 1.0
    assert threshold[key["tiny"]] == 1.0 and stale[key["tiny"]] == 1.0
    assert 0 <= staleness[key["relaxed"]] < 300.0 and threshold[key["relaxed"]] == 300.0
    assert stale[key["relaxed"]] == 0.0
    assert key["pushed"] not in staleness  # never synced: no age to export, but it counts as stale
    assert threshold[key["pushed"]] == 5.0 and stale[key["pushed"]] == 1.0

    # An event is a sync of a pushed source: it is fresh from then on.
    client = d.client()
    try:
        job = client.call(ops.PUSH, EventsIn(source="pushed", events=[{"id": "e1", "text": "user opened invoices"}]))
        _wait("the event job", lambda: client.call(ops.JOB, JobIn(job_id=job["job_id"]))["status"] == "ok", timeout=30)
    finally:
        client.close()
    pushed = _source_rows(d)["pushed"]
    assert pushed["stale"] is False and pushed["last_success_at"] is not None and 0 <= pushed["staleness_s"] < 5.0
    assert _metrics(d)["ctx_source_stale"][key["pushed"]] == 0.0
