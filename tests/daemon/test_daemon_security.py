"""The daemon's security layer and error contract: bearer token, Host check, body limit, stable error codes,
secrets that never leave the process that needs them, and the metrics a scraper relies on.

Most tests build the real app in-process (the same Workspace/Service/create_app that ``serve()`` builds)
and talk to it through Starlette's TestClient; the ones where the HTTP server matters (chunked bodies,
no Host header, secrets across the CLI) run against a real daemon subprocess over its unix socket.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from ctx.api import runtime as rt
from ctx.api.schemas import API_VERSION, VERSION_HEADER
from tests.helpers import Loopback, Reply, Request, no_proxy, wait_until

SOURCES = """
[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]

[sources.notes]
kind = "files"
path = "notes"
freshness = "near_realtime"
max_staleness = "1h"

[sources.events]
kind = "jsonl"
path = "events.jsonl"
mode = "append"
freshness = "realtime"
"""


def _config(daemon: str = "", sources: str = SOURCES) -> str:
    return f'[embedding]\nembedder = "none"\n\n[daemon]\nscheduler = false\nwatch = false\n{daemon}\n{sources}'


@dataclass
class App:
    http: TestClient
    token: str
    service: Any

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def routes(self) -> list[tuple[str, str]]:
        """(method, path) for every route the app serves, path parameters filled in."""
        from starlette.routing import Route

        inner = self.http.app.app  # type: ignore[attr-defined]  # the FastAPI app inside the Guard
        found = []
        for route in inner.routes:
            if isinstance(route, Route):
                path = re.sub(r"\{[^}]+\}", "some-id", route.path)
                found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
        return found


@pytest.fixture
def make_app(tmp_path: Path, docs_dir: Path, write_config: Callable[[str], Path]) -> Iterator[Callable[..., App]]:
    """Builds the app the way ``serve()`` does, with the job lanes running; torn down at the end."""
    from ctx.daemon.app import create_app
    from ctx.daemon.service import Service
    from ctx.settings import load_settings
    from ctx.store.writer import ThreadWriter
    from ctx.workspace import Workspace

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "oncall.md").write_text("# On-call\n\nThe on-call engineer rotates every Monday.\n")
    (tmp_path / "events.jsonl").write_text("")
    built: list[tuple[TestClient, Any, Any, Any]] = []

    def make(daemon: str = "") -> App:
        settings = load_settings(write_config(_config(daemon)))
        writer = ThreadWriter()
        ws = Workspace(settings, dict(os.environ), writer)
        service = Service(ws)
        service.address = "unix:test"
        token = rt.new_token()
        app = create_app(service, token)
        service.start()
        http = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
        built.append((http, service, writer, ws))
        return App(http, token, service)

    yield make
    for http, service, writer, ws in built:
        http.close()
        service.stop(timeout=10)
        writer.close()
        ws.close()


def _error(response: httpx.Response, status: int, code: str) -> str:
    """Asserts the stable error shape and returns the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert "Traceback" not in response.text
    assert response.headers.get(VERSION_HEADER) == API_VERSION
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


# --- the bearer token -----------------------------------------------------------------------------


def test_every_route_but_healthz_needs_the_token(make_app: Callable[..., App]) -> None:
    app = make_app()
    routes = app.routes()
    paths = {path for _, path in routes}
    # The enumeration found the API, so a route added later is covered too.
    assert {"/metrics", "/v1/assemble", "/v1/search", "/v1/ingest", "/v1/jobs", "/v1/jobs/some-id", "/v1/events",
            "/v1/traces", "/v1/traces/some-id", "/v1/replay", "/v1/sources", "/v1/status", "/v1/quarantine",
            "/v1/doctor", "/healthz"} <= paths
    for method, path in [*routes, ("GET", "/no-such-route"), ("POST", "/v1/no-such-route")]:
        if path == "/healthz":
            continue
        body = {"content": b'{"query": "refunds"}', "headers": {"Content-Type": "application/json"}}
        kwargs: dict[str, Any] = body if method == "POST" else {}
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {app.token}"},
                        {"Authorization": app.token}, {"Authorization": "Bearer "}):
            response = app.http.request(method, path, **{**kwargs, "headers": {**kwargs.get("headers", {}), **headers}})
            _error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"] == "Bearer", (method, path)
            assert app.token not in response.text
    # The right token opens them (a smoke check that the refusals above were about the token).
    assert app.http.get("/v1/status", headers=app.auth).status_code == 200
    assert app.http.get("/metrics", headers=app.auth).status_code == 200


