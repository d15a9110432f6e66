"""The operations table is the one place an operation is declared: the daemon's routes and OpenAPI come from
it, both clients run every operation through it, its typed outputs validate what the core returns, and
``connect`` reaches a running daemon without importing the in-process machinery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ctx.api import operations as ops
from ctx.api.inputs import AssembleIn, CostIn, IngestIn, JobsIn, QuarantineIn, SearchIn, TracesIn, VersionsIn

CONFIG = """
[embedding]
embedder = "none"

[sources.docs]
kind = "files"
path = "docs"
"""


def test_every_operation_is_one_route_with_its_method_path_and_models() -> None:
    from ctx.daemon.app import create_app
    from ctx.settings import Settings

    stand_in = SimpleNamespace(ws=SimpleNamespace(settings=Settings()))
    document = create_app(stand_in, "token").app.openapi()  # type: ignore[arg-type, attr-defined]
    routed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    declared = {(op.method, op.path.replace(":path", "")) for op in ops.OPERATIONS}
    # Nothing is routed by hand but liveness: every other route comes from the table.
    assert routed - declared == {("GET", "/healthz")}
    assert declared <= routed
    assert len(ops.BY_NAME) == len(ops.OPERATIONS), "two operations share a name"
    for op in ops.OPERATIONS:
        if op.input is not None and op.method == "POST":
            body = document["paths"][op.path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            assert body["$ref"].endswith("/" + op.input.__name__), op.name
        if op.input is not None and op.method == "GET":
            names = {p["name"] for p in document["paths"][op.path.replace(":path", "")]["get"].get("parameters", [])}
            assert names == set(op.input.model_fields), op.name


@pytest.fixture
def local(tmp_path: Path, docs_dir: Path, write_config: Any) -> Iterator[Any]:
    from ctx.client import connect

    client = connect(write_config(CONFIG))
    assert client.mode == "local"
    client.ingest(IngestIn(trigger="cli"))
    yield client
    client.close()


def test_every_read_returns_its_typed_output_in_process(local: Any) -> None:
    """``get`` validates the core's plain data against the operation's output model: a core that drifted
    from its declared output fails here, not in a user's app."""
    context = local.get(ops.ASSEMBLE, AssembleIn(query="how do refunds work?", budget=500))
    assert context.trace_id and context.tokens <= 500 and context.blocks
    assert context.context == local.call(ops.REPLAY, ops.ReplayIn(trace_id=context.trace_id))["context"]
    hits = local.get(ops.SEARCH, SearchIn(query="refund"))
    assert hits and all(hit.source == "docs" for hit in hits)
    jobs = local.get(ops.JOBS, JobsIn(limit=5))
    assert [job.status for job in jobs] == ["ok"]
    traces = local.get(ops.TRACES, TracesIn(limit=5))
    assert [t.id for t in traces] == [context.trace_id]
    status = local.get(ops.STATUS)
    assert status.daemon is None and status.documents > 0 and [s.name for s in status.sources] == ["docs"]
    assert local.get(ops.SOURCES)[0].documents == status.documents
    assert local.get(ops.QUARANTINE, QuarantineIn()) == []
    assert local.get(ops.COST, CostIn(since="1d")).requests == 1
    assert local.get(ops.VERSIONS, VersionsIn())[0].current
    assert local.get(ops.AUDIT, ops.AuditIn(sample=1)).level in range(5)
    assert "ctx_source_staleness_seconds" in local.get(ops.METRICS)


def test_plain_data_is_what_the_json_holds(local: Any) -> None:
    """``call`` returns what the daemon's JSON would hold, so a command prints the same bytes either way."""
    out = local.call(ops.ASSEMBLE, AssembleIn(query="how do refunds work?"))
    assert json.loads(json.dumps(out)) == out
    assert list(out) == list(ops.ASSEMBLE.output.model_fields)  # the model lists the core's fields, in order


def test_a_call_fills_path_parameters_and_the_query_string() -> None:
    path, query, body = ops.VERSION_DIFF.target(ops.VersionDiffIn(a="prod", b="a.b", recipe="support"))
    assert (path, query, body) == ("/v1/versions/prod/diff/a.b", {"recipe": "support"}, None)
    path, query, _ = ops.AB_REPORT.target(ops.AbReportIn(name="a/b?c"))
    assert path == "/v1/ab/a%2Fb%3Fc" and query == {}  # one path segment, whatever the name holds
    body_in = AssembleIn(query="x")
    assert ops.ASSEMBLE.target(body_in) == ("/v1/assemble", {}, body_in)


def test_connect_reaches_a_daemon_without_importing_the_core(tmp_path: Path) -> None:
    """With a daemon's runtime file in the home, ``connect`` builds the daemon client from it alone: no
    settings models, workspace, stores or model are imported (the CLI's fast path through a daemon)."""
    from ctx.api import runtime as rt

    home = tmp_path / "home"
    # A live pid (this test's) makes the runtime current; nothing listens there, and nothing is asked.
    rt.write(home, rt.Runtime(os.getpid(), f"unix:{home / 'daemon.sock'}", "1", "t", "now", str(home)))
    code = (
        "import sys, ctx\n"
        "client = ctx.connect()\n"
        "heavy = ('ctx.workspace', 'ctx.settings', 'ctx.store', 'ctx.assemble', 'sqlite_utils', 'chromadb', "
        "'torch', 'fastapi')\n"
        "print(client.mode, sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {**os.environ, "CTX_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split(maxsplit=1) == ["daemon", "[]\n"], out.stdout
