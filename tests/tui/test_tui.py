"""`ctx dash`: the figures (no Textual), the app driven by Textual's pilot over real homes and a real daemon,
and snapshots of its key screens on recorded data with a fixed clock."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widget import Widget

from ctx.errors import CtxError, NotFound, TransientError
from ctx.observe.stats import percentile
from ctx.tui import data, render
from ctx.tui.app import DashApp, build_app
from ctx.tui.data import Freshness
from ctx.tui.link import Link, daemon_link, local_link
from ctx.tui.screens.detail import TraceScreen
from ctx.tui.screens.help import HelpScreen
from ctx.tui.widgets.banner import Banner
from ctx.tui.widgets.traces import TraceTable
from tests.helpers import FIXTURES, ROOT, Template

RECORDED = json.loads((ROOT / "tests" / "data" / "dash_fixture.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 1, 1, 12, 30, 30, tzinfo=UTC)


def at(seconds_ago: float, now: datetime = NOW) -> str:
    return (now - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


# --- the figures ------------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = list(range(100, 0, -1))  # 100..1, unsorted on purpose
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(range(1, 11)), 99) == 10  # a p99 of few requests is the slowest one, a real request
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_by_minute() -> None:
    traces = [
        {"created_at": "2026-01-01T12:30:05+00:00", "total_ms": 10.0},
        {"created_at": "2026-01-01T12:30:25+00:00", "total_ms": 40.0},
        {"created_at": "2026-01-01T12:30:10+00:00", "total_ms": 20.0},
        {"created_at": "2026-01-01T12:30:20.500+00:00", "total_ms": 30.0},
        {"created_at": "2026-01-01T12:29:59.999+00:00", "total_ms": 5.0},
        {"created_at": "2026-01-01T12:00:59+00:00", "total_ms": 999.0},  # before the 30 minutes
        {"created_at": "2026-01-01T12:31:00+00:00", "total_ms": 999.0},  # after now (another clock)
        {"created_at": "2026-01-01T12:15:00", "total_ms": 7.0},  # no offset: UTC
    ]
    series = data.latency_by_minute(traces, NOW)
    assert len(series) == data.MINUTES == 30
    assert series[0].start == "2026-01-01T12:01:00+00:00" and series[-1].start == "2026-01-01T12:30:00+00:00"
    last = series[-1]
    assert (last.count, last.p50, last.p95, last.p99) == (4, 20.0, 40.0, 40.0)
    assert (series[-2].count, series[-2].p50, series[-2].p99) == (1, 5.0, 5.0)
    assert series[14].start.startswith("2026-01-01T12:15") and series[14].p50 == 7.0
    assert sum(m.count for m in series) == 6
    empty = [m for m in series if not m.count]
    assert len(empty) == 27 and all(m.p50 is None and m.p99 is None for m in empty)


def test_request_rate() -> None:
    traces = [{"created_at": at(10)} for _ in range(30)] + [{"created_at": at(120)} for _ in range(10)]
    assert data.request_rate(traces, NOW) == pytest.approx(0.5)
    assert data.request_rate([], NOW) == 0.0
    # Only the newest 200 are read: when all of them are inside the minute, the rate is over the span they cover.
    burst = [{"created_at": at(0.2 * i)} for i in range(200)]
    assert data.request_rate(burst, NOW, limit=200) == pytest.approx(200 / 39.8)


def test_freshness_levels_against_the_threshold() -> None:
    sources = [
        {"name": "fresh", "kind": "files", "max_staleness_s": 3600, "last_success_at": at(60)},
        {"name": "near", "kind": "files", "max_staleness_s": 3600, "last_success_at": at(3000)},
        {"name": "late", "kind": "jsonl", "max_staleness_s": 3600, "last_success_at": at(7200), "last_error": "boom"},
        {"name": "new", "kind": "sql", "max_staleness_s": 86400, "last_success_at": None},
        {"name": "skew", "kind": "files", "max_staleness_s": 60, "last_success_at": at(-5)},  # the future: lag 0
    ]
    rows = {r.name: r for r in data.freshness_rows(sources, NOW)}
    assert {n: r.level for n, r in rows.items()} == {"fresh": "ok", "near": "warn", "late": "stale", "new": "never",
                                                     "skew": "ok"}
    assert rows["fresh"].lag_s == pytest.approx(60) and rows["late"].lag_s == pytest.approx(7200)
    assert rows["new"].lag_s is None and rows["skew"].lag_s == 0.0
    assert rows["late"] == Freshness("late", "jsonl", pytest.approx(7200), 3600.0, "stale", "boom")


def test_cost_view_per_request_and_per_day() -> None:
    report = {
        "since": "2025-12-25T12:30:30+00:00", "requests": 5, "total_usd": 0.05, "per_request_usd": 0.01,
        "breakdown": {"context_usd": 0.04, "embedding_usd": 0.0, "providers_usd": 0.01},
        "by": {"day": [{"key": "2026-01-01", "requests": 2, "total_usd": 0.03},
                       {"key": "2025-12-30", "requests": 3, "total_usd": 0.02}]},
    }
    view = data.cost_view(report, NOW)
    assert (view.requests, view.total_usd, view.per_request_usd) == (5, 0.05, 0.01)
    assert (view.today_usd, view.today_requests) == (0.03, 2)
    assert [d["key"] for d in view.days] == ["2025-12-30", "2026-01-01"]
    assert view.breakdown["providers_usd"] == 0.01
    quiet = data.cost_view({"by": {"day": []}}, NOW)
    assert (quiet.requests, quiet.today_usd, quiet.days) == (0, 0.0, [])


def test_cache_rates_per_tier() -> None:
    assembly = {"cache": {
        "context": {"enabled": True, "entries": {"l1": 3, "l2": 5}, "hit_l1": 6, "hit_l2": 2, "miss": 1, "expired": 1,
                    "coalesced": 4, "hot": 0, "refresh_early": 2},
        "provider": {"enabled": False, "entries": {}},
    }}
    traces = [{"cache": "miss"}, {"cache": "miss"}, {"cache": "l1"}, {"cache": "off"}, {}]
    rows = {(r.level, r.tier): r for r in data.cache_rates(assembly, traces)}
    assert set(rows) == {("context", "l1"), ("context", "l2"), ("traces", "l1"), ("traces", "l2"),
                         ("traces", "coalesced")}
    assert (rows["context", "l1"].hits, rows["context", "l1"].lookups, rows["context", "l1"].entries) == (6, 10, 3)
    assert rows["context", "l2"].rate == pytest.approx(0.2)
    assert (rows["traces", "l1"].hits, rows["traces", "l1"].lookups) == (1, 3)  # "off" was never looked up
    assert rows["traces", "coalesced"].rate == 0.0
    assert data.cache_rates(None, [{"cache": "off"}]) == []


def test_breakers_and_objectives_and_alerts() -> None:
    status = {"providers": [{"name": "retrieval"}, {"name": "profile"}],
              "assembly": {"breakers": {"profile": {"state": "open", "recent_failures": 3, "opened": 1}}}}
    rows = data.breaker_rows(status)
    assert [(r.name, r.state, r.recent_failures, r.live) for r in rows] == [
        ("profile", "open", 3, True), ("retrieval", "closed", 0, False)]
    slo = {"objectives": [
        {"name": "latency", "target": 0.99, "windows": {"1h": {"met": True}, "1d": {"met": True}, "7d": {"met": False}}},
        {"name": "fresh", "target": 0.9, "windows": {"1h": {"met": True}, "1d": {"met": None}, "7d": {"met": None}}},
        {"name": "idle", "target": 0.9, "windows": {"1h": {"met": None}}},
    ]}
    assert [o.met for o in data.objectives(slo)] == [False, True, None]
    alerts = [{"id": 1, "severity": "warning", "last_at": "2026-01-01T12:00"},
              {"id": 2, "severity": "critical", "last_at": "2026-01-01T11:00"},
              {"id": 3, "severity": "warning", "last_at": "2026-01-01T12:10"},
              {"id": 4, "severity": "info"}]
    assert [a["id"] for a in data.alert_rows(alerts)] == [2, 3, 1, 4]


def test_trace_detail_checks_the_replayed_bytes() -> None:
    trace = copy.deepcopy(RECORDED["trace"])
    d = data.trace_detail(trace)
    assert d.verified and d.size == len(trace["context"].encode("utf-8"))
    assert d.blocks and all(b["kept"] for b in d.blocks)
    assert len(d.blocks) + len(d.dropped) == len(trace["candidates"])
    assert dict(d.timings)["total"] == trace["timings"]["total_ms"]
    trace["context"] += " "
    assert not data.trace_detail(trace).verified


class Fake:
    """A client answering from fixed data; ``fail`` maps a method to what it raises instead."""

    def __init__(self, recorded: dict[str, Any], fail: dict[str, Exception] | None = None, mode: str = "daemon",
                 alerts: list[dict[str, Any]] | None = None) -> None:
        self.recorded = recorded
        self.fail = fail or {}
        self.mode = mode
        self.alert_rows = alerts
        self.closed = False

    def _answer(self, name: str, value: Any) -> Any:
        if name in self.fail:
            raise self.fail[name]
        return copy.deepcopy(value)

    def call(self, op: Any, body: Any = None) -> Any:
        """A client's one method: each operation is answered by the method of its name, if this fake has one."""
        method = getattr(self, op.name, None)
        if method is None:
            raise CtxError(f"not available: this ctx has no {op.name} yet")
        return method() if body is None else method(body)

    def status(self) -> dict[str, Any]:
        return self._answer("status", self.recorded["status"])  # type: ignore[no-any-return]

    def traces(self, body: Any) -> list[dict[str, Any]]:
        return self._answer("traces", self.recorded["traces"][:body.limit])  # type: ignore[no-any-return]

    def cost(self, body: Any) -> dict[str, Any]:
        return self._answer("cost", self.recorded["cost"])  # type: ignore[no-any-return]

    def slo(self) -> dict[str, Any]:
        return self._answer("slo", self.recorded["slo"])  # type: ignore[no-any-return]

    def replay(self, body: Any) -> dict[str, Any]:
        return self._answer("replay", self.recorded["rerun" if body.rerun else "trace"])  # type: ignore[no-any-return]

    def close(self) -> None:
        self.closed = True


