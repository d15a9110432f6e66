"""`ctx audit`: each check passes on a healthy home and fails on one built to break it; the level reached,
--min-level exit codes, the JUnit file and the JSON report; and level 2 through a real daemon."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from ctx.api.inputs import AuditIn
from ctx.api.operations import AUDIT
from ctx.audit.report import level_reached
from ctx.workspace import Workspace
from tests.helpers import Workspaces

# Lexical-only, and a latency objective a loaded 2-core machine keeps: the healthy home must pass it.
BASE = """
[embedding]
embedder = "none"

[daemon]
watch = false

[slo.latency]
threshold = "10s"

[sources.docs]
kind = "files"
path = "docs"
"""
QUERY = "how do I rotate an API key?"


@pytest.fixture
def home(write_config: Callable[[str], Path], docs_dir: Path, open_workspace: Workspaces) -> Callable[..., Workspace]:
    """``home(extra_toml, requests=2)``: an ingested home that served ``requests`` identical requests."""

    def build(extra: str = "", requests: int = 2) -> Workspace:
        ws = open_workspace(write_config(BASE + extra))
        assert ws.ingest().ok
        for _ in range(requests):
            ws.assemble(ws.request(QUERY))
        return ws

    return build


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def test_healthy_home_passes_every_check_a_home_without_daemon_can(home: Callable[..., Workspace]) -> None:
    report = home().audit()
    checks = by_id(report)
    passing = ["sources_ingested", "contexts_assembled", "quarantine_visible", "caching", "contexts_logged",
               "replay_identical", "config_versions", "latency_tracked", "slo_attained", "cost_tracked",
               "breakers_configured", "breaker_handled", "cache_hit_rate", "freshness", "rerouting", "drift_free"]
    for check in passing:
        assert checks[check]["status"] == "pass", checks[check]
    # Decided from evidence: without a daemon there is no context service, no /metrics and no scheduler.
    for check in ("context_service", "metrics_exposed", "automatic_refresh"):
        assert checks[check]["status"] == "fail", checks[check]
        assert checks[check]["remediation"], checks[check]
    assert checks["replay_identical"]["figures"]["replayed"] == 2
    assert checks["caching"]["figures"]["context_hits"] == 1  # the second identical request
    assert report["level"] == 1 and report["level_name"] == "Basic"
    assert report["next_level"] == 2
    assert [g["id"] for g in report["next_gaps"]] == ["context_service"]


def test_no_traces_means_nothing_assembled_and_no_replay(home: Callable[..., Workspace]) -> None:
    report = home(requests=0).audit()
    checks = by_id(report)
    assert checks["contexts_assembled"]["status"] == "fail"
    assert checks["replay_identical"]["status"] == "fail"
    assert "nothing to replay" in checks["replay_identical"]["evidence"]
    assert report["level"] == 0 and report["level_name"] == "none"
    assert {g["id"] for g in report["next_gaps"]} == {"contexts_assembled"}


def test_a_tampered_trace_fails_the_replay_probe(home: Callable[..., Workspace]) -> None:
    ws = home()
    assert by_id(ws.audit())["replay_identical"]["status"] == "pass"
    victim = ws.traces.recent(1)[0].id
    ws.catalog.db.execute("update traces set rendered = ? where id = ?", [zlib.compress(b"edited"), victim])
    ws.catalog.db.conn.commit()
    check = by_id(ws.audit())["replay_identical"]
    assert check["status"] == "fail"
    assert check["figures"]["failed"] == 1 and check["figures"]["replayed"] == 2
    assert victim in check["evidence"] and "corrupt" in check["evidence"]
    assert f"ctx replay {victim}" in check["remediation"]


def test_sample_zero_skips_the_replay_probe_with_a_warning(home: Callable[..., Workspace]) -> None:
    check = by_id(home().audit(sample=0))["replay_identical"]
    assert check["status"] == "warn" and "--sample" in check["remediation"]


def test_a_violated_latency_objective_fails_the_slo_check(write_config: Callable[[str], Path], docs_dir: Path) -> None:
    ws = Workspace.open(write_config(BASE.replace('threshold = "10s"', 'threshold = "0.001ms"')))
    try:
        assert ws.ingest().ok
        ws.assemble(ws.request(QUERY))
        check = by_id(ws.audit())["slo_attained"]
    finally:
        ws.close()
    assert check["status"] == "fail"
    assert check["evidence"].startswith("latency: SLI 0.00% < target 99.00%")
    assert "[slo.latency]" in check["remediation"]
    assert check["figures"]["latency"]["met"] is False


BREAKERS = """
[providers.policy]
kind = "static"
paths = ["docs/*.md"]
{breaker}