def test_healthz_is_open_and_says_little(make_app: Callable[..., App]) -> None:
    app = make_app()
    response = app.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "api_version": API_VERSION, "pid": os.getpid()}
    assert response.headers[VERSION_HEADER] == API_VERSION


# --- the Host header (DNS rebinding) --------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:80", "localhost.evil.example.com",
                                  "127.0.0.1.nip.io", "[::2]:80", "0.0.0.0", ""])
def test_a_foreign_host_is_refused_even_with_the_token(make_app: Callable[..., App], host: str) -> None:
    app = make_app()
    for path in ("/v1/status", "/healthz", "/metrics"):
        response = app.http.get(path, headers={**app.auth, "Host": host})
        _error(response, 403, "host_not_allowed")


@pytest.mark.parametrize("host", ["localhost", "localhost:1234", "LocalHost:8765", "127.0.0.1", "127.0.0.1:8765",
                                  "[::1]:80", "[::1]"])
def test_local_hosts_are_accepted(make_app: Callable[..., App], host: str) -> None:
    app = make_app()
    response = app.http.get("/v1/status", headers={**app.auth, "Host": host})
    assert response.status_code == 200, response.text
    assert response.json()["daemon"]["address"] == "unix:test"


def test_allowed_hosts_extend_the_local_names(make_app: Callable[..., App]) -> None:
    app = make_app('allowed_hosts = ["ctx.internal", "Docker-Host"]')
    for host in ("ctx.internal", "ctx.internal:8765", "docker-host:80", "localhost"):
        assert app.http.get("/v1/status", headers={**app.auth, "Host": host}).status_code == 200, host
    for host in ("evil.example.com", "ctx.internal.evil.example.com", "internal"):
        _error(app.http.get("/v1/status", headers={**app.auth, "Host": host}), 403, "host_not_allowed")


@pytest.mark.parametrize("parser", ["h11", "httptools"])
@pytest.mark.parametrize(("target", "status"), [
    ("http://evil.example/v1/status", 403), ("http://ctx.internal.evil.example:8765/v1/status?x=1", 403),
    ("http://localhost/v1/status", 200), ("http://Ctx.Internal:8765/v1/status?x=1", 200),
    ("http://[::1]/v1/status", 200), ("localhost:8765", 400), ("*", 400)])
def test_an_absolute_form_target_must_name_an_allowed_host(make_app: Callable[..., App], parser: str,
                                                          target: str, status: int) -> None:
    """The scope each parser gives the app for ``GET <target>`` with ``Host: localhost`` (httpx would rewrite
    the target; the live daemon test sends it raw): h11 keeps the target in raw_path, httptools only its path
    (our protocol keeps the rest in the scope's extensions)."""
    import asyncio
    from urllib.parse import urlsplit

    from ctx.daemon.app import TARGET_KEY

    app = make_app('allowed_hosts = ["ctx.internal"]')
    raw = target.encode()
    path = urlsplit(target).path or target
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8765),
        "headers": [(b"host", b"localhost"), (b"authorization", f"Bearer {app.token}".encode())],
    }
    if parser == "h11":
        scope.update(path=target, raw_path=raw, query_string=b"")
    else:
        scope.update(path=path, raw_path=path.encode(), query_string=urlsplit(target).query.encode(),
                     extensions={TARGET_KEY: raw})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app.http.app(scope, receive, send))  # type: ignore[attr-defined]  # the Guard itself
    assert sent[0]["status"] == status, sent
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    if status == 403:
        assert body["error"]["code"] == "host_not_allowed"
    elif status == 200:
        assert "documents" in body, body  # the status, served from the target's path


# --- the body size limit --------------------------------------------------------------------------


def _query_of_size(size: int) -> bytes:
    body = b'{"query": "' + b"a" * (size - len(b'{"query": ""}')) + b'"}'
    assert len(body) == size
    return body


def test_a_body_over_the_limit_is_refused(make_app: Callable[..., App]) -> None:
    app = make_app("max_body_bytes = 1024")
    headers = {**app.auth, "Content-Type": "application/json"}
    # At the limit: served (nothing is indexed, so no hits).
    at_limit = app.http.post("/v1/search", content=_query_of_size(1024), headers=headers)
    assert at_limit.status_code == 200, at_limit.text
    for path in ("/v1/search", "/v1/assemble", "/v1/events", "/v1/doctor"):
        # With a Content-Length: refused before the route runs.
        _error(app.http.post(path, content=_query_of_size(1025), headers=headers), 413, "payload_too_large")

        # Chunked (no Content-Length): counted as it arrives.
        def chunks() -> Iterator[bytes]:
            yield b'{"query": "'
            for _ in range(20):
                yield b"a" * 100
            yield b'"}'

        response = app.http.post(path, content=chunks(), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}
        _error(response, 413, "payload_too_large")
    # The limit is per request: the app still serves normal requests afterwards.
    assert app.http.post("/v1/search", json={"query": "refunds"}, headers=app.auth).status_code == 200