class FakeWithAlerts(Fake):
    def alerts(self, body: Any) -> list[dict[str, Any]]:
        return self._answer("alerts", (self.alert_rows or [])[:body.limit])  # type: ignore[no-any-return]


ALERTS = [
    {"id": "a1", "rule": "latency_p99", "severity": "warning", "message": "p99 142 ms over 1h (baseline 61 ms)",
     "first_at": "2026-01-01T12:05:00+00:00", "last_at": "2026-01-01T12:30:00+00:00", "count": 6},
    {"id": "a2", "rule": "breaker_open", "severity": "critical", "message": "provider retrieval: circuit open",
     "first_at": "2026-01-01T12:20:00+00:00", "last_at": "2026-01-01T12:21:00+00:00", "count": 1},
]


def recorded_now() -> datetime:
    return datetime.fromisoformat(RECORDED["now"])


class Counting(Fake):
    def __init__(self, recorded: dict[str, Any]) -> None:
        super().__init__(recorded)
        self.asked: list[str] = []

    def _answer(self, name: str, value: Any) -> Any:
        self.asked.append(name)
        return super()._answer(name, value)


def test_cost_and_slo_are_read_every_slow_interval_not_every_refresh() -> None:
    """They scan days of traces: at every 2 s refresh they would keep a core of the daemon busy."""
    client, slow, now = Counting(RECORDED), data.Slow(), recorded_now()
    for seconds in (0, 2, 4, data.SLOW_S - 1):
        board = data.fetch(client, now + timedelta(seconds=seconds), slow=slow)  # type: ignore[arg-type]
        assert board.cost is not None and board.objectives  # shown from the last reading in between
    assert client.asked.count("cost") == client.asked.count("slo") == 1
    assert client.asked.count("status") == client.asked.count("traces") == 4  # the rest at every refresh
    data.fetch(client, now + timedelta(seconds=data.SLOW_S), slow=slow)  # type: ignore[arg-type]
    data.fetch(client, now + timedelta(seconds=data.SLOW_S + 1), slow=slow, force=True)  # type: ignore[arg-type]
    assert client.asked.count("cost") == client.asked.count("slo") == 3  # due again, then `r`