[recipes.support]
providers.policy = {{ criticality = "important", share = 0.2 }}
providers.retrieval = {{ criticality = "critical", share = 0.8 }}
"""


def test_a_breaker_that_cannot_open_fails(home: Callable[..., Workspace]) -> None:
    # Settings require failures >= 1, so "no breaker" is one that cannot open: 1000 failures within 1s can
    # never add up when a call may take the provider's 1s timeout.
    healthy = by_id(home(BREAKERS.format(breaker="")).audit())["breakers_configured"]
    assert healthy["status"] == "pass", healthy
    assert set(healthy["figures"]["providers"]) == {"policy", "retrieval"}
    broken = by_id(home(BREAKERS.format(breaker='breaker = { failures = 1000, window = "1s" }')).audit())
    check = broken["breakers_configured"]
    assert check["status"] == "fail"
    assert "support/policy" in check["evidence"] and "retrieval" not in check["evidence"]
    assert "providers.NAME.breaker.failures" in check["remediation"]


def test_a_critical_provider_without_fallback_or_stale_copy_fails_rerouting(home: Callable[..., Workspace]) -> None:
    extra = BREAKERS.format(breaker="cache = false").replace('criticality = "important"', 'criticality = "critical"')
    check = by_id(home(extra).audit())["rerouting"]
    assert check["status"] == "fail"
    assert check["figures"]["unprotected"] == ["support/policy"]
    assert "fallback" in check["remediation"]


def test_a_stale_source_fails_freshness(home: Callable[..., Workspace]) -> None:
    ws = home()
    assert by_id(ws.audit())["freshness"]["status"] == "pass"
    # Its last good sync two days ago, past the 24h max_staleness of a batch source.
    ws.catalog.db.execute("update sources set last_success_at = '2020-01-01T00:00:00.000+00:00'")
    ws.catalog.db.conn.commit()
    check = by_id(ws.audit())["freshness"]
    assert check["status"] == "fail"
    assert check["figures"]["stale"] == ["docs"]
    assert "ctx ingest docs" in check["remediation"]


DOWN = """
[providers.crm]
kind = "http"
url = "http://127.0.0.1:9/crm?q={{query}}"
timeout = "500ms"
breaker = {{ failures = 1, window = "1m", cooldown = "1h" }}

[recipes.support]
deadline = "2s"
providers.retrieval = {{ criticality = "critical", share = 0.8 }}
providers.crm = {{ criticality = "{criticality}", share = 0.2 }}
"""


@pytest.mark.parametrize("criticality", ["enhancing", "critical"])
def test_breaker_activity_is_handled_only_when_requests_still_complete(
        home: Callable[..., Workspace], criticality: str) -> None:
    from ctx.assemble.assembler import CriticalMissing

    ws = home(DOWN.format(criticality=criticality), requests=0)
    # Nothing listens on port 9: the first call fails and opens the breaker, the next ones are skipped.
    for query in ("refunds", "webhooks", "billing"):
        try:
            ws.assemble(ws.request(query, recipe="support"))
        except CriticalMissing:
            assert criticality == "critical"
    check = by_id(ws.audit())["breaker_handled"]
    assert check["figures"]["events"] == 2, check
    if criticality == "enhancing":  # the requests went on without the block
        assert check["status"] == "pass" and check["figures"]["failed_requests"] == 0
    else:
        assert check["status"] == "fail" and check["figures"]["failed_requests"] == 2
        assert "crm" in check["remediation"]


ALERTS = """
[alerts]
webhook = "oncall"

