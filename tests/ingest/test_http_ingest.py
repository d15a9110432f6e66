"""An http source through the whole pipeline and CLI, against a loopback server the test starts.

The API token comes from an environment variable and must never reach the catalog, traces, output
or errors, including when the API fails.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Loopback, Reply, Request, no_proxy

TOKEN = "tok-9f8e7d6c5b4a-very-secret"
PAGES = {
    1: {"items": [{"id": "inc-1", "title": "Elevated 5xx on EU flag delivery", "body": "Root cause: a bad deploy."},
                  {"id": "inc-2", "title": "Webhook delays", "body": "Webhook deliveries were delayed by 9 minutes."}],
        "next_cursor": "c2"},
    2: {"items": [{"id": "inc-3", "title": "Dashboard login loop", "body": "SAML users looped on the ACS page."},
                  {"title": "no id here"}],
        "next_cursor": None},
}


class IncidentsApi(Loopback):
    """The incidents API: two pages by cursor; ``fail`` makes it answer 500."""

    def __init__(self) -> None:
        self.fail = False
        super().__init__(self._respond)

    def _respond(self, request: Request) -> Reply:
        if self.fail:
            return Reply(500)
        page = 2 if "cursor=c2" in request.target else 1
        return Reply(200, {"data": PAGES[page]})

    @property
    def auth(self) -> list[str | None]:
        """The Authorization header of every request so far."""
        return [r.header("Authorization") for r in self.requests]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[IncidentsApi]:
    monkeypatch.setenv("STATUS_TOKEN", TOKEN)
    no_proxy(monkeypatch)
    with IncidentsApi() as server:
        yield server


@pytest.fixture
def config(api: IncidentsApi, write_config) -> Path:
    return write_config(f"""
[embedding]
embedder = "none"

[sources.status]
kind = "http"
url = "{api.url}/api/incidents"
headers = {{ Authorization = "Bearer ${{STATUS_TOKEN}}" }}
records_path = "data.items"
id_field = "id"
text_fields = ["title", "body"]
title_field = "title"
pagination = "cursor"
cursor_path = "data.next_cursor"
retries = 1
backoff = "1ms"
freshness = "near_realtime"
criticality = "important"
""")


def _home_bytes() -> bytes:
    home = Path(os.environ["CTX_HOME"])
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_http_source_ingests_pages_and_keeps_the_token_secret(config: Path, api: IncidentsApi, ctx_cli) -> None:
    res = ctx_cli("ingest", "--json")
    summary = res.json()
    assert summary["totals"]["new"] == 3
    assert summary["totals"]["quarantined"] == 1  # the item without an id
    assert api.auth and all(a == f"Bearer {TOKEN}" for a in api.auth)
    out = ctx_cli("assemble", "SAML login loop on the ACS page", "--json").json()
    assert any(b["document"] == "inc-3" for b in out["blocks"])
    trace = ctx_cli("replay", out["trace_id"], "--json")
    status = ctx_cli("status", "--json")
    for text in (res.stdout, res.stderr, trace.stdout, status.stdout):
        assert TOKEN not in text
    assert TOKEN.encode() not in _home_bytes()


def test_a_failing_api_keeps_old_data_and_never_prints_the_token(config: Path, api: IncidentsApi, ctx_cli) -> None:
    ctx_cli("ingest", "--json")
    api.set(fail=True)
    res = ctx_cli("ingest", "--json", ok=False)
    assert res.exit_code == 1
    failed = res.json()["sources"][0]
    assert "HTTP 500" in failed["error"] and failed["deleted"] == 0
    # A failed listing is not a list of deletions: the mirror keeps what it had.
    assert ctx_cli("search", "webhook delays", "--json").json()
    sources = ctx_cli("sources", "--json").json()[0]
    assert sources["documents"] == 3 and "HTTP 500" in sources["last_error"]
    human = ctx_cli("ingest", ok=False)
    for text in (res.stdout, res.stderr, human.stdout, human.stderr):
        assert TOKEN not in text
    assert TOKEN.encode() not in _home_bytes()


KEY = "key-5e4d3c2b1a-in-the-url"


@pytest.fixture
def keyed(api: IncidentsApi, write_config, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same API with its key in the URL path and in the query string (as many APIs take it)."""
    monkeypatch.setenv("STATUS_KEY", KEY)
    return write_config(f"""
[embedding]
embedder = "none"

[daemon]
scheduler = false
watch = false

[sources.status]
kind = "http"
url = "{api.url}/api/${{STATUS_KEY}}/incidents"
params = {{ api_key = "${{STATUS_KEY}}", lang = "en" }}
records_path = "data.items"
text_fields = ["title", "body"]
pagination = "cursor"
cursor_path = "data.next_cursor"
retries = 1
backoff = "1ms"
""")


def test_a_key_in_the_url_and_query_reaches_the_api_and_nothing_else(keyed: Path, api: IncidentsApi, ctx_cli,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outputs = [ctx_cli("ingest", "--json")]
    assert outputs[0].json()["totals"]["new"] == 3
    assert {r.path for r in api.requests} == {f"/api/{KEY}/incidents"}
    assert all(r.query["api_key"] == KEY and r.query["lang"] == "en" for r in api.requests)
    assemble = ctx_cli("assemble", "SAML login loop on the ACS page", "--json")
    outputs += [assemble, ctx_cli("replay", assemble.json()["trace_id"], "--json"), ctx_cli("sources", "--json"),
                ctx_cli("sources"), ctx_cli("status", "--json"), ctx_cli("status")]

    api.set(fail=True)
    failed = ctx_cli("ingest", "--json", ok=False)
    error = failed.json()["sources"][0]["error"]
    assert "HTTP 500" in error and "/api/***/incidents" in error
    last = ctx_cli("sources", "--json").json()[0]["last_error"]
    assert "/api/***/incidents" in last
    outputs += [failed, ctx_cli("ingest", ok=False), ctx_cli("sources", "--json")]

    assert "HTTP Request: GET" in caplog.text and "api_key=***" in caplog.text
    for text in [caplog.text, *(o.stdout + o.stderr for o in outputs)]:
        assert KEY not in text
    assert KEY.encode() not in _home_bytes()


def test_through_the_daemon_the_key_stays_out_of_jobs_logs_and_metrics(keyed: Path, api: IncidentsApi,
                                                                        daemon) -> None:
    d = daemon(config=keyed)
    outputs = [d.cli("ingest", "--json"), d.cli("sources", "--json"), d.cli("status")]
    assert json.loads(outputs[0].stdout)["totals"]["new"] == 3
    assert api.requests and all(r.path == f"/api/{KEY}/incidents" for r in api.requests)
    api.set(fail=True)
    failed = d.cli("ingest", "--json", check=False)
    assert failed.returncode == 1 and "/api/***/incidents" in failed.stdout
    outputs += [failed, d.cli("sources", "--json"), d.cli("jobs", "--json", check=False)]
    runtime = d.runtime
    with httpx.Client(transport=httpx.HTTPTransport(uds=runtime.uds), base_url="http://localhost",
                      headers={"Authorization": f"Bearer {runtime.token}"}) as http:
        metrics = http.get("/metrics")
    assert metrics.status_code == 200 and 'source="status"' in metrics.text
    for text in [metrics.text, d.log(), *(o.stdout + o.stderr for o in outputs)]:
        assert KEY not in text
    d.stop()
    assert KEY.encode() not in _home_bytes()