def test_fetch_keeps_each_panels_failure_in_that_panel() -> None:
    broken_sources = copy.deepcopy(RECORDED["status"])
    broken_sources["sources"][0]["max_staleness_s"] = "soon"
    client = Fake({**RECORDED, "status": broken_sources},
                  fail={"cost": CtxError("the cost ledger is locked"), "slo": RuntimeError("boom")})
    board = data.fetch(client, recorded_now())  # type: ignore[arg-type]
    assert board.problems["cost"] == "the cost ledger is locked" and board.cost is None
    assert board.problems["slo"] == "unexpected RuntimeError: boom" and board.objectives == []
    assert board.problems["alerts"] == "not available: this ctx has no alerts yet"  # a client without alerts()
    assert board.problems["freshness"].startswith("unexpected ValueError") and board.freshness == []
    assert set(board.problems) == {"cost", "slo", "alerts", "freshness"}
    assert board.traces and board.latency and board.breakers and board.requests > 0
    assert isinstance(json.dumps(board.to_dict()), str)

    old_daemon = data.fetch(FakeWithAlerts(RECORDED, fail={"alerts": NotFound("Not Found")}),  # type: ignore[arg-type]
                            recorded_now())
    assert old_daemon.problems == {"alerts": "not available: Not Found"}
    alerting = data.fetch(FakeWithAlerts(RECORDED, alerts=ALERTS), recorded_now())  # type: ignore[arg-type]
    assert [a["id"] for a in alerting.alerts] == ["a2", "a1"] and not alerting.problems


