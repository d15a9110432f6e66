"""Alerts end to end in one process: rules over a real catalog of (seeded, synthetic) traces, evaluated at
chosen moments, escalating through their three steps to a real loopback webhook receiver; dedup, cooldown,
retries of a failing webhook, the refresh action, secrets kept out of every row, log and output."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ctx.observe.series import TraceSample
from ctx.observe.signals import iso
from ctx.workspace import Workspace
from tests.helpers import Receiver, Workspaces
from tests.observe.test_anomaly import traffic

T0 = datetime(2025, 3, 3, tzinfo=UTC).timestamp()
TOKEN = "s3cr3t-Token-Value-9f8e7d"
PATH_SECRET = "T0SECRETPATH"
QUERY_SECRET = "QUERYSECRET42"
SECRETS = (TOKEN, PATH_SECRET, QUERY_SECRET)

RULE = """
[alerts.rules.latency]
metric = "latency_p95_ms"
window = "1m"
severity = "error"
threshold = 6
sustain = 3
min_count = 5
escalate_after = "{escalate_after}"
cooldown = "30m"
"""


def config(receiver: Receiver, escalate_after: str = "5m", extra: str = "") -> str:
    return f"""
[embedding]
embedder = "none"

[alerts]
builtin_rules = false
webhook = "oncall"
escalate_to = "pager"

[alerts.webhooks.oncall]
url = "{receiver.url}/hooks/{PATH_SECRET}?key={QUERY_SECRET}"
token = "${{ONCALL_TOKEN}}"