def test_a_bad_content_length_is_refused(make_app: Callable[..., App]) -> None:
    app = make_app("max_body_bytes = 1024")
    response = app.http.post("/v1/search", content=b'{"query": "x"}',
                             headers={**app.auth, "Content-Type": "application/json", "Content-Length": "99999999999"})
    _error(response, 413, "payload_too_large")


# --- bad input: 4xx with a stable code, never a 500 -----------------------------------------------

JSON = {"Content-Type": "application/json"}
BAD_INPUT: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/v1/search", {"content": b'{"query": "x"', "headers": JSON}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"content": b"not json at all", "headers": JSON}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"content": b"[]", "headers": JSON}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"content": b"null", "headers": JSON}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"content": b"\xff\xfe\x00", "headers": JSON}, 400, "bad_request"),  # not UTF-8
    ("POST", "/v1/assemble", {"content": b"[" * 3000, "headers": JSON}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"content": b"", "headers": JSON}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"json": {}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "colour": "red"}}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"json": {"query": "x", "filters": {"sources": ["docs"]}}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": 5}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "limit": "many"}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "limit": 0}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "sources": "docs"}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": "x" * 20_001}}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"json": {"query": "x", "top_k": 0}}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"json": {"query": "x", "budget": 1.5}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "sources": ["nope"]}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": "x", "sources": ["nope"]}}, 400, "bad_request"),
    ("POST", "/v1/search", {"json": {"query": ""}}, 400, "bad_request"),
    ("POST", "/v1/search", {"json": {"query": "   \n\t"}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": ""}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": "x", "budget": -1}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": "x", "format": "pdf"}}, 400, "bad_request"),
    ("POST", "/v1/ingest", {"json": {"sources": ["nope"]}}, 400, "bad_request"),
    ("POST", "/v1/ingest", {"json": {"sources": "docs"}}, 422, "invalid_request"),
    ("GET", "/v1/jobs/no-such-job", {}, 404, "not_found"),
    ("GET", "/v1/jobs", {"params": {"limit": "abc"}}, 422, "invalid_request"),
    ("GET", "/v1/jobs", {"params": {"limit": "0"}}, 422, "invalid_request"),
    ("GET", "/v1/traces/no-such-trace", {}, 404, "not_found"),
    ("GET", "/v1/traces", {"params": {"limit": "-1"}}, 422, "invalid_request"),
    ("POST", "/v1/replay", {"json": {"trace_id": "no-such-trace"}}, 404, "not_found"),
    ("POST", "/v1/replay", {"json": {"trace_id": "no-such-trace", "rerun": True}}, 404, "not_found"),
    ("POST", "/v1/replay", {"json": {"trace_id": "x" * 201}}, 422, "invalid_request"),
    ("POST", "/v1/replay", {"json": {"trace_id": "abc", "rerun": "sometimes"}}, 422, "invalid_request"),
    ("POST", "/v1/events", {"json": {"source": "docs", "events": [{"id": "e1", "text": "hi"}]}}, 400, "bad_request"),
    ("POST", "/v1/events", {"json": {"source": "nope", "events": [{"id": "e1", "text": "hi"}]}}, 404, "not_found"),
    ("POST", "/v1/events", {"json": {"source": "events", "events": []}}, 422, "invalid_request"),
    ("POST", "/v1/events", {"json": {"source": "events", "events": ["not an object"]}}, 422, "invalid_request"),
    ("POST", "/v1/events", {"json": {"source": "../etc", "events": [{"id": "e1"}]}}, 422, "invalid_request"),
    ("GET", "/v1/quarantine", {"params": {"source": "nope"}}, 400, "bad_request"),
    ("GET", "/v1/quarantine", {"params": {"source": ""}}, 422, "invalid_request"),
    ("POST", "/v1/doctor", {"json": {"repair": "please"}}, 422, "invalid_request"),
    # Text no store can hold (a lone surrogate, sent as the JSON escape json.loads accepts; a NUL) and numbers
    # out of range, in any field of any body, are refused: never a 500 (issue 13). 400, not 422: the schema
    # allows them (a JSON string may hold a NUL), no store does.
    *[("POST", path, {"content": body.encode(), "headers": JSON}, 400, "bad_request") for path, body in [
        ("/v1/events", r'{"source": "events", "events": [{"id": "x1", "text": "a \udcff b"}]}'),
        ("/v1/events", r'{"source": "events", "events": [{"id": "x\udcff1", "text": "a b"}]}'),
        ("/v1/events", r'{"source": "events", "events": [{"id": "x1", "text": "a \u0000 b"}]}'),
        ("/v1/events", r'{"source": "events", "events": [{"id": "x1", "text": "a", "n": {"\ud800": 1}}]}'),
        ("/v1/events", '{"source": "events", "events": [{"id": "x1", "text": "a", "n": [1e400]}]}'),
        ("/v1/events", '{"source": "events", "events": [{"id": 1%s, "text": "a"}]}' % ("0" * 400)),
        ("/v1/search", r'{"query": "a \udcff b"}'),
        ("/v1/search", r'{"query": "a \u0000 b"}'),
        ("/v1/search", r'{"query": "a", "sources": ["\udcff"]}'),
        ("/v1/search", '{"query": "a", "limit": 1%s}' % ("0" * 400)),
        ("/v1/assemble", r'{"query": "a", "params": {"\udcff": "x"}}'),
        ("/v1/assemble", r'{"query": "a", "params": {"user": "\u0000"}}'),
        ("/v1/assemble", r'{"query": "a", "user": "\udcff"}'),
        ("/v1/assemble", '{"query": "a", "budget": 1%s}' % ("0" * 400)),
        ("/v1/assemble", '{"query": "a", "top_k": 1e400}'),
        ("/v1/assemble", '{"query": "a", "deadline_ms": 1e400}'),
        ("/v1/eval", r'{"queries": [{"id": "q1", "query": "a", "relevant": {"d\udcff": 1}}]}'),
        ("/v1/eval", r'{"queries": [{"id": "q\u0000", "query": "a", "relevant": {"d": 1}}]}'),
        ("/v1/eval", '{"queries": [{"id": "q1", "query": "a", "relevant": {"d": 1e400}}]}'),
        ("/v1/versions/label", r'{"ref": "abcd", "label": "x", "recipe": "\udcff"}'),
        ("/v1/ingest", r'{"sources": ["\udcff"]}'),
        ("/v1/replay", r'{"trace_id": "\udcff"}'),
    ]],
    ("GET", "/v1/jobs/a%00b", {}, 400, "bad_request"),
    ("GET", "/v1/quarantine", {"params": {"source": "a\x00b"}}, 400, "bad_request"),
    ("GET", "/v1/ab/a%00b", {}, 400, "bad_request"),
    ("GET", "/v1/no-such-route", {}, 404, "not_found"),
    ("DELETE", "/v1/status", {}, 405, "method_not_allowed"),
    ("GET", "/v1/assemble", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_INPUT,
                         ids=[f"{m} {p} {i}" for i, (m, p, *_rest) in enumerate(BAD_INPUT)])
def test_bad_input_gets_a_stable_4xx_never_a_500(make_app: Callable[..., App], method: str, path: str,
                                                 kwargs: dict[str, Any], status: int, code: str) -> None:
    app = make_app()
    kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **app.auth}}
    _error(app.http.request(method, path, **kwargs), status, code)


