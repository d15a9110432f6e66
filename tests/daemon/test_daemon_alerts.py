"""Alerts through a real daemon: its loop finds a source past its staleness limit, forces a sync of it (a job
with trigger "alert"), tells a loopback webhook, and `ctx alerts`, the API and /metrics all show it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ctx.api import operations as ops
from ctx.api.inputs import AlertsIn, JobsIn
from tests.helpers import Receiver, wait_until
from tests.observe.test_alerts import PATH_SECRET, TOKEN

CONFIG = """
[embedding]
embedder = "none"

[daemon]
scheduler = false                   # only the alert may sync the source

[sources.docs]
kind = "files"
path = "{docs}"
max_staleness = "2s"

[alerts]
interval = "0.5s"
builtin_rules = false
webhook = "oncall"

[alerts.webhooks.oncall]
url = "{url}/hook/{secret}"
token = "${{ONCALL_TOKEN}}"

[alerts.rules.stale]
metric = "staleness_ratio"
window = "1s"
severity = "error"
threshold = 0
above = 1.0
sustain = 1
warmup = 2
history = 10
per_source = true
action = "refresh_sources"
escalate_after = "0s"
cooldown = "0s"
"""


def test_the_daemon_alerts_on_a_stale_source_forces_its_sync_and_tells_the_webhook(
        docs_dir: Path, write_config: Any, ctx_cli: Any, daemon: Any, receiver: Receiver) -> None:
    for folder in docs_dir.iterdir():  # a small corpus: one folder of the fixture docs
        if folder.is_dir() and folder.name != "billing":
            shutil.rmtree(folder)
    config = write_config(CONFIG.format(docs=docs_dir, url=receiver.url, secret=PATH_SECRET))
    assert ctx_cli("--config", str(config), "ingest", "--json").json()["ok"]  # its first sync: it ages from here
    d = daemon(config=config, ONCALL_TOKEN=TOKEN)
    client = d.client()
    try:
        job = wait_until(lambda: next(
            (j for j in client.call(ops.JOBS, JobsIn(limit=50)) if j["trigger"] == "alert" and j["status"] == "ok"), None),
            timeout=60, interval=0.1, what="a sync forced by the alert")
        assert job["sources"] == ["docs"] and job["kind"] == "ingest"
        hook = wait_until(lambda: next(
            (r for r in receiver.requests if r.json()["event"] == "firing"), None),
            timeout=60, interval=0.1, what="the webhook message")
        assert hook.path == f"/hook/{PATH_SECRET}" and hook.headers["Authorization"] == f"Bearer {TOKEN}"
        assert hook.json()["alert"]["rule"] == "stale" and hook.json()["alert"]["key"] == "docs"

        rows = json.loads(d.cli("alerts", "--all", "--json").stdout)  # the real CLI, through the daemon
        first = next(a for a in rows if a["id"] == hook.json()["alert"]["id"])
        assert (first["rule"], first["key"], first["severity"], first["metric"]) == (
            "stale", "docs", "error", "staleness_ratio")
        assert first["step"] == 3 and first["sources"] == ["docs"] and first["value"] > 1.0
        action = next(n for n in first["notifications"] if n["kind"] == "action")
        assert action["status"] == "done" and "docs: sync queued in the bulk lane" in action["detail"]
        assert any(n["target"] == "oncall" and n["status"] == "sent" for n in first["notifications"])
        assert first["id"] in {a["id"] for a in client.call(ops.ALERTS, AlertsIn(limit=50, active=False))}  # the API, directly
        assert all(a["state"] == "firing" for a in client.call(ops.ALERTS, AlertsIn(limit=50, active=True)))

        checked = json.loads(d.cli("alerts", "--check", "--json").stdout)
        assert set(checked) == {"check", "alerts"} and checked["check"]["rules"] == 1
        assert set(client.call(ops.CHECK_ALERTS)) >= {"evaluated_at", "opened", "resolved", "steps", "deliveries", "active"}
        metrics = client.call(ops.METRICS)
        assert "ctx_alerts_active{severity=\"error\"}" in metrics
        assert d.cli("alerts", "--limit", "0", check=False).returncode == 2
    finally:
        client.close()
    log = d.log()
    assert "alert error stale[docs]" in log
    for secret in (TOKEN, PATH_SECRET):
        assert secret not in log
