"""The daemon's API against its own OpenAPI schema: schemathesis generates requests for every operation
(valid and invalid ones) and checks there is never a server error, every status code is documented, and
every body matches its response model and content type. Plus the error envelope by hand."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import ASGIClient

from tests.helpers import FIXTURES

TOKEN = "schema-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Host": "localhost"}

CONFIG = """
[embedding]
embedder = "none"

[daemon]
scheduler = false
watch = false

[sources.docs]
kind = "files"
path = "docs"
criticality = "critical"

[sources.tickets]
kind = "jsonl"
path = "tickets.jsonl"
title_field = "subject"
text_fields = ["subject", "body"]
tenant_field = "account"
mode = "append"

[sources.sessions]
kind = "events"
"""

V1_ROUTES = {
    "/v1/assemble", "/v1/search", "/v1/ingest", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/events", "/v1/traces",
    "/v1/traces/{trace_id}", "/v1/replay", "/v1/sources", "/v1/status", "/v1/quarantine", "/v1/doctor",
    "/v1/alerts", "/v1/alerts/check", "/v1/archive", "/v1/ab", "/v1/ab/{name}",
    "/v1/audit", "/v1/eval",
    "/v1/versions", "/v1/versions/{ref}", "/v1/versions/{a}/diff/{b}", "/v1/versions/label", "/v1/versions/rollback",
}


class Api:
    """The real app in this process, over a small ingested home, with ids that exist in it."""

    def __init__(self, guard: Any, trace_id: str, job_id: str) -> None:
        self.guard = guard
        self.trace_id = trace_id
        self.job_id = job_id


@pytest.fixture
def api(tmp_path: Path, docs_dir: Path, write_config: Any, ctx_env: dict[str, str]) -> Iterator[Api]:
    import os

    from ctx.daemon.app import create_app
    from ctx.daemon.service import Service
    from ctx.settings import find_config, load_settings
    from ctx.store.writer import ThreadWriter
    from ctx.workspace import Workspace

    shutil.copy(FIXTURES / "tickets.jsonl", tmp_path / "tickets.jsonl")
    config = write_config(CONFIG)
    env = {**os.environ, **ctx_env}
    # As ctx.daemon.server.serve builds it: one writer thread, the service's job lanes running.
    writer = ThreadWriter()
    ws = Workspace(load_settings(find_config(config, env), env), env, writer)
    summary = ws.ingest()
    assert summary.ok and summary.to_dict()["totals"]["new"] > 0
    ws.push_events("sessions", [{"id": "s-1", "text": "user opened the billing page and asked about refunds"}])
    context = ws.assemble(ws.request("how do refunds work?"))
    service = Service(ws)
    service.address = "unix:/test"
    service.start()
    try:
        yield Api(create_app(service, TOKEN), context.trace_id, summary.run_id)
    finally:
        service.stop(timeout=30)
        writer.close()
        ws.close()


def _document() -> dict[str, Any]:
    """The OpenAPI document is static (it depends on no data), so it is built at import, for parametrize,
    from ``create_app`` over a stand-in service; ``test_openapi_lists_every_route`` checks that it is
    exactly the document the real app serves. (``schemathesis.pytest.from_fixture`` would load it from
    the ``api`` fixture, but its lazy loader sets ``Node._nodeid``, which pytest 9 no longer has.)"""
    from types import SimpleNamespace

    from ctx.daemon.app import create_app
    from ctx.settings import Settings

    stand_in = SimpleNamespace(ws=SimpleNamespace(settings=Settings()), core=None)
    return create_app(stand_in, TOKEN).app.openapi()  # type: ignore[arg-type, attr-defined]


DOCUMENT = _document()
CONFIG_CHECKS = schemathesis.Config.from_dict({"checks": {
    # 400 bad_request is this API's documented answer to a well-formed request the core refuses on its
    # meaning: a source that is not configured, a format no renderer registered, an ambiguous trace id
    # prefix. The schema cannot know those (they depend on ctx.toml and plugins), so 400 counts as a
    # legitimate answer to schema-valid data. A 422 still fails the check: schema and validation disagree.
    # (Rules that do not depend on configuration, a blank query or a negative budget, are in the schema.)
    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]},
}})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG_CHECKS)


# The app is the server under test: every generated case of one operation goes to the same one, as
# requests to a daemon would (hence function_scoped_fixture is suppressed on purpose).
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@schema.parametrize()
def test_api_conforms_to_its_schema(case: Any, api: Api) -> None:
    # Every built-in check: not_a_server_error, status_code_conformance, content_type_conformance,
    # response_schema_conformance, response_headers_conformance, negative_data_rejection,
    # positive_data_acceptance, missing_required_header, unsupported_method, ...
    response = case.call(headers=HEADERS, app=api.guard)
    excluded = []
    if _critical_provider_late(case, response):
        # A generated deadline_ms far below what retrieval takes (0.0004 ms, say) leaves the critical
        # provider nothing to give: the documented answer is 503 `unavailable`, the same one-line error
        # the CLI prints. Only that answer is exempt from the two checks that refuse any 5xx; its body
        # and status still go through every other check.
        from schemathesis.checks import not_a_server_error
        from schemathesis.openapi.checks import positive_data_acceptance

        excluded = [not_a_server_error, positive_data_acceptance]
    case.validate_response(response, headers=HEADERS, excluded_checks=excluded)


def _critical_provider_late(case: Any, response: Any) -> bool:
    if case.path != "/v1/assemble" or response.status_code != 503 or not isinstance(case.body, dict):
        return False
    if case.body.get("deadline_ms") is None or case.body["deadline_ms"] >= 50:
        return False  # a real deadline: the tiny corpus answers well within 50 ms, so a 503 there is a bug
    error = response.json()["error"]
    return error["code"] == "unavailable" and "gave nothing (late: the deadline passed)" in error["message"]


def _client(api: Api) -> ASGIClient:
    client = ASGIClient(api.guard, base_url="http://localhost")
    client.headers.update(HEADERS)
    return client


def test_real_ids_conform_to_their_schema(api: Api) -> None:
    """Generated ids only ever hit 404: validate the responses for ids that exist, through the same checks."""
    # Loaded from the running app this time, the way schemathesis is meant to load it (with the token).
    loaded = schemathesis.openapi.from_asgi("/openapi.json", api.guard, headers=HEADERS)
    with _client(api) as client:
        version = client.get("/v1/versions").json()[0]["id"]
    cases = [
        loaded["/v1/traces/{trace_id}"]["GET"].Case(path_parameters={"trace_id": api.trace_id}),
        loaded["/v1/traces/{trace_id}"]["GET"].Case(path_parameters={"trace_id": api.trace_id[:13]}),
        loaded["/v1/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": api.job_id}),
        loaded["/v1/replay"]["POST"].Case(body={"trace_id": api.trace_id}),
        loaded["/v1/replay"]["POST"].Case(body={"trace_id": api.trace_id, "rerun": True}),
        loaded["/v1/assemble"]["POST"].Case(body={"query": "refund a double charge", "tenant": "acme",
                                                  "sources": ["docs", "tickets"], "budget": 300}),
        loaded["/v1/assemble"]["POST"].Case(body={"query": "refunds", "format": "messages", "budget": 0}),
        loaded["/v1/search"]["POST"].Case(body={"query": "rotate api key", "path": "api/**", "limit": 3}),
        loaded["/v1/events"]["POST"].Case(body={"source": "sessions", "events": [{"id": "s-2", "text": "hi"}]}),
        loaded["/v1/ingest"]["POST"].Case(body={"sources": ["docs"]}),
        loaded["/v1/quarantine"]["GET"].Case(query={"source": "tickets", "limit": 5}),
        loaded["/v1/doctor"]["POST"].Case(body={"repair": True}),
        loaded["/v1/eval"]["POST"].Case(body={"queries": [{"id": "q1", "query": "how do refunds work?",
                                                            "relevant": {"billing/refunds-and-disputes.md": 2}}],
                                               "k": 5}),
        loaded["/v1/alerts/check"]["POST"].Case(),
        loaded["/v1/alerts"]["GET"].Case(query={"limit": 5, "active": False}),
        loaded["/v1/versions"]["GET"].Case(query={"recipe": "default"}),
        loaded["/v1/versions/{ref}"]["GET"].Case(path_parameters={"ref": version[:6]}),
        loaded["/v1/versions/{a}/diff/{b}"]["GET"].Case(path_parameters={"a": version, "b": version}),
        loaded["/v1/versions/label"]["POST"].Case(body={"ref": version, "label": "prod"}),
        loaded["/v1/versions/label"]["POST"].Case(body={"ref": version, "label": "prod", "recipe": "default"}),
        loaded["/v1/versions/rollback"]["POST"].Case(body={"label": "prod"}),
        loaded["/v1/versions/{ref}"]["GET"].Case(path_parameters={"ref": "prod"}),
        loaded["/v1/audit"]["GET"].Case(query={"window": "1d", "sample": 5}),
        loaded["/v1/ab"]["GET"].Case(),
    ]
    for case in cases:
        response = case.call_and_validate(headers=HEADERS)
        assert response.status_code < 300, (case.path, response.text[:500])


def test_openapi_lists_every_route(api: Api) -> None:
    document = api.guard.app.openapi()
    paths = set(document["paths"])
    assert V1_ROUTES | {"/healthz", "/metrics"} <= paths, sorted(V1_ROUTES - paths)
    with _client(api) as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == document == DOCUMENT  # what the schema tests generate from is what is served


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (method, path, request kwargs, status, error code)
    ("POST", "/v1/assemble", {"json": {"query": ""}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": "refunds", "budget": -5}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": "refunds", "budgett": 5}}, 422, "invalid_request"),
    ("POST", "/v1/assemble", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 422,
     "invalid_request"),
    ("POST", "/v1/assemble", {"json": {"query": "refunds", "format": "yaml"}}, 400, "bad_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "sources": ["nope"]}}, 400, "bad_request"),
    ("POST", "/v1/search", {"json": {"query": "x", "limit": 0}}, 422, "invalid_request"),
    ("POST", "/v1/search", {"json": []}, 422, "invalid_request"),
    ("POST", "/v1/replay", {"json": {"trace_id": "nonexistent-id"}}, 404, "not_found"),
    ("GET", "/v1/traces/nonexistent-id", {}, 404, "not_found"),
    # A prefix is text, not a LIKE pattern: these matched the one trace there is.
    ("GET", "/v1/traces/%25%25%25%25%25%25%25%25", {}, 404, "not_found"),
    ("POST", "/v1/replay", {"json": {"trace_id": "________"}}, 404, "not_found"),
    ("POST", "/v1/replay", {"json": {"trace_id": "abcdefgh", "rerun": "yes"}}, 422, "invalid_request"),
    ("POST", "/v1/doctor", {"json": {"repair": 0}}, 422, "invalid_request"),
    ("GET", "/v1/jobs/nonexistent-id", {}, 404, "not_found"),
    ("GET", "/v1/jobs", {"params": {"limit": "many"}}, 422, "invalid_request"),
    ("GET", "/v1/quarantine", {"params": {"source": "nope"}}, 400, "bad_request"),
    ("GET", "/v1/alerts", {"params": {"limit": "0"}}, 422, "invalid_request"),
    ("GET", "/v1/alerts", {"params": {"active": "maybe"}}, 422, "invalid_request"),
    ("GET", "/v1/audit", {"params": {"window": "soon"}}, 400, "bad_request"),
    ("GET", "/v1/audit", {"params": {"window": "0d"}}, 400, "bad_request"),
    ("GET", "/v1/audit", {"params": {"sample": "-1"}}, 422, "invalid_request"),
    ("POST", "/v1/events", {"json": {"source": "nope", "events": [{"id": "1"}]}}, 404, "not_found"),
    ("POST", "/v1/events", {"json": {"source": "docs", "events": [{"id": "1"}]}}, 400, "bad_request"),
    ("POST", "/v1/events", {"json": {"source": "sessions", "events": []}}, 422, "invalid_request"),
    ("POST", "/v1/ingest", {"json": {"sources": ["nope"]}}, 400, "bad_request"),
    ("POST", "/v1/eval", {"json": {"queries": []}}, 422, "invalid_request"),
    ("POST", "/v1/eval", {"json": {"queries": [{"id": "a", "query": "refunds", "relevant": {"x": 0}}]}}, 400,
     "bad_request"),
    ("POST", "/v1/eval", {"json": {"queries": [{"id": "a", "query": "refunds", "relevant": ["x"]}]}}, 422,
     "invalid_request"),
    ("POST", "/v1/eval", {"json": {"queries": [{"id": "a", "query": "refunds", "relevant": {"x": 1}}],
                                   "version": "nope"}}, 404, "not_found"),
    ("GET", "/v1/ab/nope", {}, 404, "not_found"),
    ("GET", "/v1/ab/nope", {"params": {"since": ""}}, 422, "invalid_request"),
    ("GET", "/v1/versions", {"params": {"recipe": "nope"}}, 400, "bad_request"),
    ("GET", "/v1/versions", {"params": {"recipe": "a b"}}, 422, "invalid_request"),
    ("GET", "/v1/versions/nope", {}, 404, "not_found"),
    ("GET", "/v1/versions/%25%25", {}, 422, "invalid_request"),
    ("GET", "/v1/versions/nope/diff/nope", {}, 404, "not_found"),
    ("POST", "/v1/versions/label", {"json": {"ref": "nope", "label": "prod"}}, 404, "not_found"),
    ("POST", "/v1/versions/label", {"json": {"ref": "nope", "label": "9lives"}}, 422, "invalid_request"),
    ("POST", "/v1/versions/label", {"json": {"ref": "nope"}}, 422, "invalid_request"),
    ("POST", "/v1/versions/rollback", {"json": {"label": "nope"}}, 404, "not_found"),
    ("POST", "/v1/versions/rollback", {"json": {"label": "prod", "recipe": "nope"}}, 400, "bad_request"),
    ("POST", "/v1/assemble", {"json": {"query": "refunds", "version": "nope"}}, 404, "not_found"),
    ("POST", "/v1/replay", {"json": {"trace_id": "abcdefgh", "version": "nope"}}, 400, "bad_request"),
    ("GET", "/v1/nowhere", {}, 404, "not_found"),
    ("DELETE", "/v1/status", {}, 405, "method_not_allowed"),
    ("GET", "/v1/status", {"headers": {"Authorization": "Bearer wrong"}}, 401, "unauthorized"),
    ("GET", "/v1/status", {"headers": {"Authorization": ""}}, 401, "unauthorized"),
    ("GET", "/v1/status", {"headers": {"Host": "evil.example.com"}}, 403, "host_not_allowed"),
    ("POST", "/v1/search", {"data": b"x" * 10_000_001, "headers": {"Content-Type": "application/json"}}, 413,
     "payload_too_large"),
]


def test_errors_are_json_envelopes_without_tracebacks(api: Api) -> None:
    with _client(api) as client:
        for method, path, kwargs, status, code in BAD_REQUESTS:
            kwargs = dict(kwargs)
            headers = {**HEADERS, **kwargs.pop("headers", {})}
            response = client.request(method, path, headers=headers, **kwargs)
            where = f"{method} {path} {json.dumps(kwargs, default=repr)[:120]}"
            assert response.status_code == status, (where, response.status_code, response.text[:500])
            assert response.headers["content-type"].startswith("application/json"), where
            body = response.json()
            assert set(body) == {"error"}, (where, body)
            assert set(body["error"]) == {"code", "message"}, (where, body)
            assert body["error"]["code"] == code, (where, body)
            assert isinstance(body["error"]["message"], str) and body["error"]["message"].strip(), (where, body)
            assert "Traceback" not in response.text and 'File "' not in response.text, (where, response.text)
            assert response.headers["x-ctx-api-version"] == "1", where
            if status == 405:
                assert response.headers["allow"] == "GET", where  # RFC 9110: a 405 names the allowed methods


def test_healthz_is_the_only_open_route(api: Api) -> None:
    with _client(api) as client:
        client.headers.pop("Authorization")
        assert client.get("/healthz").status_code == 200
        for path in ("/openapi.json", "/metrics", "/v1/status", "/docs"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthorized"