def test_fetch_raises_when_the_daemon_is_down() -> None:
    for method in ("status", "traces", "slo"):  # wherever it goes away, the whole refresh says so
        with pytest.raises(TransientError):
            data.fetch(Fake(RECORDED, fail={method: TransientError("gone")}), recorded_now())  # type: ignore[arg-type]
    with pytest.raises(CtxError, match="locked"):  # no status, no dashboard: the app says why and retries
        data.fetch(Fake(RECORDED, fail={"status": CtxError("locked")}), recorded_now())  # type: ignore[arg-type]


def raises(exc: Exception) -> Callable[[Any], Any]:
    def call(client: Any) -> Any:
        raise exc

    return call


def test_link_reconnects_after_a_transient_error_and_when_stale() -> None:
    made: list[Fake] = []

    def factory() -> Any:
        made.append(Fake(RECORDED))
        return made[-1]

    stale = {"now": False}
    link = Link(factory, stale=lambda client: stale["now"])
    assert link.call(lambda c: c.mode) == "daemon" and link.call(lambda c: 1) == 1
    assert len(made) == 1
    with pytest.raises(TransientError):
        link.call(raises(TransientError("gone")))
    assert made[0].closed and link.client is None  # dropped: the next call looks for the daemon again
    link.call(lambda c: None)
    assert len(made) == 2
    with pytest.raises(CtxError):  # any other error keeps the client
        link.call(raises(CtxError("bad")))
    assert link.client is made[1]
    stale["now"] = True  # e.g. the daemon was restarted with a new token
    link.call(lambda c: None)
    assert made[1].closed and len(made) == 3
    link.close()
    assert made[2].closed


def test_the_figures_and_the_link_never_import_textual() -> None:
    import subprocess
    import sys

    code = "import sys, ctx.tui.data, ctx.tui.link, ctx.tui.render; print('textual' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert proc.stdout.strip() == "False"


def test_daemon_link_says_the_daemon_is_not_running(tmp_path: Path) -> None:
    link = daemon_link(tmp_path)
    with pytest.raises(TransientError, match="not running"):
        link.call(lambda c: c.status())


# --- helpers for the app ----------------------------------------------------------------------------


def text(widget: Widget) -> str:
    """What a Static-based widget shows, as plain text."""
    console = Console(width=240, file=io.StringIO(), color_system=None, legacy_windows=False)
    with console.capture() as captured:
        console.print(widget.content)  # type: ignore[attr-defined]
    return captured.get()


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def drive(app: DashApp, script: Callable[[Pilot[Any]], Awaitable[None]], size: tuple[int, int] = (120, 40)) -> None:
    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(run())