[alerts.webhooks.pager]
url = "${{PAGER_URL}}"
{RULE.format(escalate_after=escalate_after)}
{extra}
"""


@pytest.fixture
def open_ws(write_config: Callable[[str], Path], ctx_env: dict[str, str], receiver: Receiver,
            open_workspace: Workspaces) -> Callable[..., Workspace]:
    def make(text: str | None = None, **kw: str) -> Workspace:
        path = write_config(text if text is not None else config(receiver, **kw))
        env = {**ctx_env, "ONCALL_TOKEN": TOKEN, "PAGER_URL": f"{receiver.url}/pager"}
        return open_workspace(path, env=env)

    return make


def add_traces(ws: Workspace, samples: list[TraceSample]) -> None:
    rows = [(str(uuid.uuid4()), iso(s.at), json.dumps({"total_ms": s.ms}), s.tokens, s.cost, s.cache,
             "ok" if s.ok else "failed") for s in samples]
    with ws.catalog.db.conn:
        ws.catalog.db.conn.executemany(
            "insert into traces (id, created_at, timings, tokens, cost, cache, status, query, request, "
            "config_fingerprint, budget, model, format, encoding, degradations) "
            "values (?, ?, ?, ?, ?, ?, ?, '', '{}', '', 0, 'gpt-4o', 'markdown', 'cl100k_base', '[]')", rows)


def at(minutes: float) -> datetime:
    return datetime.fromtimestamp(T0 + minutes * 60, UTC)


def check(ws: Workspace, minutes: float, refresh: Callable[[str], str] | None = None) -> dict[str, Any]:
    return ws.alerting.check(refresh, now=at(minutes))  # type: ignore[no-any-return]


def spike(ws: Workspace, *windows: tuple[float, float], hours: float = 3.0, factor: float = 5.0) -> None:
    """Seeded traffic from T0 (1 request/s), latency ``factor`` times higher within each (from, to) in minutes."""
    samples = traffic(11, hours, 1.0, start=T0)
    for start, end in windows:
        lo, hi = T0 + start * 60, T0 + end * 60
        samples = [TraceSample(s.at, s.ms * factor, s.tokens, s.cost, s.cache, s.ok) if lo <= s.at < hi else s
                   for s in samples]
    add_traces(ws, samples)


def test_escalation_through_three_steps_in_order_then_resolution_to_both(open_ws: Any, receiver: Receiver) -> None:
    ws = open_ws()
    spike(ws, (90, 130))
    assert check(ws, 60)["opened"] == []  # an hour of noise: quiet

    opened = check(ws, 93 + 5 / 60)  # the third spiking bucket ended at 93 m
    assert [(a["rule"], a["key"], a["severity"]) for a in opened["opened"]] == [("latency", "", "error")]
    assert [s["step"] for s in opened["steps"]] == [1]  # step 1 at once (action "none": nothing to do)
    assert receiver.requests == []
    alert = ws.alerts(10, True)[0]
    assert alert["state"] == "firing" and alert["step"] == 1 and alert["count"] == 3 and alert["window"] == "1m"
    assert alert["value"] > 4 * alert["baseline"] and alert["z"] >= 6 and "latency p95" in alert["message"]

    assert check(ws, 97)["deliveries"] == []  # 4 minutes in: step 2 is not due yet
    second = check(ws, 98 + 10 / 60)  # 5 minutes after the clock started: step 2, the first webhook
    assert [s["step"] for s in second["steps"]] == [2]
    assert [(d["target"], d["event"], d["status"]) for d in second["deliveries"]] == [("oncall", "firing", "sent")]
    (first,) = receiver.requests
    assert first.path == f"/hooks/{PATH_SECRET}" and first.raw_query == f"key={QUERY_SECRET}"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["Content-Type"] == "application/json"
    body = first.json()
    assert body["event"] == "firing" and body["step"] == 2 and body["source"] == "ctx"
    assert body["alert"]["rule"] == "latency" and body["alert"]["id"] == alert["id"]
    assert body["alert"]["state"] == "firing" and body["alert"]["severity"] == "error"
    assert body["text"].startswith("[ERROR] latency: latency p95 ")
    assert first.headers["Idempotency-Key"] == f"ctx-{body['notification_id']}"

    third = check(ws, 103 + 10 / 60)  # another 5 minutes: step 3, the escalation webhook
    assert [(d["target"], d["event"], d["status"]) for d in third["deliveries"]] == [("pager", "escalation", "sent")]
    escalation = receiver.to("/pager")[0]
    assert escalation.json()["step"] == 3 and escalation.json()["text"].startswith("ESCALATED [ERROR]")
    assert "Authorization" not in escalation.headers  # pager has no token
    assert check(ws, 110)["steps"] == [] and len(receiver.requests) == 2  # three steps, no fourth

    resolved = check(ws, 134)  # the spike ended at 130 m: three buckets in band
    assert [a["id"] for a in resolved["resolved"]] == [alert["id"]]
    assert sorted((d["target"], d["event"]) for d in resolved["deliveries"]) == [
        ("oncall", "resolved"), ("pager", "resolved")]
    assert [r.json()["event"] for r in receiver.requests] == ["firing", "escalation", "resolved", "resolved"]
    assert all(r.json()["alert"]["state"] == "resolved" for r in receiver.requests[2:])
    assert check(ws, 140)["deliveries"] == [] and len(receiver.requests) == 4

    (done,) = ws.alerts(10, False)
    assert done["state"] == "resolved" and done["step"] == 3 and done["resolved_at"] == iso(at(134).timestamp())
    assert [(n["step"], n["event"], n["target"], n["status"]) for n in done["notifications"]] == [
        (2, "firing", "oncall", "sent"), (3, "escalation", "pager", "sent"),
        (3, "resolved", "oncall", "sent"), (3, "resolved", "pager", "sent")]
    assert ws.alerts(10, True) == []


def test_dedup_across_evaluations_and_a_reopened_workspace(open_ws: Any, receiver: Receiver) -> None:
    ws = open_ws(escalate_after="0s")  # every step at once
    spike(ws, (90, 130))
    assert len(check(ws, 93.1)["opened"]) == 1
    assert len(receiver.requests) == 2  # firing to oncall, escalation to pager
    again = check(ws, 93.2)
    assert again["opened"] == [] and again["updated"] == [] and again["deliveries"] == []
    ws.close()

    ws2 = open_ws(escalate_after="0s")  # a daemon restart: nothing of the first engine survives but the catalog
    later = check(ws2, 95.1)
    assert later["opened"] == [] and [a["rule"] for a in later["updated"]] == ["latency"]
    assert later["deliveries"] == [] and len(receiver.requests) == 2
    (alert,) = ws2.alerts(10, False)
    assert alert["count"] == 5  # buckets 90..94 deviated: each counted once, however often it was evaluated
    assert ws2.alert_counts() == {"critical": 0, "error": 1, "warning": 0}


def test_cooldown_a_refire_inside_it_notifies_nobody_and_one_still_firing_after_it_does(
        open_ws: Any, receiver: Receiver) -> None:
    ws = open_ws(escalate_after="0s")
    spike(ws, (60, 66), (72, 105))
    check(ws, 64)
    assert [r.json()["event"] for r in receiver.requests] == ["firing", "escalation"]
    assert len(check(ws, 70)["resolved"]) == 1  # resolved at 70 m: the cooldown runs to 100 m
    assert len(receiver.requests) == 4  # ... and both webhooks heard of it

    refire = check(ws, 76)
    assert refire["opened"] == [] and [a["rule"] for a in refire["suppressed"]] == ["latency"]
    assert refire["deliveries"] == [] and len(receiver.requests) == 4
    alert = ws.alerts(10, True)[0]
    assert alert["suppressed_until"] == iso(at(100).timestamp()) and alert["step"] == 0
    assert [(n["event"], n["status"]) for n in alert["notifications"]] == [("suppressed", "skipped")]
    assert check(ws, 99)["deliveries"] == [] and len(receiver.requests) == 4  # still inside the cooldown

    after = check(ws, 101)  # still firing when the cooldown ends: now it is told
    assert [s["step"] for s in after["steps"]] == [1, 2, 3]
    assert [r.json()["event"] for r in receiver.requests[4:]] == ["firing", "escalation"]
    assert receiver.requests[4].json()["alert"]["id"] == alert["id"]
    assert len(ws.alerts(10, False)) == 2


def test_a_failing_webhook_is_recorded_and_retried_until_it_is_delivered(
        open_ws: Any, receiver: Receiver) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    closed_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connection refused
    extra = f'[alerts.webhooks.dead]\nurl = "http://127.0.0.1:{closed_port}/x"\nmax_attempts = 2\n'
    text = config(receiver, "0s", extra).replace('escalate_to = "pager"', 'escalate_to = "dead"')
    ws = open_ws(text)
    receiver.fail[f"/hooks/{PATH_SECRET}"] = 2
    spike(ws, (90, 130))

    first = check(ws, 93.1)
    assert sorted((d["target"], d["status"]) for d in first["deliveries"]) == [("dead", "failed"), ("oncall", "failed")]
    by_target = {d["target"]: d for d in first["deliveries"]}
    assert by_target["oncall"]["error"] == f"HTTP 500 from {receiver.url}"
    assert by_target["dead"]["error"].startswith(f"ConnectError from http://127.0.0.1:{closed_port}")
    second = check(ws, 93.2)  # the next evaluation tries both again
    assert sorted((d["target"], d["status"]) for d in second["deliveries"]) == [
        ("dead", "gave_up"), ("oncall", "failed")]
    third = check(ws, 93.3)
    assert [(d["target"], d["status"]) for d in third["deliveries"]] == [("oncall", "sent")]
    assert check(ws, 93.4)["deliveries"] == []  # delivered, and the dead one given up: nothing left to try

    hits = receiver.to(f"/hooks/{PATH_SECRET}")
    assert len(hits) == 3 and len({h.headers["Idempotency-Key"] for h in hits}) == 1  # one message, 3 tries
    notes = {n["target"]: n for n in ws.alerts(10, True)[0]["notifications"]}
    assert notes["oncall"]["status"] == "sent" and notes["oncall"]["attempts"] == 3
    assert notes["oncall"]["error"] is None and notes["oncall"]["detail"] == receiver.url
    assert notes["dead"]["status"] == "gave_up" and notes["dead"]["attempts"] == 2
    assert "ConnectError" in notes["dead"]["error"]


def test_secrets_never_reach_rows_logs_or_output(open_ws: Any, receiver: Receiver, ctx_cli: Any,
                                                 caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    ws = open_ws(escalate_after="0s")
    receiver.fail[f"/hooks/{PATH_SECRET}"] = 1  # a failure, so an error message is recorded too
    spike(ws, (90, 130))
    check(ws, 93.1)
    check(ws, 93.2)
    check(ws, 134)
    assert len(receiver.to(f"/hooks/{PATH_SECRET}")) == 3  # failed, retried, resolved: it was all exercised
    assert receiver.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"

    dump = json.dumps([list(ws.catalog.db.query(f"select * from {t}")) for t in ("alerts", "alert_notifications")])
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    monkeypatch.setenv("ONCALL_TOKEN", TOKEN)
    monkeypatch.setenv("PAGER_URL", f"{receiver.url}/pager")
    cli = ctx_cli("--config", str(ws.settings.config_path), "alerts", "--all", "--json")
    table = ctx_cli("--config", str(ws.settings.config_path), "alerts", "--all")
    assert json.loads(cli.stdout)[0]["rule"] == "latency" and "latency" in table.stdout
    for secret in SECRETS:
        for where, text in (("rows", dump), ("logs", logged), ("--json", cli.stdout + cli.stderr),
                            ("table", table.stdout + table.stderr)):
            assert secret not in text, (secret, where)
    assert "HTTP Request: POST" in caplog.text  # httpx's own request line was there, with the URL blanked


def test_the_refresh_action_syncs_a_stale_source_once_in_this_process(write_config: Any, docs_dir: Path,
                                                                      ctx_env: dict[str, str]) -> None:
    path = write_config(f'[embedding]\nembedder = "none"\n\n[sources.docs]\nkind = "files"\npath = "{docs_dir}"\n'
                        'max_staleness = "1m"\n')
    ws = Workspace.open(path, env=ctx_env)
    try:
        assert ws.ingest().ok
        later = datetime.now(UTC) + timedelta(minutes=16)  # 16 times past its limit, by the built-in rules' clock
        result = ws.alerting.check(ws._alert_refresh, now=later)
        assert sorted(a["rule"] for a in result["opened"]) == ["source_down", "source_stale"]
        assert {a["key"] for a in result["opened"]} == {"docs"}
        actions = [d for d in result["deliveries"] if d["kind"] == "action"]
        assert [d["status"] for d in actions] == ["done", "done"]
        alert_jobs = [j for j in ws.jobs.recent(20) if j["trigger"] == "alert"]
        assert len(alert_jobs) == 1 and alert_jobs[0]["status"] == "ok" and alert_jobs[0]["sources"] == ["docs"]
        details = sorted(n["detail"] for a in ws.alerts(10, True) for n in a["notifications"])
        assert details[0].startswith("docs: ingested in this process") and "another alert" in details[1]
        stale = next(a for a in ws.alerts(10, True) if a["rule"] == "source_stale")
        assert stale["severity"] == "error" and stale["sources"] == ["docs"] and stale["z"] is None
        assert stale["message"].startswith("source docs: staleness ") and "above 1.00x" in stale["message"]
    finally:
        ws.close()


def test_alert_rows_and_the_metric_through_the_cli(open_ws: Any, ctx_cli: Any, monkeypatch: pytest.MonkeyPatch,
                                                   receiver: Receiver) -> None:
    ws = open_ws()
    spike(ws, (90, 130))
    check(ws, 93.1)
    monkeypatch.setenv("ONCALL_TOKEN", TOKEN)
    monkeypatch.setenv("PAGER_URL", f"{receiver.url}/pager")
    cfg = str(ws.settings.config_path)
    (row,) = ctx_cli("--config", cfg, "alerts", "--json").json()
    assert set(row) >= {"id", "rule", "severity", "message", "first_at", "last_at", "count", "metric", "window",
                        "state", "step", "value", "baseline", "key", "resolved_at", "notifications"}
    assert (row["severity"], row["state"], row["step"], row["key"]) == ("error", "firing", 1, "")
    metrics = ctx_cli("--config", cfg, "metrics").stdout
    assert 'ctx_alerts_active{severity="error"} 1.0' in metrics
    assert 'ctx_alerts_active{severity="critical"} 0.0' in metrics
    table = ctx_cli("--config", cfg, "alerts").stdout
    assert "latency" in table and "error" in table and "1/3" in table


@pytest.mark.parametrize(("toml", "expect"), [
    ('[alerts.rules.x]\nmetric = "nope"\nwindow = "1m"\n', "alerts.rules.x.metric"),
    ('[alerts.rules.latency_spike]\nsustain = 0\n', "alerts.rules.latency_spike.sustain"),
    ('[alerts.rules.latency_spike]\nwebhook = "nowhere"\n', "alerts.rules.latency_spike.webhook: unknown webhook"),
    ('[alerts.rules.latency_spike]\naction = "refresh_sources"\n', "is for metric"),
    ('[alerts.rules.x]\nmetric = "latency_p95_ms"\nwindow = "1m"\nthreshold = 0\n', "set above or below"),
    ('[alerts.webhooks.a]\nurl = "ftp://example.com/x"\n', "alerts.webhooks.a.url"),
    (f'[alerts.webhooks.a]\nurl = "https://example.com/x"\ntoken = "{TOKEN}"\n', "alerts.webhooks.a.token"),
    ('[alerts]\ninterval = "soon"\n', "alerts.interval"),
])
def test_bad_alert_config_is_one_line_and_exit_2(toml: str, expect: str, write_config: Any, ctx_cli: Any) -> None:
    path = write_config(toml)
    out = ctx_cli("--config", str(path), "alerts", ok=False)
    assert out.exit_code == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config error: ") and expect in lines[0], out.stderr
    assert TOKEN not in out.stderr  # a literal secret is refused without being repeated


def test_bad_options_are_one_line_and_exit_2(ctx_cli: Any) -> None:
    for args in (("alerts", "--limit", "0"), ("alerts", "-n", "many"), ("alerts", "--bogus")):
        out = ctx_cli(*args, ok=False)
        assert out.exit_code == 2 and len(out.stderr.splitlines()) == 1, (args, out)
        assert out.stderr.startswith("error: ")
    assert ctx_cli("alerts").stderr.strip() == "no firing alerts"
    assert ctx_cli("alerts", "--json").json() == []


def test_cached_buckets_give_the_same_findings_as_a_cold_read(open_ws: Any, receiver: Receiver) -> None:
    extra = ('[alerts.rules.short]\nmetric = "latency_p95_ms"\nwindow = "1m"\nthreshold = 4\nsustain = 2\n'
             'history = 40\nmin_count = 3\n\n[alerts.rules.rate]\nmetric = "request_rate"\nwindow = "5m"\n')
    ws = open_ws(config(receiver, extra=extra))
    spike(ws, (90, 100))
    from ctx.observe.alerts import find
    from ctx.observe.signals import Signals

    warm = Signals(ws.catalog)
    for minutes in (60, 61.5, 91, 92.2, 93, 95, 99.9, 103, 130):
        now = at(minutes).timestamp()
        cold = find(Signals(ws.catalog), ws.settings, now)
        assert find(warm, ws.settings, now) == cold, minutes
    assert any(f.firing for f in find(warm, ws.settings, at(93).timestamp()))
