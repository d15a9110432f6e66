"""Assembly under failure, end to end: the real Workspace and CLI, the real ``http`` provider, and loopback
servers started by each test whose delay and status the test sets (deterministic fault injection).

What a user relies on: a request returns at its deadline whatever a provider does, a failing provider is
skipped by its breaker and let back in after a probe, a burst of identical requests makes one upstream
call, an outage is bridged by a stale copy that says it is stale, a critical provider's loss is a clear
error unless it has a fallback, and new data is never hidden by the context cache.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ctx.workspace import Workspace
from tests.helpers import Loopback, Reply, Request, Workspaces, no_proxy, serving


class Upstream(Loopback):
    """A loopback JSON API: counts calls, waits ``delay`` seconds, answers ``status`` (items if 200)."""

    def __init__(self, text: str = "upstream answer", delay: float = 0.0, status: int = 200) -> None:
        self.text = text
        self.status = status
        super().__init__(self._respond, delay)

    def _respond(self, request: Request) -> Reply:
        with self.lock:
            status, text = self.status, self.text
        if status == 200:
            return Reply(200, [{"id": "item-1", "title": "Answer", "text": text}])
        return Reply(status, {"error": "upstream broke"})


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Upstream]]:
    no_proxy(monkeypatch)
    yield from serving(Upstream)


@pytest.fixture
def open_ws(write_config: Callable[[str], Path], open_workspace: Workspaces) -> Callable[..., Workspace]:
    """``open_ws(toml, threaded=False)``: a Workspace on that config (closed at teardown). ``threaded`` gives
    it the daemon's single-writer thread, for tests that assemble from many threads at once."""

    def open_(toml: str, threaded: bool = False) -> Workspace:
        return open_workspace(write_config('[embedding]\nembedder = "none"\n\n' + toml), threaded=threaded)

    return open_


