"""The cost ledger: arithmetic on known traces and ingest runs, and `ctx cost` over real requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ctx.observe.cost import cost_report
from ctx.observe.traces import TraceRecord, TraceStore
from ctx.store.catalog import Catalog

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _trace(n: int, when: datetime, recipe: str, tenant: str | None, model: str, cache: str,
           costs: dict[str, float], providers: dict[str, dict[str, Any]],
           candidates: list[dict[str, Any]]) -> TraceRecord:
    return TraceRecord(
        id=f"t{n}", created_at=when.isoformat(timespec="milliseconds"),
        request={"query": "q", "filters": {"tenant": tenant}}, config_fingerprint="f", candidates=candidates,
        timings={"total_ms": 5.0}, tokens=1000, budget=2000, model=model, format="markdown",
        encoding="cl100k_base", rendered=b"x", degradations=[], recipe=recipe, providers=providers, cache=cache,
        cost=costs["total_usd"], costs=costs,
    )


def _costs(context: float, providers: float) -> dict[str, float]:
    return {"context_usd": context, "embedding_usd": 0.0, "providers_usd": providers,
            "total_usd": round(context + providers, 8)}


@pytest.fixture
def ledger(tmp_path: Path) -> Catalog:
    catalog = Catalog(tmp_path / "catalog.db")
    store = TraceStore(catalog)
    api_ok = {"status": "ok", "cost": 0.005}
    policy = {"status": "ok", "cost": 0.0}
    docs_block = {"provider": "retrieval", "source": "docs", "kept": True, "token_count": 300, "score": 0.03}
    # Two days ago, for acme: the api gave two blocks, one was kept (~100 tokens by its 400 characters).
    store.write(_trace(1, NOW - timedelta(days=2), "support", "acme", "gpt-4o", "miss", _costs(0.01, 0.005),
                       {"api": api_ok, "policy": policy},
                       [{"provider": "api", "source": "api", "kept": True, "start": 0, "end": 400, "score": 0.5},
                        {"provider": "api", "source": "api", "kept": False, "start": 0, "end": 400, "score": 0.2},
                        docs_block]))
    # Today, for globex, served from the context cache: its outcomes are the original request's, not paid again.
    store.write(_trace(2, NOW - timedelta(hours=1), "support", "globex", "gpt-4o", "l1", _costs(0.01, 0.0),
                       {"api": api_ok, "policy": policy}, [{**docs_block, "token_count": 200}]))
    # Today, no tenant, a local model: the api call failed (still paid) and nothing was kept.
    store.write(_trace(3, NOW - timedelta(minutes=5), "default", None, "local", "miss", _costs(0.002, 0.005),
                       {"api": {"status": "failed", "cost": 0.005}}, []))
    # Outside the window.
    store.write(_trace(4, NOW - timedelta(days=30), "support", "acme", "gpt-4o", "miss", _costs(1.0, 0.0), {}, []))
    summary = {"totals": {"tokens_embedded": 3000, "embedding_usd": 0.003}, "sources": []}
    catalog.db.table("ingest_runs").insert({"id": "r1", "created_at": (NOW - timedelta(days=1)).isoformat(),
                                            "started_at": (NOW - timedelta(days=1)).isoformat(), "status": "ok",
                                            "summary": json.dumps(summary)})
    return catalog


def _by(report: dict[str, Any], dimension: str) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in report["by"][dimension]}


def test_totals_and_groupings_add_up(ledger: Catalog) -> None:
    report = cost_report(ledger, "7d", NOW)
    assert report["requests"] == 3
    assert report["total_usd"] == pytest.approx(0.032)
    assert report["per_request_usd"] == pytest.approx(0.032 / 3)
    assert report["breakdown"] == pytest.approx({"context_usd": 0.022, "providers_usd": 0.01, "embedding_usd": 0.0})
    days = report["by"]["day"]
    assert [d["key"] for d in days] == ["2026-11-29", "2026-12-01"]  # oldest first
    assert [d["total_usd"] for d in days] == pytest.approx([0.015, 0.017])
    assert {k: e["total_usd"] for k, e in _by(report, "recipe").items()} == pytest.approx(
        {"support": 0.025, "default": 0.007})
    assert {k: e["total_usd"] for k, e in _by(report, "tenant").items()} == pytest.approx(
        {"acme": 0.015, "globex": 0.01, "(none)": 0.007})
    assert report["ingest"] == {"runs": 1, "tokens_embedded": 3000, "embedding_usd": 0.003}


def test_provider_calls_count_once_and_failures_are_waste(ledger: Catalog) -> None:
    api = _by(cost_report(ledger, "7d", NOW), "provider")["api"]
    # Three requests listed it, but the cached one made no call: two calls at $0.005.
    assert (api["requests"], api["calls"], api["failures"]) == (3, 2, 1)
    assert api["total_usd"] == pytest.approx(0.01) and api["per_call_usd"] == pytest.approx(0.005)
    assert (api["blocks"], api["kept"], api["kept_share"]) == (2, 1, 0.5)
    # Half of the first call's blocks were dropped; the failed call bought nothing.
    assert api["wasted_usd"] == pytest.approx(0.0025 + 0.005)


def test_context_cost_is_split_over_sources_by_kept_tokens(ledger: Catalog) -> None:
    sources = _by(cost_report(ledger, "7d", NOW), "source")
    # Trace 1: api ~100 tokens (400 characters) and docs 300 share $0.01; trace 2: docs alone, $0.01.
    assert sources["api"]["total_usd"] == pytest.approx(0.0025)
    assert sources["docs"]["total_usd"] == pytest.approx(0.0075 + 0.01)
    assert sources["docs"]["tokens"] == 500 and sources["docs"]["requests"] == 2
    assert sources["docs"]["share"] == pytest.approx(0.0175 / 0.022, abs=1e-4)


def test_drivers_and_what_to_cut_first(ledger: Catalog) -> None:
    report = cost_report(ledger, "7d", NOW)
    grand = 0.032 + 0.003  # requests and ingest embeddings
    drivers = [(d["kind"], d["key"]) for d in report["drivers"]]
    assert drivers == [("recipe", "support"), ("model", "gpt-4o"), ("source", "docs"), ("tenant", "acme"),
                       ("provider", "api")]
    assert report["drivers"][0]["share"] == pytest.approx(0.025 / grand, abs=1e-4)
    assert [c["provider"] for c in report["cut_first"]] == ["api"]  # the only provider that costs anything
    assert "1 failed calls" in report["cut_first"][0]["why"]


def test_the_window_is_honoured(ledger: Catalog) -> None:
    hour = cost_report(ledger, "1h", NOW)
    assert hour["requests"] == 2 and hour["total_usd"] == pytest.approx(0.017)
    assert hour["ingest"]["runs"] == 0
    month = cost_report(ledger, "31d", NOW)
    assert month["requests"] == 4


POLICY = "# Policy\n\nAnswer precisely and cite the page you used.\n"


@pytest.fixture
def config(tmp_path: Path, write_config: Any) -> Path:
    (tmp_path / "policy.md").write_text(POLICY)
    return write_config('''
[embedding]
embedder = "none"

[pricing]
models = { "test-model" = 0.004 }

[providers.policy]
kind = "static"
paths = ["policy.md"]
cost = 0.002

[recipes.ok]
providers.policy = { criticality = "critical" }
''')


def test_ctx_cost_matches_the_traces(ctx_cli: Any, config: Path) -> None:
    for query in ("what is the policy?", "what is the policy?", "cite pages?"):
        ctx_cli("--config", str(config), "assemble", query, "--recipe", "ok", "--model", "test-model", "--json")
    traces = ctx_cli("--config", str(config), "traces", "--json").json()
    report = ctx_cli("--config", str(config), "cost", "--json").json()
    assert report["requests"] == len(traces) == 3
    assert report["total_usd"] == pytest.approx(sum(t["cost"] for t in traces), abs=1e-8)
    policy = _by(report, "provider")["policy"]
    # One call: the repeated request came from the context cache, and the other query reused the policy
    # provider's cached result (a static provider reads nothing from the request).
    assert policy["calls"] == 1 and policy["total_usd"] == pytest.approx(0.002)
    assert _by(report, "recipe")["ok"]["requests"] == 3

    text = ctx_cli("--config", str(config), "cost", "--since", "1h").stdout
    assert "3 requests" in text and "by recipe" in text and "cut first policy" in text


@pytest.mark.parametrize("since", ["yesterday", "0s", "-1h"])
def test_bad_since_is_a_one_line_error(since: str, ctx_cli: Any, config: Path) -> None:
    out = ctx_cli("--config", str(config), "cost", "--since", since, ok=False)
    assert out.exit_code == 2 and out.stdout == ""
    assert "--since" in out.stderr and "\n" not in out.stderr.strip()


@pytest.mark.model
def test_ingest_records_what_embedding_cost(docs_dir: Path, write_config: Any, ctx_cli: Any) -> None:
    config = write_config(f'''
[pricing]
embedding = 0.0001

[sources.docs]
kind = "files"
path = "{docs_dir}"
''')
    first = ctx_cli("--config", str(config), "ingest", "--json").json()
    from ctx.workspace import Workspace

    ws = Workspace.open(config)
    try:
        chunk_tokens = ws.catalog.db.execute("select sum(token_count) from chunks").fetchone()[0]
    finally:
        ws.close()
    totals = first["totals"]
    assert totals["tokens_embedded"] == chunk_tokens > 0  # every chunk went through the model once
    assert totals["embedding_usd"] == pytest.approx(chunk_tokens / 1000 * 0.0001)
    (docs_dir / "new.md").write_text("# Webhooks\n\nWebhooks are retried five times with backoff.\n")
    second = ctx_cli("--config", str(config), "ingest", "--json").json()["totals"]
    assert 0 < second["tokens_embedded"] < chunk_tokens  # only the new document's chunks were embedded
    report = ctx_cli("--config", str(config), "cost", "--json").json()
    assert report["ingest"]["runs"] == 2
    assert report["ingest"]["embedding_usd"] == pytest.approx(totals["embedding_usd"] + second["embedding_usd"])
