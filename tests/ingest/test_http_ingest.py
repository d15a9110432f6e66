"""An http source through the whole pipeline and CLI, against a loopback server the test starts.

The API token comes from an environment variable and must never reach the catalog, traces, output
or errors, including when the API fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