def test_unknown_fields_and_types_are_named_in_the_message(make_app: Callable[..., App]) -> None:
    app = make_app()
    message = _error(app.http.post("/v1/search", json={"query": "x", "colour": "red"}, headers=app.auth),
                     422, "invalid_request")
    assert "colour" in message and "unknown field" in message
    message = _error(app.http.post("/v1/search", json={"query": "x", "limit": "many"}, headers=app.auth),
                     422, "invalid_request")
    assert "limit" in message
    message = _error(app.http.post("/v1/search", json={"query": "x", "sources": ["nope"]}, headers=app.auth),
                     400, "bad_request")
    assert "nope" in message and "docs" in message  # names the unknown source and the configured ones


@pytest.mark.parametrize("query", ['"unbalanced', "AND OR NOT", "title:refund*", "(((", "a\u0000b", "NEAR(a b)",
                                   "-", "^*", "'; DROP TABLE chunks; --", "\U0001f600 emoji", "\ud800 lone surrogate"])
def test_odd_queries_never_crash_search_or_assemble(make_app: Callable[..., App], query: str) -> None:
    app = make_app()
    job = app.http.post("/v1/ingest", json={"sources": ["notes"]}, headers=app.auth).json()
    _wait_job(app, job["id"])
    body = json.dumps({"query": query}).encode()  # \ud800 travels as a JSON escape, as a client may send it
    for path in ("/v1/search", "/v1/assemble"):
        response = app.http.post(path, content=body, headers={**app.auth, **JSON})
        assert response.status_code in (200, 400, 422), (path, response.status_code, response.text)
        assert "Traceback" not in response.text
        if response.status_code != 200:
            _error(response, response.status_code, "bad_request" if response.status_code == 400 else "invalid_request")


