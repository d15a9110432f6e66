"""Every trace carries what it cost, and a request that failed for want of a critical block is traced too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PRICE = 0.004  # USD per 1K input tokens for the test model


@pytest.fixture
def config(tmp_path: Path, write_config: Any) -> Path:
    (tmp_path / "policy.md").write_text("# Policy\n\nAnswer precisely and cite the page you used.\n")
    # Nothing listens on loopback port 9: the `down` provider fails at once (connection refused).
    return write_config(f'''
[embedding]
embedder = "none"

[pricing]
models = {{ "test-model" = {PRICE} }}

[providers.policy]
kind = "static"
paths = ["policy.md"]
cost = 0.002

[providers.down]
kind = "http"
url = "http://127.0.0.1:9/status"
cache = false

[recipes.ok]
providers.policy = {{ criticality = "critical" }}

[recipes.broken]
providers.policy = {{ criticality = "important" }}
providers.down = {{ criticality = "critical" }}
''')


def test_a_trace_carries_its_cost_breakdown(ctx_cli: Any, config: Path) -> None:
    first = ctx_cli("--config", str(config), "assemble", "what is the policy?", "--recipe", "ok",
                    "--model", "test-model", "--json").json()
    costs = first["costs"]
    assert costs["providers_usd"] == 0.002  # one call to the policy provider
    assert costs["context_usd"] == pytest.approx(first["tokens"] / 1000 * PRICE, abs=1e-8)
    assert costs["embedding_usd"] == 0.0  # no embedder, and the local model costs nothing anyway
    assert first["cost"] == costs["total_usd"] == pytest.approx(costs["context_usd"] + 0.002, abs=1e-8)

    again = ctx_cli("--config", str(config), "assemble", "what is the policy?", "--recipe", "ok",
                    "--model", "test-model", "--json").json()
    assert again["cache"] in ("l1", "l2")
    # The context still goes to the model (its tokens cost the same); no provider was called.
    assert again["costs"]["providers_usd"] == 0.0
    assert again["costs"]["context_usd"] == costs["context_usd"]

    stored = ctx_cli("--config", str(config), "replay", first["trace_id"], "--json").json()
    assert stored["costs"] == costs and stored["cost"] == first["cost"] and stored["status"] == "ok"
    listed = {t["id"]: t for t in ctx_cli("--config", str(config), "traces", "--json").json()}
    assert listed[first["trace_id"]]["cost"] == first["cost"]


def test_unknown_models_cost_the_default_price(ctx_cli: Any, config: Path) -> None:
    out = ctx_cli("--config", str(config), "assemble", "what is the policy?", "--recipe", "ok",
                  "--model", "some-local-model", "--json").json()
    assert out["costs"]["context_usd"] == 0.0  # [pricing] default is 0: local models cost nothing


def test_a_missing_critical_block_fails_the_request_and_is_traced(ctx_cli: Any, config: Path) -> None:
    failed = ctx_cli("--config", str(config), "assemble", "what is the policy?", "--recipe", "broken", ok=False)
    assert failed.exit_code != 0 and failed.stdout == ""
    line = failed.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "critical provider 'down'" in line and "(trace " in line
    trace_id = line.rsplit("(trace ", 1)[1].rstrip(")")

    trace = ctx_cli("--config", str(config), "replay", trace_id, "--json").json()
    assert trace["status"] == "failed" and trace["context"] == "" and trace["tokens"] == 0
    assert "critical provider 'down'" in trace["error"]
    assert trace["providers"]["down"]["status"] == "failed"
    assert trace["providers"]["policy"]["status"] == "ok"
    assert [d["source"] for d in trace["degradations"]] == ["down"]
    summary = next(t for t in ctx_cli("--config", str(config), "traces", "--json").json() if t["id"] == trace_id)
    assert summary["status"] == "failed" and summary["recipe"] == "broken"


def test_metrics_command_prints_the_state_metrics(ctx_cli: Any, config: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = ctx_cli("--config", str(config), "metrics").stdout
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"ctx_queue_depth", "ctx_store_rows"} <= names
    families = ctx_cli("--config", str(config), "metrics", "--json").json()
    assert {f["name"] for f in families} == names
    rows = next(f for f in families if f["name"] == "ctx_store_rows")
    assert {s["labels"]["table"] for s in rows["samples"]} >= {"documents", "chunks", "traces"}
    json.dumps(families)  # plain JSON all the way down
