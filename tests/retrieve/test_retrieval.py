"""Hybrid retrieval on a small real corpus with the real model: each leg finds what only it can, filters hold,
and no query text can break the FTS5 query."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctx.retrieve.lexical import fts_query
from tests.helpers import Template, run_cli

pytestmark = pytest.mark.model

DOCS = {
    "docs/billing/refunds.md": (
        "# Reimbursements\n\nCustomers who were billed twice for one subscription period receive reimbursement "
        "to the original card within ten business days. Finance staff approve reimbursements above 500 euros.\n"
    ),
    "docs/billing/invoices.md": (
        "# Invoices\n\nInvoices are issued on each billing date and emailed as PDF files. Invoice numbers follow "
        "the pattern INV-YYYY-MM. Refund credit notes appear on the next invoice.\n"
    ),
    "docs/security/sso.md": (
        "# Single sign-on\n\nConfigure SAML single sign-on with Okta or Azure AD. Map the email attribute and "
        "upload the identity provider certificate before enforcing SSO for every member.\n"
    ),
    "docs/api/errors.md": (
        "# Error codes\n\nThe API returns LMN-4031 when the webhook signing secret has expired; call "
        "rotate_signing_secret_v2 to issue a new one. LMN-2002 means the project is archived.\n"
    ),
    "docs/api/rate-limits.md": (
        "# Rate limits\n\nEach API key may send 600 requests per minute. Exceeding the limit returns HTTP 429 "
        "with a Retry-After header; clients should back off exponentially.\n"
    ),
    "docs/guides/webhooks.md": (
        "# Webhooks\n\nWebhooks deliver events to your HTTPS endpoint. Deliveries that fail are retried with "
        "backoff for up to three days, and each payload is signed with HMAC SHA-256.\n"
    ),
    "tickets/t-101.md": (
        "# Ticket 101: refund not received\n\nA customer asked where their refund is after a double charge on "
        "the billing page. Support pointed them to the refunds policy.\n"
    ),
    "tickets/t-102.md": (
        "# Ticket 102: SSO login loop\n\nAfter enabling SAML the customer saw a login loop; the certificate "
        "had expired and was replaced.\n"
    ),
}

CONFIG = """
[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
criticality = "critical"

[sources.tickets]
kind = "files"
path = "tickets"
include = ["**/*.md"]
criticality = "enhancing"
"""


def _build(root: Path) -> None:
    for rel, text in DOCS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "ctx.toml").write_text(CONFIG)
    res = run_cli("ingest", "--json").json()
    assert res["totals"]["new"] == len(DOCS)


@pytest.fixture
def corpus(home_template: Callable[..., Template], copy_project: Callable[[Template], Path]) -> Path:
    """This test's copy of the small corpus, ingested with the real model once per session."""
    return copy_project(home_template("retrieval", _build))


def _search(ctx_cli, query: str, *args: str) -> list[dict]:
    return ctx_cli("search", query, "--json", *args).json()


def _terms_in(text: str) -> set[str]:
    return {t.strip('"') for t in fts_query(text).split(" OR ") if t}


def test_paraphrase_with_no_shared_words_is_found_by_the_vector_leg(corpus: Path, ctx_cli) -> None:
    query = "duplicate payment compensation"
    # No query word is anywhere in the docs source, so the lexical leg is empty: the vectors decide.
    for key, text in DOCS.items():
        if key.startswith("docs/"):
            assert not _terms_in(query) & _terms_in(text), key
    hits = _search(ctx_cli, query, "--source", "docs")
    assert hits, "no hits at all"
    top = hits[0]
    assert top["doc_key"] == "billing/refunds.md", [h["doc_key"] for h in hits]
    assert top["vector_rank"] == 1 and top["lexical_rank"] is None
    assert top["vector_distance"] is not None
    assert all(h["lexical_rank"] is None for h in hits)


def test_paraphrase_found_by_vectors_even_when_other_docs_share_words(corpus: Path, ctx_cli) -> None:
    query = "getting money back after duplicate payment"
    # "back" and "after" are in the rate-limit page ("back off", "Retry-After"), not in the target.
    assert not _terms_in(query) & _terms_in(DOCS["docs/billing/refunds.md"])
    hits = {h["doc_key"]: h for h in _search(ctx_cli, query, "--source", "docs", "--limit", "20")}
    assert "billing/refunds.md" in hits, list(hits)
    target = hits["billing/refunds.md"]
    assert target["vector_rank"] == 1 and target["lexical_rank"] is None
    # The fusion ranks it among the top results on the vector leg alone.
    assert list(hits).index("billing/refunds.md") <= 2, list(hits)


def test_paraphrase_about_sign_in_finds_the_sso_doc(corpus: Path, ctx_cli) -> None:
    query = "log in through our company's identity provider"
    hits = _search(ctx_cli, query, "--source", "docs")
    assert hits[0]["doc_key"] == "security/sso.md", [h["doc_key"] for h in hits]
    assert hits[0]["vector_rank"] is not None


@pytest.mark.parametrize("query", ["LMN-4031", "rotate_signing_secret_v2"])
def test_exact_codes_and_identifiers_are_found_by_the_lexical_leg(corpus: Path, ctx_cli, query: str) -> None:
    hits = _search(ctx_cli, query)
    assert hits[0]["doc_key"] == "api/errors.md", [h["doc_key"] for h in hits]
    assert hits[0]["lexical_rank"] == 1
    # Only that document has the code: nothing else comes from the lexical leg.
    assert all(h["lexical_rank"] is None for h in hits[1:])


def test_source_filter_holds(corpus: Path, ctx_cli) -> None:
    unfiltered = _search(ctx_cli, "refund double charge", "--limit", "20")
    assert {h["source"] for h in unfiltered} == {"docs", "tickets"}
    for source in ("docs", "tickets"):
        hits = _search(ctx_cli, "refund double charge", "--source", source, "--limit", "20")
        assert hits and {h["source"] for h in hits} == {source}
    both = _search(ctx_cli, "refund double charge", "--source", "docs", "--source", "tickets", "--limit", "20")
    assert {h["chunk_id"] for h in both} == {h["chunk_id"] for h in unfiltered}


def test_path_filter_holds(corpus: Path, ctx_cli) -> None:
    hits = _search(ctx_cli, "refund SAML webhook rate limit", "--path", "billing/**", "--limit", "20")
    assert hits and {h["doc_key"] for h in hits} <= {"billing/refunds.md", "billing/invoices.md"}
    assert "billing/invoices.md" in {h["doc_key"] for h in hits}
    # The glob applies to document keys in every source; tickets have no billing/ folder.
    assert _search(ctx_cli, "refund", "--path", "billing/**", "--source", "tickets") == []
    single = _search(ctx_cli, "SAML", "--path", "security/*.md", "--limit", "20")
    assert single and {h["doc_key"] for h in single} == {"security/sso.md"}
    out = ctx_cli("assemble", "refund", "--path", "billing/**", "--budget", "2000", "--json").json()
    assert out["blocks"] and all(b["document"].startswith("billing/") for b in out["blocks"])


@pytest.mark.parametrize(
    "query",
    ['"AND OR NEAR( * ^ -', 'NEAR(refund invoice, 2)', 'refund*', '^refund', 'title:refund', '"', "'",
     "(((", 'NOT AND OR', '-refund', '"unbalanced quote refund', "{col1 col2}: x", "*", "😀 ✓ 日本語"],
)
def test_fts_syntax_in_a_query_never_errors(corpus: Path, ctx_cli, query: str) -> None:
    res = ctx_cli("search", "--json", "--", query)
    assert isinstance(res.json(), list)
    out = ctx_cli("assemble", "--budget", "500", "--json", "--", query).json()
    assert out["tokens"] <= 500


@pytest.mark.parametrize("command", [("search", "--json"), ("assemble", "--budget", "500", "--json")])
def test_a_nul_in_a_query_is_refused_in_one_line(corpus: Path, ctx_cli, command: tuple[str, ...]) -> None:
    """No trace or store keeps a NUL (issue 13): the request is refused before anything runs, never a crash."""
    res = ctx_cli(*command, "--", "a\x00b", ok=False)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.splitlines() == ["error: invalid request: query: the value holds a NUL character (at character 1)"]


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_fts_query_is_always_valid_fts5(text: str) -> None:
    con = sqlite3.connect(":memory:")
    con.execute("create virtual table t using fts5(heading, text, tokenize='porter')")
    con.execute("insert into t values ('refunds', 'refund AND OR NEAR the * card ^ - and 日本語 😀')")
    match = fts_query(text)
    if match:  # empty only when the text has no word at all; the lexical leg is then skipped
        con.execute("select rowid from t where t match ? order by bm25(t)", [match]).fetchall()
