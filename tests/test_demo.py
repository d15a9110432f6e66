"""`ctx demo`: the README's first command, on the bundled fixtures, with the real model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import FIXTURES


def test_demo_ingests_the_fixtures_and_its_trace_replays(ctx_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    out = ctx_cli("demo", "--json").json()
    ingest, assembled = out["ingest"], out["assemble"]
    assert ingest["ok"]
    by_source = {s["source"]: s for s in ingest["sources"]}
    assert by_source["docs"]["new"] == len([p for p in (FIXTURES / "docs").rglob("*") if p.is_file()])
    assert by_source["tickets"]["quarantined"] == 3  # the three bad lines the fixtures keep on purpose
    assert by_source["customers"]["new"] > 0
    # The demo assembles for tenant acme: acme's tickets may appear, nobody else's.
    assert assembled["blocks"] and assembled["tokens"] <= assembled["budget"]
    ticket_blocks = [b for b in assembled["blocks"] if b["source"] == "tickets"]
    assert ticket_blocks, "the demo should show that tickets reach the context"
    assert Path(out["home"]) == Path(os.environ["CTX_HOME"]) / "demo"

    # A second demo finds everything unchanged and embeds nothing.
    again = ctx_cli("demo", "--json").json()["ingest"]
    assert again["totals"]["chunks_embedded"] == 0 and again["totals"]["unchanged"] == ingest["totals"]["new"]

    # The trace the demo printed replays byte for byte from the demo's own home.
    monkeypatch.setenv("CTX_CONFIG", str(FIXTURES / "demo.toml"))
    monkeypatch.setenv("CTX_HOME", out["home"])
    replayed = ctx_cli("replay", assembled["trace_id"])
    assert replayed.stdout == assembled["context"]


def test_demo_tickets_are_acme_only(ctx_cli) -> None:
    out = ctx_cli("demo", "--json", "--query", "webhook signature rotation problems").json()
    import sqlite3

    db = sqlite3.connect(Path(out["home"]) / "catalog.db")
    tenants = dict(db.execute("select key, tenant from documents where source = 'tickets'").fetchall())
    shown = [b["document"] for b in out["assemble"]["blocks"] if b["source"] in ("tickets", "customers")]
    assert shown and all(tenants.get(key, "acme") == "acme" for key in shown)