def http_provider(name: str, url: str, **fields: Any) -> str:
    lines = [f"[providers.{name}]", 'kind = "http"', f'url = "{url}"', 'title_field = "title"',
             'text_fields = ["text"]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items() if k != "breaker"]
    if "breaker" in fields:
        lines.append(f"breaker = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in fields['breaker'].items())} }}")
    return "\n".join(lines) + "\n\n"


def texts(context: Any, provider: str) -> list[str]:
    return [b.text for b in context.blocks if b.provider == provider]


# --- a. a slow provider never holds a request past its deadline --------------------------------------------


def test_slow_provider_is_cut_at_the_deadline(upstream: Callable[..., Upstream], open_ws: Callable[..., Workspace],
                                               ctx_cli: Any, caplog: pytest.LogCaptureFixture) -> None:
    fast = upstream(text="fast facts")
    # The slow answer: what a request would wait for without the cut. The bounds below are fractions of it,
    # so a shared machine's stalls (hundreds of ms) do not fail the test while a missing cut still does.
    slow_answer = 4.0
    slow = upstream(text="slow facts", delay=slow_answer)
    toml = (http_provider("fast", fast.url + "/fast?q={query}")
            # Every late answer counts as a breaker failure (5 open it by default): kept closed here, so each
            # request really waits on the slow server and is cut by the deadline, not skipped by the breaker.
            + http_provider("slow", slow.url + "/slow?q={query}", timeout="10s", breaker={"failures": 100})
            + "[recipes.mix]\nproviders = { fast = {}, slow = {} }\n")
    ws = open_ws(toml)
    deadline = 0.150
    ws.assemble(ws.request("warm up", recipe="mix", deadline=deadline))  # tokenizer, http client: first-use costs
    fast_calls = fast.calls

    took, contexts = [], []
    for i in range(5):
        request = ws.request(f"question {i}", recipe="mix", deadline=deadline)  # a new query: no cache helps
        started = time.perf_counter()
        context = ws.assemble(request)
        took.append(time.perf_counter() - started)
        contexts.append(context)

    # Cut at the deadline, not held until the slow answer: the typical request ends at the deadline, and
    # none waits anywhere near the slow server. The bounds leave room for a shared machine's pauses (one CI
    # run saw a single 650 ms request from a stall elsewhere); how close to the deadline it ends is measured by
    # `ctx bench --assembly`, not asserted here.
    assert statistics.median(took) <= deadline + 0.100, f"took {[round(t * 1000) for t in took]} ms"
    assert max(took) < slow_answer / 2, f"took {[round(t * 1000) for t in took]} ms"
    for context in contexts:
        assert context.providers["slow"]["status"] in ("late", "timeout"), context.providers["slow"]
        assert context.providers["fast"]["status"] == "ok"
        assert [(d.kind, d.source) for d in context.degradations] == [(context.providers["slow"]["status"], "slow")]
        assert texts(context, "fast") == ["fast facts"]
        assert texts(context, "slow") == []
        assert "fast facts" in context.rendered and "slow facts" not in context.rendered
        assert context.cache == "miss"
    assert fast.calls - fast_calls == 5
    # An incomplete context is not cached: the same request again asks the slow provider again (while the
    # fast provider's own result is reused from the provider cache).
    repeat = ws.assemble(ws.request("question 0", recipe="mix", deadline=deadline))
    assert repeat.cache == "miss"
    assert repeat.providers["slow"]["status"] in ("late", "timeout")
    assert repeat.providers["fast"]["status"] == "cached" and fast.calls - fast_calls == 5
    # A late provider is an expected outcome, not an error: nothing may log "Task exception was never retrieved".
    errors = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors == []

    # The same through the command line, with --deadline as a user writes it. A command is a cold process: its
    # one request also pays the http client's first use (SSL context, ~50 ms here, more on a busy machine) inside
    # the deadline, so it gets a roomier one; still far below the slow answer.
    started = time.perf_counter()
    out = ctx_cli("assemble", "--recipe", "mix", "--deadline", "400ms", "--json", "from the cli").json()
    assert time.perf_counter() - started < slow_answer / 2
    assert out["providers"]["slow"]["status"] in ("late", "timeout")
    assert [d["source"] for d in out["degradations"]] == ["slow"]
    assert [b["text"] for b in out["blocks"] if b["provider"] == "fast"] == ["fast facts"]


# --- b. the breaker skips a failing provider and lets it back in after one probe ------------------------------


def test_breaker_opens_skips_then_probes_and_closes(upstream: Callable[..., Upstream],
                                                    open_ws: Callable[..., Workspace]) -> None:
    from ctx.api.operations import STATUS
    from ctx.client import LocalClient

    api = upstream(text="healthy again", status=500, delay=0.2)
    toml = (http_provider("api", api.url + "/items", cache=False,
                          breaker={"failures": 3, "window": "10s", "cooldown": "300ms"})
            + '[recipes.r]\ndeadline = "2s"\nproviders = { api = {} }\n')
    ws = open_ws(toml)

    for i in range(3):
        third_started = time.monotonic()
        context = ws.assemble(ws.request("why", recipe="r"))
        out = context.providers["api"]
        assert out["status"] == "failed" and "HTTP 500" in out["error"]
        assert out["breaker"] == ("open" if i == 2 else "closed")
        assert context.blocks == []
    assert api.calls == 3
    opened_at = time.monotonic()  # the breaker opened before this (and after third_started + 0.2 s)
    breakers = LocalClient(ws).call(STATUS)["assembly"]["breakers"]  # what `ctx status --json` prints
    assert breakers["api"] == {"state": "open", "recent_failures": 0, "opened": 1}

    started = time.perf_counter()
    skip_started = time.monotonic()
    context = ws.assemble(ws.request("why", recipe="r"))
    took = time.perf_counter() - started
    # Not a product check: the request must have started inside the 300 ms cooldown for this part to mean anything.
    assert skip_started - third_started < 0.5, "the machine was too slow to catch the breaker open"
    assert api.calls == 3, "an open breaker let a call through"
    assert context.providers["api"]["status"] == "skipped"
    assert context.providers["api"]["breaker"] == "open"
    assert [(d.kind, d.source) for d in context.degradations] == [("skipped", "api")]
    assert took < 0.1, f"a skipped provider still cost {took * 1000:.0f} ms (its server takes 200 ms)"

    api.set(status=200, delay=0.0)
    time.sleep(max(0.0, 0.35 - (time.monotonic() - opened_at)))
    assert ws.status()["assembly"]["breakers"]["api"]["state"] == "half_open"
    context = ws.assemble(ws.request("why", recipe="r"))
    assert api.calls == 4, "the probe should be exactly one call"
    assert context.providers["api"]["status"] == "ok"
    assert context.providers["api"]["breaker"] == "closed"
    assert texts(context, "api") == ["healthy again"]
    assert context.degradations == []
    assert ws.status()["assembly"]["breakers"]["api"]["state"] == "closed"


# --- c. a burst of identical cold requests makes one upstream call --------------------------------------------


def _burst(ws: Workspace, queries: list[str], recipe: str) -> list[Any]:
    barrier = threading.Barrier(len(queries), timeout=60)

    def one(query: str) -> Any:
        request = ws.request(query, recipe=recipe)
        barrier.wait()
        return ws.assemble(request)

    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        return list(pool.map(one, queries))


def test_stampede_of_identical_requests_makes_one_upstream_call(upstream: Callable[..., Upstream],
                                                                open_ws: Callable[..., Workspace]) -> None:
    api = upstream(text="the one answer", delay=0.1)
    # A long ttl and deadline: this is about coalescing, not latency, on a busy two-core machine.
    toml = (http_provider("api", api.url + "/search?q={query}", ttl="5m", timeout="30s")
            + '[recipes.r]\ndeadline = "30s"\nproviders = { api = {} }\n')
    ws = open_ws(toml, threaded=True)
    ws.assemble(ws.request("warm up", recipe="r"))
    before = api.calls

    results = _burst(ws, ["how do refunds work"] * 500, "r")
    assert api.calls - before == 1
    assert len(results) == 500
    assert all(texts(c, "api") == ["the one answer"] for c in results)
    assert all(c.degradations == [] for c in results)
    assert {c.cache for c in results} <= {"miss", "coalesced", "l1", "l2"}
    assert sum(c.cache == "coalesced" for c in results) > 0


def test_stampede_of_different_requests_shares_one_provider_call(upstream: Callable[..., Upstream],
                                                                 open_ws: Callable[..., Workspace]) -> None:
    api = upstream(text="account notice", delay=0.1)
    # The URL does not use the query: every request has the same provider key, though their contexts differ.
    toml = (http_provider("api", api.url + "/notice", ttl="5m", timeout="30s")
            + '[recipes.r]\ndeadline = "30s"\nproviders = { api = {} }\n')
    ws = open_ws(toml, threaded=True)

    results = _burst(ws, [f"question number {i}" for i in range(500)], "r")
    assert api.calls == 1
    assert all(texts(c, "api") == ["account notice"] for c in results)
    assert all(c.providers["api"]["status"] in ("ok", "coalesced", "cached") for c in results)
    assert sum(c.providers["api"]["status"] == "ok" for c in results) == 1
    assert sum(c.providers["api"]["status"] == "coalesced" for c in results) > 0
    assert {c.cache for c in results} == {"miss"}  # 500 different contexts, one upstream call between them


# --- d. stale-if-error ------------------------------------------------------------------------------------------


def test_failed_provider_is_answered_from_a_stale_copy_marked_stale(upstream: Callable[..., Upstream],
                                                                    open_ws: Callable[..., Workspace]) -> None:
    api = upstream(text="cached plan details")
    toml = (http_provider("api", api.url + "/plan", ttl="200ms", max_stale="60s")
            + '[recipes.r]\ndeadline = "1s"\nproviders = { api = {} }\n')
    ws = open_ws(toml)

    first = ws.assemble(ws.request("what plan am I on", recipe="r"))
    assert first.providers["api"]["status"] == "ok"
    assert api.calls == 1

    api.set(status=500)
    time.sleep(0.25)
    context = ws.assemble(ws.request("what plan am I on", recipe="r"))
    assert api.calls == 2, "an expired entry must be refreshed, the stale copy only bridges the failure"
    out = context.providers["api"]
    assert out["status"] == "stale"
    assert out["age_s"] >= 0.2
    assert "HTTP 500" in out["error"]
    [block] = context.blocks
    assert block.text == "cached plan details"
    assert block.stale is True and block.age_s is not None and block.age_s >= 0.2
    assert [(d.kind, d.source) for d in context.degradations] == [("stale", "api")]
    assert "served a cached copy" in context.degradations[0].reason
    [line] = [ln for ln in context.rendered.splitlines() if ln.startswith("[source: api")]
    assert "stale" in line
    assert "stale" not in first.rendered
    assert ws.assembler.describe()["cache"]["provider"]["stale_served"] == 1
    data = context.to_dict()
    assert data["blocks"][0]["stale"] is True and data["blocks"][0]["age_s"] >= 0.2

    # A context built on a stale copy is not cached: once the provider is back, the next request is fresh.
    api.set(status=200, text="fresh plan details")
    context = ws.assemble(ws.request("what plan am I on", recipe="r"))
    assert texts(context, "api") == ["fresh plan details"]
    assert context.providers["api"]["status"] == "ok" and not context.blocks[0].stale


# --- e. a critical provider without a stand-in fails the request, clearly ---------------------------------------


def test_critical_provider_failure_is_a_one_line_error(upstream: Callable[..., Upstream],
                                                       write_config: Callable[[str], Path], ctx_cli: Any) -> None:
    api = upstream(status=500)
    write_config('[embedding]\nembedder = "none"\n\n' + http_provider("billing", api.url + "/billing")
                 + '[recipes.r]\ndeadline = "1s"\nproviders = { billing = { criticality = "critical" } }\n')
    res = ctx_cli("assemble", "--recipe", "r", "why was I charged twice", ok=False)
    assert res.exit_code != 0
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "'billing'" in lines[0] and "critical" in lines[0]
    assert "Traceback" not in res.stderr
    assert api.calls == 1


def test_critical_provider_with_a_fallback_succeeds(upstream: Callable[..., Upstream], tmp_path: Path,
                                                    write_config: Callable[[str], Path], ctx_cli: Any) -> None:
    api = upstream(status=500)
    (tmp_path / "policy.md").write_text("# Billing policy\n\nDuplicate charges are refunded within 5 days.\n")
    write_config('[embedding]\nembedder = "none"\n\n' + http_provider("billing", api.url + "/billing")
                 + '[providers.policy]\nkind = "static"\npaths = ["policy.md"]\n\n'
                 + '[recipes.r]\ndeadline = "1s"\n'
                 + 'providers = { billing = { criticality = "critical", fallback = "policy" } }\n')
    out = ctx_cli("assemble", "--recipe", "r", "--json", "why was I charged twice").json()
    billing = out["providers"]["billing"]
    assert billing["status"] == "fallback"
    assert billing["via"] == "policy"
    assert "HTTP 500" in billing["error"]
    assert [b["text"] for b in out["blocks"]] == ["# Billing policy\n\nDuplicate charges are refunded within 5 days."]
    assert [(d["kind"], d["source"]) for d in out["degradations"]] == [("fallback", "billing")]
    assert "Duplicate charges are refunded" in out["context"]
    assert api.calls == 1


# --- f. new data is never hidden by the context cache -------------------------------------------------------------


def test_ingested_change_invalidates_the_context_cache(docs_dir: Path, open_ws: Callable[..., Workspace],
                                                       ctx_cli: Any) -> None:
    ws = open_ws('[sources.docs]\nkind = "files"\npath = "docs"\ninclude = ["**/*.md"]\n')
    ctx_cli("ingest")
    query = "invoice numbers pattern"

    first = ws.assemble(ws.request(query))
    assert first.cache == "miss"
    assert "INV-YYYY-MM-NNNNN" in first.rendered
    again = ws.assemble(ws.request(query))
    assert again.cache == "l1" and again.rendered == first.rendered

    doc = docs_dir / "billing" / "changing-plans-and-invoices.md"
    doc.write_text(doc.read_text().replace("INV-YYYY-MM-NNNNN", "BILL-YYYY-NNNNNN-ZQ"))
    ctx_cli("ingest")  # another process, as a user (or the daemon) would run it

    changed = ws.assemble(ws.request(query))
    assert changed.cache == "miss"
    assert "BILL-YYYY-NNNNNN-ZQ" in changed.rendered
    assert "INV-YYYY-MM-NNNNN" not in changed.rendered
    [block] = [b for b in changed.blocks if "BILL-YYYY" in b.text]
    assert block.hit.version == 2
    again = ws.assemble(ws.request(query))
    assert again.cache == "l1" and again.rendered == changed.rendered
