"""`ctx demo`: the README's first command, on the bundled fixtures, with the real model.

The first demo runs once per session (the ``demo_home`` fixture: the real model ingests the fixtures); each
test gets a copy of the home it made, with what it printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, Template


def test_demo_ingests_the_fixtures_and_its_trace_replays(demo_home: Template, ctx_cli,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = demo_home.output  # the first `ctx demo --json`, run with CTX_HOME=demo_home.home
    ingest, assembled = out["ingest"], out["assemble"]
    assert ingest["ok"]
    by_source = {s["source"]: s for s in ingest["sources"]}
    assert by_source["docs"]["new"] == len([p for p in (FIXTURES / "docs").rglob("*") if p.is_file()])
    assert by_source["tickets"]["quarantined"] == 3  # the three bad lines the fixtures keep on purpose
    assert by_source["customers"]["new"] > 0
    # The demo asks the `support` recipe for user u123 of tenant acme: the policy, their profile, their own
    # tickets (newest first) and the docs.
    assert assembled["blocks"] and assembled["tokens"] <= assembled["budget"]
    assert assembled["recipe"] == "support"
    assert all(p["status"] == "ok" for p in assembled["providers"].values()), assembled["providers"]
    by_provider = {p: [b for b in assembled["blocks"] if b["provider"] == p] for p in assembled["providers"]}
    assert by_provider["policy"] and by_provider["retrieval"]
    assert "Dana Whitfield" in by_provider["profile"][0]["text"]  # u123, from customers.db
    tickets = [b["document"] for b in by_provider["history"]]
    assert tickets, "the demo should show that the user's tickets reach the context"
    assert [b["as_of"] for b in by_provider["history"]] == sorted((b["as_of"] for b in by_provider["history"]),
                                                                   reverse=True)
    assert Path(out["home"]) == demo_home.home / "demo"

    # A second demo (on this test's copy of that home) finds everything unchanged and embeds nothing.
    second = ctx_cli("demo", "--json").json()
    again = second["ingest"]
    assert Path(second["home"]) == Path(os.environ["CTX_HOME"]) / "demo"
    assert again["totals"]["chunks_embedded"] == 0 and again["totals"]["unchanged"] == ingest["totals"]["new"]

    # The trace the demo printed replays byte for byte from the demo's own home.
    monkeypatch.setenv("CTX_CONFIG", str(FIXTURES / "demo.toml"))
    monkeypatch.setenv("CTX_HOME", second["home"])
    replayed = ctx_cli("replay", assembled["trace_id"])
    assert replayed.stdout == assembled["context"]


def test_demo_tickets_are_acme_only(demo_home: Template, ctx_cli) -> None:
    out = ctx_cli("demo", "--json", "--query", "webhook signature rotation problems").json()
    import sqlite3

    db = sqlite3.connect(Path(out["home"]) / "catalog.db")
    rows = db.execute("select key, tenant, metadata from documents where source = 'tickets'").fetchall()
    tenants = {key: tenant for key, tenant, _ in rows}
    users = {key: json.loads(meta).get("user_id") for key, _, meta in rows}
    blocks = out["assemble"]["blocks"]
    shown = [b["document"] for b in blocks if b["source"] in ("tickets", "customers") or b["provider"] == "history"]
    assert shown and all(tenants.get(key, "acme") == "acme" for key in shown)
    # The history provider shows the asking user's tickets only.
    assert all(users[b["document"]] == "u123" for b in blocks if b["provider"] == "history")