def panel(app: DashApp, name: str) -> str:
    return text(app.dashboard.query_one(f"#{name}"))


# --- over a real home -------------------------------------------------------------------------------

HOME_CONFIG = """
[embedding]
embedder = "none"

[daemon]
scheduler = false
watch = false

[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
"""

QUERIES = ["how do refunds work?", "rotate a leaked API key", "SAML sign-in fails with an error"]


@pytest.fixture
def real_home(write_config: Callable[[str], Path], docs_dir: Path) -> tuple[Path, list[str], dict[str, list[str]]]:
    """A home with the fixture docs ingested (no embedder) and three requests assembled: real traces."""
    from ctx.api.operations import ASSEMBLE
    from ctx.api.schemas import AssembleIn, IngestIn
    from ctx.client import LocalClient
    from ctx.workspace import Workspace

    config = write_config(HOME_CONFIG)
    client = LocalClient(Workspace.open(config))
    try:
        client.ingest(IngestIn())
        ids, kept = [], {}
        for query in QUERIES:
            out = client.call(ASSEMBLE, AssembleIn(query=query, budget=800))
            ids.append(out["trace_id"])
            kept[out["trace_id"]] = sorted({b["document"] for b in out["blocks"]})
    finally:
        client.close()
    return config, ids, kept


def test_dashboard_over_a_real_home_shows_its_figures(real_home: tuple[Path, list[str], dict[str, list[str]]]) -> None:
    config, ids, _ = real_home
    app = build_app(local_link(config), refresh_s=0.5)

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.refreshes >= 1, "the first refresh")
        board = app.board
        assert board is not None and board.mode == "local"
        assert [t["id"] for t in board.traces] == ids[::-1]  # newest first
        assert board.requests == 3 and sum(m.count for m in board.latency[-2:]) == 3
        table = app.dashboard.query_one(TraceTable)
        assert table.row_count == 3 and table.current == ids[-1]
        assert "how do refunds work?" in str(table.get_row_at(2))
        assert text(app.dashboard.query_one("#now-p99")) != "—\n"
        assert float(text(app.dashboard.query_one("#now-p50"))) > 0
        assert "docs" in panel(app, "freshness") and "fresh" in panel(app, "freshness")
        assert "per req" in panel(app, "cost") and "3 req" in panel(app, "cost")
        assert "retrieval" in panel(app, "breakers") and "closed" in panel(app, "breakers")
        assert "traces" in panel(app, "cache")  # --local: how the recent requests were served
        assert "slo" in board.problems or board.objectives  # an objective per row, or why there are none
        assert panel(app, "alerts").strip()
        assert not app.dashboard.query_one(Banner).display
        assert "local" in app.dashboard.sub_title and "refreshed" in app.dashboard.sub_title

    drive(app, script)


def test_navigate_the_traces_and_open_one_with_its_replay_and_rerun_diff(
        real_home: tuple[Path, list[str], dict[str, list[str]]]) -> None:
    config, ids, kept = real_home
    app = build_app(local_link(config), refresh_s=0.5)

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.refreshes >= 1, "the first refresh")
        table = app.dashboard.query_one(TraceTable)
        assert table.has_focus
        await pilot.press("down", "down", "up")
        assert table.cursor_row == 1 and table.current == ids[1]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen), "the trace screen")
        screen = app.screen
        assert isinstance(screen, TraceScreen) and screen.trace_id == ids[1]
        await until(pilot, lambda: screen.detail is not None, "the trace")
        assert screen.detail is not None and screen.detail.verified
        assert "replay verified" in text(screen.query_one("#detail-replay"))
        blocks = text(screen.query_one("#detail-blocks"))
        assert kept[ids[1]] and all(doc in blocks for doc in kept[ids[1]])
        assert QUERIES[1] in text(screen.query_one("#detail-summary"))
        assert "total" in text(screen.query_one("#detail-costs"))
        assert "retrieval" in text(screen.query_one("#detail-providers"))

        await pilot.press("d")
        await until(pilot, lambda: screen.report is not None, "the rerun")
        assert screen.report is not None and screen.report["identical"] is True  # nothing changed since
        assert "identical" in text(screen.query_one("#detail-diff"))

        await pilot.press("escape")
        assert app.screen is app.dashboard
        # The rerun is a new trace: the next refresh lists it, and the cursor stays on the trace it was on.
        await until(pilot, lambda: table.row_count == 4, "the rerun's trace in the table")
        assert table.current == ids[1]

        await pilot.press("up", "up", "up", "up")
        await pilot.press("enter")  # the rerun itself, newest
        await until(pilot, lambda: isinstance(app.screen, TraceScreen), "the rerun's trace screen")
        rerun = app.screen
        assert isinstance(rerun, TraceScreen)
        await until(pilot, lambda: rerun.detail is not None, "the rerun's trace")
        assert rerun.detail is not None and rerun.detail.trace["replay_of"] == ids[1]
        assert "rerun of" in text(rerun.query_one("#detail-summary"))

    drive(app, script)


