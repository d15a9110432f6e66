"""Tenant isolation through the CLI with the real model: a tenant sees its data and shared data, never another's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Template, run_cli

ACME_SECRET = "zephyrquartz"
GLOBEX_SECRET = "marmalade-octopus"
GLOBEX_WORDS = ("marmalade", "octopus", "globex", "Globex")

TICKETS = [
    {
        "id": "acme-1",
        "account": "acme",
        "text": f"Acme asked how to rotate the API key for the {ACME_SECRET} integration after a leak.",
    },
    {
        "id": "acme-2",
        "account": "acme",
        "text": f"Acme's refund for the double charge was approved; reference {ACME_SECRET}-77.",
    },
    {
        "id": "globex-1",
        "account": "globex",
        "text": f"Globex asked how to rotate the API key for the {GLOBEX_SECRET} integration after a leak.",
    },
    {
        "id": "globex-2",
        "account": "globex",
        "text": f"Globex's refund for the double charge was approved; reference {GLOBEX_SECRET}-99.",
    },
]


def _build(root: Path) -> None:
    """Two tenants' tickets and shared docs, ingested with the real model."""
    with open(root / "tickets.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in TICKETS)
    docs = root / "docs"
    docs.mkdir()
    (docs / "api-keys.md").write_text(
        "# Rotating API keys\n\nTo rotate an API key after a leak, create a new key, deploy it, then revoke the old "
        "key from the dashboard.\n"
    )
    (docs / "refunds.md").write_text(
        "# Refunds\n\nA double charge is refunded in full to the original card within five business days.\n"
    )
    (root / "ctx.toml").write_text("""
[sources.tickets]
kind = "jsonl"
path = "tickets.jsonl"
tenant_field = "account"
criticality = "important"

[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
criticality = "critical"
""")
    summary = run_cli("ingest", "--json").json()
    assert summary["totals"]["new"] == 6 and summary["totals"]["quarantined"] == 0
    assert summary["model_id"] != "none"  # the real model, so the vector leg is filtered too


@pytest.fixture
def tenants(home_template: Callable[..., Template], copy_project: Callable[[Template], Path]) -> None:
    """This test's copy of the two-tenant project, ingested once per session."""
    copy_project(home_template("tenants", _build))


def _no_globex(payload: Any) -> None:
    text = json.dumps(payload)
    for word in GLOBEX_WORDS:
        assert word not in text, f"{word!r} leaked into a result scoped to acme"


QUERIES = [
    "how do I rotate an API key after a leak?",
    "refund for a double charge",
    GLOBEX_SECRET,
    f"Globex {GLOBEX_SECRET} reference",
]


# One ingest per test costs a second or two, so each test loops over the queries.
def test_assemble_for_acme_never_contains_globex(tenants: None, ctx_cli) -> None:
    for query in QUERIES:
        out = ctx_cli("assemble", query, "--tenant", "acme", "--budget", "4000", "--json").json()
        assert out["blocks"], query
        _no_globex(out["context"])
        _no_globex(out["blocks"])
        for block in out["blocks"]:
            assert block["source"] == "docs" or block["document"].startswith("acme-"), block
        # The trace the assembly wrote holds no globex candidate either: replays cannot leak it.
        trace = ctx_cli("replay", out["trace_id"], "--json").json()
        _no_globex(trace["candidates"])
        _no_globex(trace["context"])


def test_search_for_acme_never_contains_globex(tenants: None, ctx_cli) -> None:
    for query in QUERIES:
        hits = ctx_cli("search", query, "--tenant", "acme", "--limit", "50", "--json").json()
        assert hits, query
        _no_globex(hits)
        assert {h["tenant"] for h in hits} <= {"acme", None}


def test_acme_sees_its_own_tickets_and_shared_docs(tenants: None, ctx_cli) -> None:
    out = ctx_cli(
        "assemble", "rotate the API key after a leak", "--tenant", "acme", "--budget", "4000", "--json"
    ).json()
    documents = {b["document"] for b in out["blocks"]}
    assert "acme-1" in documents
    assert "api-keys.md" in documents
    assert ACME_SECRET in out["context"]
    hits = ctx_cli("search", ACME_SECRET, "--tenant", "acme", "--json").json()
    assert hits and hits[0]["doc_key"] in ("acme-1", "acme-2") and hits[0]["tenant"] == "acme"


def test_globex_secret_word_scoped_to_acme_finds_no_globex_data(tenants: None, ctx_cli) -> None:
    hits = ctx_cli("search", GLOBEX_SECRET, "--tenant", "acme", "--limit", "50", "--json").json()
    assert all(h["tenant"] in (None, "acme") for h in hits)
    _no_globex(hits)
    # Scoped to globex the same query does find it: the data is there, the scope hides it.
    own = ctx_cli("search", GLOBEX_SECRET, "--tenant", "globex", "--json").json()
    assert own and own[0]["doc_key"].startswith("globex-")


def test_without_tenant_only_shared_docs_appear(tenants: None, ctx_cli) -> None:
    for query in [*QUERIES, ACME_SECRET]:
        out = ctx_cli("assemble", query, "--budget", "4000", "--json").json()
        assert out["blocks"], "shared docs should still be found"
        assert {b["source"] for b in out["blocks"]} == {"docs"}
        assert ACME_SECRET not in out["context"]
        _no_globex(out["context"])
        hits = ctx_cli("search", query, "--limit", "50", "--json").json()
        assert hits and {h["source"] for h in hits} == {"docs"}
        assert all(h["tenant"] is None for h in hits)


def test_an_unknown_tenant_sees_only_shared_docs(tenants: None, ctx_cli) -> None:
    hits = ctx_cli(
        "search", "refund for a double charge", "--tenant", "initech", "--limit", "50", "--json"
    ).json()
    assert hits
    assert {h["source"] for h in hits} == {"docs"}
