"""Service level objectives: window arithmetic, each SLI on known traces and syncs, and the sync ledger
filled by real ingests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ctx.observe.slo import slo_report, window_figures
from ctx.observe.traces import TraceRecord, TraceStore
from ctx.settings import Settings
from ctx.store.catalog import Catalog

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _at(**ago: float) -> str:
    return (NOW - timedelta(**ago)).isoformat(timespec="milliseconds")


def _trace(n: int, created_at: str, total_ms: float = 10.0, status: str = "ok",
           degradations: list[dict[str, Any]] | None = None, candidates: list[dict[str, Any]] | None = None,
           replay_of: str | None = None) -> TraceRecord:
    return TraceRecord(
        id=f"t{n:05d}", created_at=created_at, request={"query": f"q{n}"}, config_fingerprint="f",
        candidates=candidates or [], timings={"total_ms": total_ms}, tokens=10, budget=100, model="m",
        format="markdown", encoding="cl100k_base", rendered=b"x", degradations=degradations or [],
        replay_of=replay_of, status=status,
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "catalog.db")


def _objective(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in report["objectives"] if o["name"] == name)


def test_window_figures_budget_and_burn() -> None:
    exact = window_figures(990, 1000, 0.99)  # 1% bad against a 1% budget: spent exactly
    assert exact == {"good": 990, "total": 1000, "sli": 0.99, "budget_left": pytest.approx(0.0),
                     "burn_rate": pytest.approx(1.0), "met": True}
    half = window_figures(995, 1000, 0.99)
    assert half["burn_rate"] == pytest.approx(0.5) and half["budget_left"] == pytest.approx(0.5) and half["met"]
    over = window_figures(950, 1000, 0.99)  # 5% bad against a 1% budget: five times too fast
    assert over["burn_rate"] == pytest.approx(5.0) and over["budget_left"] == pytest.approx(-4.0)
    assert over["met"] is False
    assert window_figures(0, 0, 0.99) == {"good": 0, "total": 0, "sli": None, "budget_left": None,
                                          "burn_rate": None, "met": None}


def test_latency_counts_requests_within_the_threshold_per_window(catalog: Catalog) -> None:
    store = TraceStore(catalog)
    # Last hour: 8 fast, 2 slow. Earlier today: 10 fast. Three days ago: 10 slow. Nine days ago: not counted.
    n = 0
    for minutes, ms in [(5, 10.0)] * 8 + [(10, 80.0)] * 2:
        n += 1
        store.write(_trace(n, _at(minutes=minutes), ms))
    for _ in range(10):
        n += 1
        store.write(_trace(n, _at(hours=5), 20.0))
    for _ in range(10):
        n += 1
        store.write(_trace(n, _at(days=3), 500.0))
    store.write(_trace(n + 1, _at(days=9), 500.0))
    store.write(_trace(n + 2, _at(minutes=1), 900.0, replay_of="t00001"))  # a rerun: not traffic

    latency = _objective(slo_report(catalog, Settings(), NOW), "latency")
    assert latency["target"] == 0.99 and "50 ms" in latency["description"]
    hour, day, week = (latency["windows"][w] for w in ("1h", "1d", "7d"))
    assert (hour["good"], hour["total"], hour["sli"]) == (8, 10, 0.8)
    assert (day["good"], day["total"]) == (18, 20)
    assert (week["good"], week["total"]) == (18, 30)
    assert hour["met"] is False and hour["burn_rate"] == pytest.approx(20.0)
    assert hour["p50_ms"] == 10.0 and hour["p99_ms"] == 80.0 and week["p99_ms"] == 500.0


def test_availability_needs_every_critical_block(catalog: Catalog) -> None:
    store = TraceStore(catalog)
    dropped = {"kind": "dropped", "chunk_id": "c1", "source": "docs", "criticality": "critical", "reason": "budget"}
    truncated = {**dropped, "kind": "truncated"}
    late_optional = {"kind": "late", "chunk_id": "", "source": "api", "criticality": "optional", "reason": "late"}
    stale_critical = {"kind": "stale", "chunk_id": "", "source": "policy", "criticality": "critical",
                      "reason": "served from cache"}
    rows = [
        _trace(1, _at(minutes=1)),
        _trace(2, _at(minutes=2), status="failed"),  # the critical provider gave nothing
        _trace(3, _at(minutes=3), degradations=[dropped]),  # a critical block did not fit
        _trace(4, _at(minutes=4), degradations=[truncated]),  # it was there, shortened
        _trace(5, _at(minutes=5), degradations=[late_optional]),  # only an optional block missing
        _trace(6, _at(minutes=6), degradations=[stale_critical]),  # served stale: still present
    ]
    for row in rows:
        store.write(row)
    hour = _objective(slo_report(catalog, Settings(), NOW), "availability")["windows"]["1h"]
    assert (hour["good"], hour["total"]) == (4, 6)


def test_relevance_is_the_mean_similarity_of_kept_vector_hits(catalog: Catalog) -> None:
    store = TraceStore(catalog)
    near = [{"kept": True, "vector_distance": 0.2}, {"kept": True, "vector_distance": 0.4},
            {"kept": False, "vector_distance": 0.99}]  # dropped blocks do not count
    far = [{"kept": True, "vector_distance": 0.9}]
    lexical_only = [{"kept": True, "vector_distance": None, "lexical_rank": 1}]
    for n, candidates in enumerate((near, far, lexical_only), 1):
        trace = _trace(n, _at(minutes=n), candidates=candidates)
        store.write(trace)
    assert TraceStore(catalog).get("t00001").relevance == pytest.approx(0.7)
    hour = _objective(slo_report(catalog, Settings(), NOW), "relevance")["windows"]["1h"]
    # 0.7 and 0.1 similarity; the lexical-only request has no relevance signal and is not counted.
    assert (hour["good"], hour["total"]) == (1, 2)
    assert hour["mean"] == pytest.approx(0.4)


def test_freshness_counts_syncs_within_their_threshold(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    settings = Settings.model_validate(
        {"sources": {"docs": {"kind": "files", "path": str(tmp_path / "docs"), "max_staleness": "1h"},
                     "sessions": {"kind": "events"}}})
    limit = 3600.0
    catalog.record_sync("docs", "j1", _at(hours=5), True, None, limit)  # first sync: nothing to be late against
    catalog.record_sync("docs", "j2", _at(hours=4.5), True, _at(hours=5), limit)  # 30 min later: good
    catalog.record_sync("docs", "j3", _at(minutes=50), True, _at(hours=4.5), limit)  # 3h40m gap: late
    catalog.record_sync("docs", "j4", _at(minutes=20), False, _at(minutes=50), limit)  # failed: bad
    catalog.record_sync("docs", "j5", _at(minutes=10), True, _at(minutes=50), limit)  # 40 min after a good one
    catalog.record_sync("sessions", "j6", _at(minutes=5), True, _at(days=2), 5.0)  # pushed: not an objective
    fresh = _objective(slo_report(catalog, settings, NOW), "freshness")["windows"]
    assert (fresh["1h"]["good"], fresh["1h"]["total"]) == (1, 3)
    assert (fresh["1d"]["good"], fresh["1d"]["total"]) == (3, 5)
    assert fresh["1d"]["worst_lag_share"] == pytest.approx((3 * 3600 + 40 * 60) / 3600, abs=1e-3)  # j3: 3h40m


def test_disabled_objectives_are_left_out(catalog: Catalog) -> None:
    settings = Settings.model_validate({"slo": {"relevance": {"enabled": False}, "latency": {"threshold": "5ms"}}})
    report = slo_report(catalog, settings, NOW)
    assert [o["name"] for o in report["objectives"]] == ["latency", "availability", "freshness"]
    assert "5 ms" in report["objectives"][0]["description"]
    assert all(w["total"] == 0 and w["sli"] is None for o in report["objectives"] for w in o["windows"].values())


def test_real_ingests_fill_the_sync_ledger_and_ctx_slo_reports_it(docs_dir: Path, write_config: Any,
                                                                   ctx_cli: Any) -> None:
    config = write_config(f'''
[embedding]
embedder = "none"

[sources.docs]
kind = "files"
path = "{docs_dir}"
max_staleness = "1h"

# Nothing listens on loopback port 9: every fetch of this source fails at once (connection refused).
[sources.gone]
kind = "http"
url = "http://127.0.0.1:9/items"
retries = 0
''')
    ctx_cli("--config", str(config), "ingest", "--json", ok=False)
    ctx_cli("--config", str(config), "ingest", "docs", "--json")
    ctx_cli("--config", str(config), "assemble", "how do I rotate an API key?", "--json")

    report = ctx_cli("--config", str(config), "slo", "--json").json()
    fresh = _objective(report, "freshness")["windows"]["1h"]
    # docs twice (both within an hour of the one before), the missing folder once, failed.
    assert (fresh["good"], fresh["total"]) == (2, 3)
    latency = _objective(report, "latency")["windows"]["1h"]
    assert latency["total"] == 1
    assert _objective(report, "availability")["windows"]["1h"] == \
        {"good": 1, "total": 1, "sli": 1.0, "budget_left": 1.0, "burn_rate": 0.0, "met": True}

    text = ctx_cli("--config", str(config), "slo").stdout
    for name in ("latency", "availability", "freshness", "relevance"):
        assert name in text
    assert "no data" in text  # relevance: a lexical-only home has no similarity to measure

    from ctx.workspace import Workspace

    ws = Workspace.open(config)
    try:
        rows = list(ws.catalog.db.query("select source, ok, lag_s, limit_s from syncs order by id"))
    finally:
        ws.close()
    docs = [r for r in rows if r["source"] == "docs"]
    assert [r["ok"] for r in docs] == [1, 1] and docs[0]["lag_s"] is None and docs[1]["lag_s"] > 0
    assert docs[1]["limit_s"] == 3600.0
    assert [r["ok"] for r in rows if r["source"] == "gone"] == [0]


def test_bad_objective_is_a_one_line_config_error(write_config: Any, ctx_cli: Any) -> None:
    config = write_config('[slo.latency]\ntarget = 1.5\n')
    out = ctx_cli("--config", str(config), "slo", ok=False)
    assert out.exit_code == 2 and "slo.latency.target" in out.stderr and "\n" not in out.stderr.strip()


@pytest.mark.model
def test_relevance_is_measured_with_the_real_model(docs_dir: Path, write_config: Any, ctx_cli: Any) -> None:
    config = write_config(f'''
[sources.docs]
kind = "files"
path = "{docs_dir}"
''')
    ctx_cli("--config", str(config), "ingest", "--json")
    out = ctx_cli("--config", str(config), "assemble", "how do I rotate an API key?", "--json").json()
    trace = ctx_cli("--config", str(config), "replay", out["trace_id"], "--json").json()
    kept = [c for c in trace["candidates"] if c["kept"] and c["vector_distance"] is not None]
    assert kept
    expected = sum(1 - c["vector_distance"] for c in kept) / len(kept)
    relevance = _objective(ctx_cli("--config", str(config), "slo", "--json").json(), "relevance")["windows"]["1h"]
    assert relevance["total"] == 1 and relevance["mean"] == pytest.approx(expected, abs=1e-3)
    assert 0.0 < relevance["mean"] <= 1.0


def test_the_daemon_reports_the_same_objectives(docs_dir: Path, write_config: Any, daemon: Any) -> None:
    config = write_config(f'''
[embedding]
embedder = "none"

[daemon]
scheduler = false

[sources.docs]
kind = "files"
path = "{docs_dir}"
''')
    d = daemon(config=config)
    d.cli("ingest", "--json")
    d.cli("ingest", "--json")
    d.cli("assemble", "how do I rotate an API key?", "--json")
    through = json.loads(d.cli("slo", "--json").stdout)

    from ctx.workspace import Workspace

    ws = Workspace.open(config, d.env)
    try:
        here = ws.slo()
    finally:
        ws.close()
    assert [o["name"] for o in through["objectives"]] == [o["name"] for o in here["objectives"]]
    for mine, theirs in zip(here["objectives"], through["objectives"], strict=True):
        for window in ("1h", "1d", "7d"):
            assert (mine["windows"][window]["good"], mine["windows"][window]["total"]) == \
                (theirs["windows"][window]["good"], theirs["windows"][window]["total"]), (mine["name"], window)
    fresh = _objective(through, "freshness")["windows"]["1h"]
    assert (fresh["good"], fresh["total"]) == (2, 2)  # both syncs of docs, by the daemon's job lanes
    assert _objective(through, "availability")["windows"]["1h"]["total"] == 1