def test_trace_blocks_show_the_tokens_every_provider_block_took(demo_home: Template, ctx_cli: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo's support recipe: policy (static), profile (record) and history (session) blocks beside retrieval.
    assembled = demo_home.output["assemble"]
    monkeypatch.setenv("CTX_CONFIG", str(FIXTURES / "demo.toml"))
    monkeypatch.setenv("CTX_HOME", str(Path(os.environ["CTX_HOME"]) / "demo"))
    trace = ctx_cli("replay", assembled["trace_id"], "--json").json()
    detail = data.trace_detail(trace)
    table = render.blocks(detail)
    shown = {(c["provider"], c["doc_key"]): cell for c, cell in zip(detail.blocks, table.columns[4].cells, strict=True)}
    took = {(b["provider"], b["document"]): str(b["tokens"]) for b in assembled["blocks"]}
    assert {p for p, _ in took} >= {"policy", "profile", "history", "retrieval"}
    assert shown == took and all(int(n) > 0 for n in shown.values())


def test_help_screen_and_quit() -> None:
    app = build_app(lambda: Fake(RECORDED), refresh_s=60, clock=recorded_now)  # type: ignore[arg-type,return-value]

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.refreshes >= 1, "the first refresh")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(text(w) for w in app.screen.query("Static"))
        for words in ("enter", "rerun", "refresh", "quit", "source freshness", "SLOs", "burn rate"):
            assert words in shown
        await pilot.press("escape")
        assert app.screen is app.dashboard
        await pilot.press("question_mark")
        await pilot.press("q")  # closes the help, not the app
        assert app.screen is app.dashboard and app.is_running
        await pilot.press("r")  # refresh now
        await until(pilot, lambda: app.refreshes >= 2, "the refresh asked for")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to quit")

    drive(app, script, size=(80, 24))


def test_a_failing_panel_shows_its_error_and_the_rest_still_show() -> None:
    broken = copy.deepcopy(RECORDED)
    broken["traces"][0]["total_ms"] = "fast"  # the latency figures cannot be computed
    client = Fake(broken, fail={"cost": CtxError("the cost ledger is locked"), "slo": RuntimeError("boom")})
    app = build_app(lambda: client, refresh_s=60, clock=recorded_now)  # type: ignore[arg-type,return-value]

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.refreshes >= 1, "the first refresh")
        assert "the cost ledger is locked" in panel(app, "cost")
        assert "unexpected RuntimeError: boom" in panel(app, "slo")
        assert "not available" in panel(app, "alerts")
        assert "unexpected ValueError" in text(app.dashboard.query_one("#minutes"))
        assert "docs" in panel(app, "freshness") and "retrieval" in panel(app, "breakers")
        assert app.dashboard.query_one(TraceTable).row_count == len(broken["traces"])
        assert app.is_running

    drive(app, script)