[alerts.webhooks.oncall]
url = "http://127.0.0.1:9/hook"
"""


def test_alert_steps_stuck_in_the_outbox_fail_the_alerts_check(home: Callable[..., Workspace]) -> None:
    from ctx.observe.alert_store import AlertStore

    bare = by_id(home().audit())["alerts_automated"]
    assert bare["status"] == "fail" and "[alerts] webhook" in bare["remediation"]  # no one would be told
    ws = home(ALERTS)
    healthy = by_id(ws.audit())["alerts_automated"]
    assert healthy["status"] == "pass", healthy
    assert "source_stale" in healthy["figures"]["refresh_rules"] and healthy["figures"]["webhook_rules"]
    # An alert that fired ten minutes ago whose webhook step nobody ever delivered.
    then = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="milliseconds")
    store = AlertStore(ws.catalog)
    with ws.catalog.db.atomic():
        store.insert({"id": "a1", "rule": "source_stale", "key": "docs", "severity": "error",
                      "metric": "staleness_ratio", "window_s": 60.0, "state": "firing", "message": "stale",
                      "count": 2, "step": 2, "first_at": then, "last_at": then, "clock_at": then, "sources": "[]"})
        store.add_notification("a1", 2, "firing", "webhook", "oncall", then)
    check = by_id(ws.audit())["alerts_automated"]
    assert check["status"] == "fail"
    assert check["figures"]["fired"] == 1 and check["figures"]["stuck"] == 1
    assert "stuck in the outbox" in check["evidence"] and "ctx alerts --all" in check["remediation"]


def test_level_reached_is_the_highest_level_whose_checks_and_those_below_hold() -> None:
    def results(*statuses: tuple[int, str]) -> list[dict[str, Any]]:
        return [{"level": level, "status": status} for level, status in statuses]

    assert level_reached(results((1, "pass"), (2, "pass"), (3, "pass"), (4, "pass"))) == 4
    assert level_reached(results((1, "pass"), (2, "warn"), (3, "fail"), (4, "pass"))) == 2
    assert level_reached(results((1, "fail"), (2, "pass"), (3, "pass"), (4, "pass"))) == 0
    assert level_reached(results((1, "warn"), (2, "pass"), (3, "pass"), (4, "fail"))) == 3


def test_min_level_exit_codes_and_the_junit_file(home: Callable[..., Workspace], ctx_cli: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    home().close()
    ok = ctx_cli("audit", "--min-level", "1")
    assert "level reached: 1 (Basic)" in ok.stdout and "next gaps, to reach level 2 (Managed)" in ok.stdout
    below = ctx_cli("audit", "--min-level", "2", "--json", "--junit", str(tmp_path / "audit.xml"), ok=False)
    assert below.exit_code == 1
    assert "level 1 is below --min-level 2" in below.stderr
    report = json.loads(below.stdout)  # --json prints the report, and nothing else, before exiting 1
    failing = [c for c in report["checks"] if c["status"] == "fail"]
    root = ET.parse(tmp_path / "audit.xml").getroot()
    assert root.tag == "testsuites" and int(root.get("failures", "")) == len(failing)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["L1 Basic", "L2 Managed", "L3 Optimized", "L4 Automated"]
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(report["checks"])
    failed_cases = [c for c in cases if c.find("failure") is not None]
    assert sorted(c.get("classname", "").rsplit(".", 1)[1] for c in failed_cases) == sorted(c["id"] for c in failing)
    assert all(c.find("system-out") is not None for c in cases)
    bad = ctx_cli("audit", "--min-level", "5", ok=False)
    assert bad.exit_code == 2 and bad.stdout == ""


def test_warnings_are_skipped_testcases(home: Callable[..., Workspace], ctx_cli: Callable[..., Any],
                                        tmp_path: Path) -> None:
    home().close()
    ctx_cli("audit", "--sample", "0", "--junit", str(tmp_path / "a.xml"))
    replay = [c for c in ET.parse(tmp_path / "a.xml").getroot().iter("testcase")
              if c.get("classname") == "ctx.audit.L2.replay_identical"]
    assert len(replay) == 1 and replay[0].find("skipped") is not None and replay[0].find("failure") is None


def test_json_report_structure(home: Callable[..., Workspace], ctx_cli: Callable[..., Any]) -> None:
    home().close()
    report = ctx_cli("audit", "--json", "--window", "1d", "--sample", "1").json()
    assert {"at", "since", "window", "sample", "level", "level_name", "next_level", "next_gaps", "counts", "levels",
            "checks", "probes"} <= set(report)
    assert report["window"] == "1d" and report["sample"] == 1 and len(report["probes"]["replay"]) == 1
    assert [lv["level"] for lv in report["levels"]] == [1, 2, 3, 4]
    assert sum(report["counts"].values()) == len(report["checks"])
    for c in report["checks"]:
        assert {"id", "level", "level_name", "title", "status", "evidence", "remediation", "figures"} <= set(c)
        assert c["status"] in ("pass", "warn", "fail") and c["evidence"]
        assert bool(c["remediation"]) == (c["status"] != "pass"), c
    assert report["probes"]["doctor"]["ok"] is True


def test_bad_window_is_a_one_line_error(ctx_cli: Callable[..., Any]) -> None:
    res = ctx_cli("audit", "--window", "soon", ok=False)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == ["error: bad --window 'soon': expected a duration such as 1h, 24h, "
                                               "7d or 30d"]


def test_level_two_through_a_real_daemon(write_config: Callable[[str], Path], docs_dir: Path,
                                         daemon: Callable[..., Any]) -> None:
    d = daemon(config=write_config(BASE))
    d.cli("ingest")
    for _ in range(2):
        d.cli("assemble", QUERY, "--json")
    proc = d.cli("audit", "--json", "--min-level", "2")
    report = json.loads(proc.stdout)
    checks = by_id(report)
    assert report["level"] >= 2, [c for c in report["checks"] if c["status"] == "fail"]
    assert checks["context_service"]["status"] == "pass"
    assert checks["context_service"]["figures"]["daemon_requests"] == 2
    assert checks["context_service"]["figures"]["daemon_pid"] == d.runtime.pid  # the audit ran in the daemon
    assert checks["metrics_exposed"]["status"] == "pass"
    # The same route the CLI used, straight from the client gateway.
    direct = d.client().call(AUDIT, AuditIn(window="1h", sample=1))
    assert direct["window"] == "1h" and len(direct["probes"]["replay"]) == 1