def _wait_job(app: App, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = app.http.get(f"/v1/jobs/{job_id}", headers=app.auth).json()
        return dict(job) if job["status"] in ("ok", "partial", "failed", "interrupted") else None

    return wait_until(finished, timeout, what=f"job {job_id} to finish")  # type: ignore[no-any-return]


# --- metrics --------------------------------------------------------------------------------------


def test_metrics_expose_freshness_queue_requests_and_assembly_latency(make_app: Callable[..., App]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    app = make_app()
    job = app.http.post("/v1/ingest", json={}, headers=app.auth)
    assert job.status_code == 202, job.text
    assert _wait_job(app, job.json()["id"])["status"] == "ok"
    assembled = app.http.post("/v1/assemble", json={"query": "who is on call on Monday"}, headers=app.auth)
    assert assembled.status_code == 200, assembled.text

    response = app.http.get("/metrics", headers=app.auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("ctx_source_staleness_seconds", "ctx_source_max_staleness_seconds", "ctx_queue_depth",
                 "ctx_http_requests", "context_assembly_duration_seconds"):
        assert name in families, f"{name} missing from /metrics: {sorted(families)}"

    configured = {"docs", "notes", "events"}
    staleness = {s.labels["source"]: s.value for s in families["ctx_source_staleness_seconds"].samples}
    assert set(staleness) == configured  # every source synced once, so each has a staleness
    assert all(0 <= v < 600 for v in staleness.values()), staleness
    limits = {s.labels["source"]: s.value for s in families["ctx_source_max_staleness_seconds"].samples}
    assert limits == {"docs": 86400.0, "notes": 3600.0, "events": 5.0}
    freshness = {s.labels["source"]: s.labels["freshness"] for s in families["ctx_source_max_staleness_seconds"].samples}
    assert freshness == {"docs": "batch", "notes": "near_realtime", "events": "realtime"}

    assert families["ctx_queue_depth"].type == "gauge"
    assert [s.value for s in families["ctx_queue_depth"].samples] == [0.0]  # the job finished: nothing waits

    requests = families["ctx_http_requests"]
    assert requests.type == "counter"
    served = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
              for s in requests.samples if s.name == "ctx_http_requests_total"}
    assert served[("/v1/assemble", "POST", "200")] == 1
    assert served[("/v1/ingest", "POST", "202")] == 1

    assembly = families["context_assembly_duration_seconds"]
    assert assembly.type == "histogram"
    counts = [s for s in assembly.samples if s.name == "context_assembly_duration_seconds_count"]
    assert len(counts) == 1 and counts[0].value == 1
    assert counts[0].labels["pipeline"] == "default" and counts[0].labels["version"]
    bounds = sorted({float(s.labels["le"]) for s in assembly.samples if s.name.endswith("_bucket")})
    assert bounds[0] == 0.01 and bounds[-2:] == [1.0, float("inf")]  # 10 ms to 1 s, as dashboards expect

    # Tokens and cost per request, one observation each; ingest counters per source.
    for name in ("ctx_assembly_tokens", "ctx_assembly_cost_usd"):
        observed = [s.value for s in families[name].samples if s.name == f"{name}_count"]
        assert observed == [1.0], (name, observed)
    records = {(s.labels["source"], s.labels["outcome"]): s.value for s in families["ctx_ingest_records"].samples
               if s.name == "ctx_ingest_records_total"}
    chunks = {(s.labels["source"], s.labels["stage"]): s.value for s in families["ctx_ingest_chunks"].samples
              if s.name == "ctx_ingest_chunks_total"}
    for source in ("docs", "notes"):
        assert records[(source, "new")] > 0 and chunks[(source, "written")] >= records[(source, "new")]


def test_metrics_expose_providers_breakers_and_caches(make_app: Callable[..., App], tmp_path: Path) -> None:
    """What an operator graphs for assembly: per-provider latency by outcome, breaker states, cache lookups."""
    from prometheus_client.parser import text_string_to_metric_families

    (tmp_path / "policy.md").write_text("# Policy\n\nBe kind and precise.\n")
    # Port 9 on loopback: nothing listens, so every call fails at once (connection refused).
    providers = (
        '[providers.policy]\nkind = "static"\npaths = ["policy.md"]\n\n'
        '[providers.down]\nkind = "http"\nurl = "http://127.0.0.1:9/status"\ncache = false\ntimeout = "30s"\n'
        "breaker = { failures = 2, window = \"60s\", cooldown = \"60s\" }\n\n"
        '[recipes.ops]\nproviders.policy = { criticality = "critical" }\n'
        'providers.down = { criticality = "optional" }\n'
    )
    app = make_app(providers)
    # A roomy deadline and timeout: the first request also pays the http client's first use (its SSL
    # context, seconds on a busy machine), and a call cut by the deadline would be `late`, not `failed`.
    ask = {"query": "what is the policy?", "recipe": "ops", "deadline_ms": 30000}
    for _ in range(3):  # two failures open the breaker; the third request skips the provider
        out = app.http.post("/v1/assemble", json=ask, headers=app.auth)
        assert out.status_code == 200, out.text
    assert out.json()["providers"]["down"]["status"] == "skipped"
    assert out.json()["cache"] == "miss"  # a context with a provider down is never cached

    families = {f.name: f for f in text_string_to_metric_families(app.http.get("/metrics", headers=app.auth).text)}
    states = {s.labels["provider"]: s.value for s in families["ctx_breaker_state"].samples}
    assert states["down"] == 2 and states["policy"] == 0  # 2 open, 0 closed
    opened = {s.labels["provider"]: s.value for s in families["ctx_breaker_opened"].samples
              if s.name == "ctx_breaker_opened_total"}
    assert opened["down"] == 1
    seen = {(s.labels["provider"], s.labels["status"]): s.value for s in families["ctx_provider_duration_seconds"].samples
            if s.name == "ctx_provider_duration_seconds_count"}
    assert seen[("down", "failed")] == 2 and seen[("down", "skipped")] == 1
    assert seen[("policy", "ok")] == 1 and seen[("policy", "cached")] == 2  # the policy file was read once
    lookups = {(s.labels["level"], s.labels["result"]): s.value for s in families["ctx_cache_lookups"].samples
               if s.name == "ctx_cache_lookups_total"}
    assert lookups[("provider", "hit_l1")] == 2 and lookups[("context", "miss")] == 3
    by_recipe = [s for s in families["context_assembly_duration_seconds"].samples
                 if s.name == "context_assembly_duration_seconds_count"]
    assert [(s.labels["pipeline"], s.value) for s in by_recipe] == [("ops", 3.0)]


def test_refused_requests_are_counted_without_growing_the_labels(make_app: Callable[..., App]) -> None:
    """A scan of made-up paths must not add a label per path (unbounded metric cardinality)."""
    from prometheus_client.parser import text_string_to_metric_families

    app = make_app()
    app.http.get("/v1/status")  # no token
    app.http.get("/v1/status", headers={**app.auth, "Host": "evil.example.com"})
    for i in range(3):
        assert app.http.get(f"/v1/scan-{i}", headers=app.auth).status_code == 404
        assert app.http.get(f"/v1/scan-{i}").status_code == 401
    assert app.http.get("/v1/jobs/some-job-id", headers=app.auth).status_code == 404
    text = app.http.get("/metrics", headers=app.auth).text
    samples = [s for f in text_string_to_metric_families(text) if f.name == "ctx_http_requests" for s in f.samples
               if s.name == "ctx_http_requests_total"]
    statuses = {(s.labels["route"], s.labels["status"]): s.value for s in samples}
    assert statuses[("unmatched", "401")] == 4
    assert statuses[("unmatched", "403")] == 1
    assert statuses[("unmatched", "404")] == 3
    assert statuses[("/v1/jobs/{job_id}", "404")] == 1  # the route's template, not the id
    assert not [s for s in samples if "scan" in s.labels["route"] or "some-job-id" in s.labels["route"]]


# --- against a real daemon: the HTTP server's part of the contract ---------------------------------


def _uds_client(runtime: Any, **headers: str) -> httpx.Client:
    return httpx.Client(base_url="http://localhost", transport=httpx.HTTPTransport(uds=runtime.uds),
                        headers=headers, timeout=30)


def _raw(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(path)
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def test_the_live_daemon_enforces_the_same_guard(daemon: Callable[..., Any], write_config: Callable[[str], Path],
                                                 docs_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "events.jsonl").write_text("")
    d = daemon(config=write_config(_config("max_body_bytes = 2048")))
    runtime = d.runtime
    assert runtime.uds and (os.stat(runtime.uds).st_mode & 0o777) == 0o600  # only this user may connect

    with _uds_client(runtime) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        _error(anonymous.get("/v1/status"), 401, "unauthorized")
        _error(anonymous.get("/metrics"), 401, "unauthorized")
    with _uds_client(runtime, Authorization="Bearer not-the-token") as wrong:
        _error(wrong.get("/v1/status"), 401, "unauthorized")
    with _uds_client(runtime, Authorization=f"Bearer {runtime.token}") as http:
        assert http.get("/v1/status").status_code == 200
        _error(http.get("/v1/status", headers={"Host": "evil.example.com"}), 403, "host_not_allowed")
        _error(http.post("/v1/search", content=_query_of_size(2049), headers=JSON), 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:
            yield b'{"query": "'
            for _ in range(40):
                yield b"a" * 100
            yield b'"}'

        _error(http.post("/v1/search", content=chunks(), headers=JSON), 413, "payload_too_large")
        _error(http.post("/v1/search", content=b'{"query": "x"', headers=JSON), 422, "invalid_request")
        _error(http.post("/v1/events", json={"source": "docs", "events": [{"id": "1"}]}), 400, "bad_request")
        _error(http.get("/v1/jobs/nope"), 404, "not_found")
        assert http.get("/v1/status").status_code == 200  # still serving

    # HTTP/1.0 without a Host header is not a local request either.
    reply = _raw(runtime.uds, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
    assert b"host_not_allowed" in reply

    # An absolute-form target names the server as the Host header does: a foreign one is refused, a local one
    # is served (raw requests: httpx would rewrite the target). Issue 13, item 6.
    auth = f"Authorization: Bearer {runtime.token}\r\n".encode()
    for target, status in ((b"http://evil.example/v1/status", b"403"), (b"http://evil.example:80/healthz", b"403"),
                           (b"https://EVIL.example/v1/status?x=1", b"403"), (b"http://localhost/v1/status", b"200"),
                           (b"http://127.0.0.1:9/v1/status?x=1", b"200"), (b"ftp://localhost/v1/status", b"400")):
        reply = _raw(runtime.uds, b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n" + auth
                     + b"Connection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 " + status), (target, reply[:300])
        if status == b"403":
            assert b"host_not_allowed" in reply and b"evil.example" in reply

    # A lone surrogate (sent as the JSON escape) is a 400, and the keep-alive connection still serves the next
    # request. Issue 13, item 1.
    body = rb'{"source": "events", "events": [{"id": "x1", "text": "a \udcff b"}]}'
    first = (b"POST /v1/events HTTP/1.1\r\nHost: localhost\r\n" + auth + b"Content-Type: application/json\r\n"
             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    reply = _raw(runtime.uds, first + b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n" + auth
                 + b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b"bad_request" in reply and reply.count(b"HTTP/1.1 200") == 1, reply[:600]
    events = tmp_path / "bad-events.jsonl"
    events.write_text('{"id": "s1", "text": "lone \\udcff here"}\n')
    pushed = d.cli("push", "events", str(events), check=False)
    assert pushed.returncode == 2, pushed.stderr
    assert pushed.stderr.strip().count("\n") == 0 and "not valid UTF-8" in pushed.stderr, pushed.stderr

    log = d.log()
    assert runtime.token not in log
    assert "Traceback" not in log


SECRET = "sk-test-SECRET-123"
RECORDS = {"items": [
    {"id": "kb-1", "title": "Refund policy", "body": "Refunds are issued within 14 days of a duplicate charge."},
    {"id": "kb-2", "title": "SSO setup", "body": "SAML single sign-on needs the ACS URL from the admin console."},
    {"title": "an item without an id goes to quarantine"},
]}


class LeakyApi(Loopback):
    """A loopback API that checks the secret, serves records once, and echoes request headers in its errors."""

    def __init__(self) -> None:
        self.records_served = 0
        super().__init__(self._respond)

    @property
    def keys(self) -> list[str]:
        """The key every request so far carried."""
        return [_key(r) for r in self.requests]

    def _respond(self, request: Request) -> Reply:
        key = _key(request)
        echoed = json.dumps({"error": "server error", "your_headers": request.headers})
        if request.target.startswith("/records"):
            with self.lock:
                first = self.records_served == 0
                self.records_served += 1
            if key == SECRET and first:
                return Reply(200, json.dumps(RECORDS), content_type="application/json")
            return Reply(500, echoed, {"X-Echo-Key": key}, "application/json")
        if request.target.startswith("/denied"):
            return Reply(401, echoed, {"WWW-Authenticate": f'Bearer realm="{key}"'}, "application/json")
        if request.target.startswith("/html"):
            return Reply(200, f"<html><body>key was {key}</body></html>", content_type="text/html")
        return Reply(500, echoed, {"X-Echo-Key": key}, "application/json")


def _key(request: Request) -> str:
    return request.header("X-Api-Key") or (request.header("Authorization") or "").removeprefix("Bearer ")


@pytest.fixture
def leaky_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[LeakyApi]:
    no_proxy(monkeypatch)
    with LeakyApi() as server:
        yield server


def _http_source(name: str, url: str, header: str) -> str:
    return f"""
[sources.{name}]
kind = "http"
url = "{url}"
headers = {{ {header} }}
records_path = "items"
text_fields = ["title", "body"]
title_field = "title"
retries = 1
backoff = "1ms"
timeout = "5s"
"""


def test_a_source_secret_never_leaves_the_fetch(daemon: Callable[..., Any], write_config: Callable[[str], Path],
                                                leaky_api: LeakyApi) -> None:
    base = leaky_api.url
    config = write_config(_config(sources="".join([
        _http_source("kb", f"{base}/records?page_size=50", '"X-Api-Key" = "CTX_TEST_API_KEY"'),
        _http_source("broken", f"{base}/boom", 'Authorization = "Bearer ${CTX_TEST_API_KEY}"'),
        _http_source("denied", f"{base}/denied", '"X-Api-Key" = "CTX_TEST_API_KEY"'),
        _http_source("html", f"{base}/html", '"X-Api-Key" = "CTX_TEST_API_KEY"'),
    ])))
    assert SECRET not in config.read_text()
    d = daemon(config=config, CTX_TEST_API_KEY=SECRET)

    outputs: dict[str, str] = {}

    def run(*args: str) -> Any:
        proc = d.cli(*args, check=False)
        outputs[" ".join(args)] = proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    first = run("ingest", "--json")
    assert first.returncode != 0  # three of the four sources fail
    summary = {s["source"]: s for s in json.loads(first.stdout)["sources"]}
    assert summary["kb"]["new"] == 2 and summary["kb"]["quarantined"] == 1 and summary["kb"]["error"] is None
    assert "HTTP 500" in summary["broken"]["error"] and "HTTP 401" in summary["denied"]["error"]
    assert "not JSON" in summary["html"]["error"]
    second = run("ingest", "kb", "--json")  # the records URL now answers 500, echoing the key
    assert "HTTP 500" in json.loads(second.stdout)["sources"][0]["error"]
    assert all(key == SECRET for key in leaky_api.keys), "every request carried the configured secret"
    assert len(leaky_api.keys) >= 6

    assembled = run("assemble", "duplicate charge refund", "--json")
    assert assembled.returncode == 0
    trace_id = json.loads(assembled.stdout)["trace_id"]
    assert any(b["document"] == "kb-1" for b in json.loads(assembled.stdout)["blocks"])  # old data kept
    run("assemble", "single sign-on")
    for args in (("status", "--json"), ("status",), ("sources", "--json"), ("jobs", "--json"),
                 ("quarantine", "--json"), ("traces", "--json"), ("daemon", "status", "--json"),
                 ("replay", trace_id, "--json"), ("replay", trace_id, "--rerun", "--json")):
        assert run(*args).returncode == 0, args
    assert json.loads(outputs["quarantine --json"]), "the item without an id is quarantined"
    sources = {s["name"]: s for s in json.loads(outputs["sources --json"])}
    assert "HTTP 500" in sources["kb"]["last_error"]

    with _uds_client(d.runtime, Authorization=f"Bearer {d.runtime.token}") as http:
        paths = ["/metrics", "/v1/status", "/v1/sources", "/v1/jobs", "/v1/traces?limit=100", "/v1/quarantine"]
        paths += [f"/v1/traces/{t['id']}" for t in http.get("/v1/traces", params={"limit": 100}).json()]
        paths += [f"/v1/jobs/{j['id']}" for j in http.get("/v1/jobs", params={"limit": 100}).json()]
        assert len(paths) >= 6 + 3 + 2  # two assembles and a rerun; two ingest jobs
        for path in paths:
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)
            outputs[path] = response.text
        response = http.post("/v1/doctor", json={})
        assert response.status_code == 200, response.text
        outputs["/v1/doctor"] = response.text

    for name, text in outputs.items():
        assert SECRET not in text, f"the secret leaked into `{name}`"
    log = d.log()
    assert "GET /v1/jobs" in log  # the log is the daemon's, and it logged the traffic above
    assert SECRET not in log, "the secret leaked into daemon.log"
    catalog = d.home / "catalog.db"
    assert catalog.exists()
    for path in d.home.rglob("*"):  # catalog.db, its WAL, traces, the log, the runtime file
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the secret leaked into {path}"