def test_a_refresh_that_fails_says_why_and_the_next_one_recovers() -> None:
    calls = {"n": 0}

    class Flaky(Fake):
        def status(self) -> dict[str, Any]:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise CtxError("database is locked")
            return super().status()

    app = build_app(lambda: Flaky(RECORDED), refresh_s=0.1, clock=recorded_now)  # type: ignore[arg-type,return-value]

    async def script(pilot: Pilot[Any]) -> None:
        banner = app.dashboard.query_one(Banner)
        await until(pilot, lambda: app.attempts >= 1, "the first try")
        assert app.board is None and app.failure is not None and not app.failure.transient
        assert banner.display and "could not refresh" in text(banner) and "database is locked" in text(banner)
        await until(pilot, lambda: app.refreshes >= 1, "a refresh that works")
        assert not banner.display and app.failure is None

    drive(app, script)


def test_daemon_down_then_started_then_stopped(daemon: Callable[..., Any], write_config: Callable[[str], Path],
                                                docs_dir: Path, ctx_env: dict[str, str]) -> None:
    """No daemon: the banner says so and it keeps retrying; a daemon started later is picked up, and one
    that stops again is noticed, without the app ever going down."""
    from ctx.api.schemas import IngestIn
    from ctx.client import LocalClient
    from ctx.workspace import Workspace

    config = write_config(HOME_CONFIG)
    home = Path(ctx_env["CTX_HOME"])
    local = LocalClient(Workspace.open(config))
    local.ingest(IngestIn())
    local.close()
    app = build_app(daemon_link(home), refresh_s=0.2)

    async def script(pilot: Pilot[Any]) -> None:
        banner = app.dashboard.query_one(Banner)
        await until(pilot, lambda: app.attempts >= 3, "three tries")
        assert app.board is None and app.down is not None and app.down.transient
        assert banner.display and "daemon down" in text(banner) and "not running" in text(banner)
        assert "ctx daemon start" in text(banner)
        assert "daemon down" in app.dashboard.sub_title and app.is_running

        started = await asyncio.to_thread(daemon, config=config)
        tries_when_up = app.attempts
        await until(pilot, lambda: app.refreshes >= 1, "the dashboard to pick the daemon up", timeout=120)
        assert app.attempts - tries_when_up <= 3  # within a few refreshes of the daemon answering
        assert app.board is not None and app.board.mode == "daemon" and app.down is None
        assert not banner.display and "docs" in panel(app, "freshness")
        assert "daemon" in app.dashboard.sub_title

        await asyncio.to_thread(started.stop)
        await until(pilot, lambda: app.down is not None, "the dashboard to notice the daemon stopped", timeout=120)
        assert banner.display and "daemon down" in text(banner)
        assert app.board is not None and app.is_running  # the last figures stay, dimmed

    drive(app, script)


# --- snapshots: fixed data, fixed clock, fixed size --------------------------------------------------


def snapshot_app(client: Callable[[], Any] | None = None) -> DashApp:
    """The dashboard on the recorded demo data, never refreshing by itself."""
    return build_app(client or (lambda: FakeWithAlerts(RECORDED, alerts=ALERTS)), refresh_s=2.0,
                     clock=recorded_now)


async def refreshed(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, DashApp)
    await until(pilot, lambda: app.attempts >= 1, "the first refresh")
    await pilot.pause()


def test_snapshot_dashboard(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=refreshed)


def test_snapshot_dashboard_at_80x24(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=refreshed)


def test_snapshot_trace_detail(snap_compare: Callable[..., bool]) -> None:
    async def open_trace(pilot: Pilot[Any]) -> None:
        await refreshed(pilot)
        app = pilot.app
        assert isinstance(app, DashApp)
        app.open_trace(RECORDED["trace"]["id"])
        await until(pilot, lambda: isinstance(app.screen, TraceScreen) and app.screen.detail is not None, "the trace")

    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=open_trace)


def test_snapshot_help(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(snapshot_app(), terminal_size=(120, 40), run_before=refreshed, press=["question_mark"])


def test_snapshot_daemon_down(snap_compare: Callable[..., bool]) -> None:
    def down() -> Any:
        raise TransientError("the daemon is not running for /srv/ctx/demo: start it with `ctx daemon start` "
                             "(or read this home without one: `ctx dash --local`)")

    assert snap_compare(snapshot_app(down), terminal_size=(120, 40), run_before=refreshed)
