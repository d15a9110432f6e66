"""``ctx bench --assembly``: providers in parallel under a deadline, the stampede, and cache-hit latency.

Upstreams are a loopback HTTP server started here, with a fixed delay per call, so the figures
are about ctx and not about a network. Every request goes through the real http provider, the
real caches and the real trace store of a temporary home.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ctx.bench.figures import percentiles

PROVIDERS = 5
LATENCY_MS = 40.0
STAMPEDE_REQUESTS = 500
TARGET_CACHE_HIT_P99_MS = 2.0
TARGET_STAMPEDE_CALLS = 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the stampede without protection connects 500 times at once (listen backlog)


class Upstream:
    """A JSON API on 127.0.0.1 that answers every GET after ``delay`` seconds and counts calls per path."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with upstream._lock:
                    upstream.calls[path] += 1
                time.sleep(upstream.delay)
                body = json.dumps({"items": [{"id": path, "text": f"live answer from {path}"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _config(port: int, parallel: int, cache: bool) -> str:
    lines = ['[embedding]\nembedder = "none"\n', f"[assembly]\nmax_parallel = {parallel}\n",
             f"[cache]\nenabled = {str(cache).lower()}\n"]
    for i in range(1, PROVIDERS + 1):
        # cache = false: every request really calls all five (the fan-out is what is measured).
        lines.append(f'[providers.api{i}]\nkind = "http"\nurl = "http://127.0.0.1:{port}/api{i}/{{query}}"\n'
                     'records_path = "items"\ntext_fields = ["text"]\ncache = false\ntimeout = "2s"\n'
                     "breaker = { failures = 1000 }\n")
    lines.append(f'[providers.hot]\nkind = "http"\nurl = "http://127.0.0.1:{port}/hot"\nrecords_path = "items"\n'
                 'text_fields = ["text"]\nttl = "60s"\ntimeout = "30s"\nbreaker = { failures = 1000 }\n')
    members = ", ".join(f'api{i} = {{ criticality = "important" }}' for i in range(1, PROVIDERS + 1))
    lines.append(f'[recipes.five]\ndeadline = "2s"\nproviders = {{ {members} }}\n')
    lines.append('[recipes.hot]\ndeadline = "30s"\nproviders = { hot = { criticality = "important" } }\n')
    return "\n".join(lines)


@contextmanager
def _workspace(home: Path, name: str, text: str, environ: Mapping[str, str]) -> Iterator[Any]:
    from ctx.settings import load_settings
    from ctx.store.writer import ThreadWriter
    from ctx.workspace import Workspace

    folder = home / name
    folder.mkdir()
    (folder / "ctx.toml").write_text(text, encoding="utf-8")
    env = {k: v for k, v in environ.items() if not k.startswith("CTX_")}
    env["CTX_HOME"] = str(folder / "home")
    # The daemon's single writer: many threads write traces at once in the stampede.
    ws = Workspace(load_settings(folder / "ctx.toml", env), env, ThreadWriter())
    try:
        yield ws
    finally:
        ws.close()
        ws.write.close()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def _fanout(home: Path, port: int, parallel: int, requests: int, environ: Mapping[str, str]) -> dict[str, Any]:
    with _workspace(home, f"fanout-{parallel}", _config(port, parallel, cache=True), environ) as ws:
        ws.assemble(ws.request("warm up", recipe="five"))
        times: list[float] = []
        provider_ms: list[float] = []
        for i in range(requests):
            request = ws.request(f"question {i}", recipe="five")
            ms, context = _timed(lambda: ws.assemble(request))  # noqa: B023 - called at once, in this iteration
            assert all(p["status"] == "ok" for p in context.providers.values()), context.providers
            times.append(ms)
            provider_ms.append(sum(p["ms"] for p in context.providers.values()))
    return {**{k: round(v, 3) for k, v in percentiles(times).items()},
            "sum_of_provider_ms_p50": round(statistics.median(provider_ms), 3)}


def _stampede(home: Path, upstream: Upstream, cache: bool, environ: Mapping[str, str]) -> dict[str, Any]:
    """STAMPEDE_REQUESTS identical cold requests at once: how many reach the upstream, and how long they wait."""
    path = "/hot"
    with _workspace(home, f"stampede-{'on' if cache else 'off'}", _config(upstream.port, 16, cache), environ) as ws:
        ws.assembler.prepare()
        before = upstream.calls[path]
        gate = threading.Barrier(STAMPEDE_REQUESTS)

        def one(_: int) -> tuple[float, bool]:
            gate.wait()
            ms, context = _timed(lambda: ws.assemble(ws.request("what is hot right now?", recipe="hot")))
            return ms, bool(context.blocks)

        with ThreadPoolExecutor(max_workers=STAMPEDE_REQUESTS) as pool:
            results = list(pool.map(one, range(STAMPEDE_REQUESTS)))
        calls = upstream.calls[path] - before
    times = [ms for ms, _ in results]
    return {"requests": STAMPEDE_REQUESTS, "upstream_calls": calls, "answered": sum(ok for _, ok in results),
            **{f"{k}_ms": round(v, 3) for k, v in percentiles(times).items()}}


def _cache_hits(home: Path, port: int, requests: int, environ: Mapping[str, str]) -> dict[str, Any]:
    """The same request again and again in one process: answered from L1, with its trace written each time."""
    with _workspace(home, "hits", _config(port, 16, cache=True), environ) as ws:
        request = ws.request("what is hot right now?", recipe="hot")
        first = ws.assemble(request)
        times = []
        for _ in range(requests):
            ms, context = _timed(lambda: ws.assemble(request))
            assert context.cache == "l1", context.cache
            times.append(ms)
    return {"first_ms": round(first.timings["total_ms"], 3), "requests": requests,
            **{f"{k}_ms": round(v, 3) for k, v in percentiles(times).items()}}


def run_assembly_bench(environ: Mapping[str, str], requests: int = 50, hits: int = 2000,
                       note: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="ctx-bench-assembly-"))
    upstream = Upstream(LATENCY_MS / 1000)
    try:
        note(f"{PROVIDERS} http providers x {LATENCY_MS:g} ms: {requests} requests in parallel, then one at a time")
        parallel = _fanout(home, upstream.port, 16, requests, environ)
        sequential = _fanout(home, upstream.port, 1, requests, environ)
        note(f"stampede: {STAMPEDE_REQUESTS} identical cold requests at once, with and without the cache")
        protected = _stampede(home, upstream, True, environ)
        unprotected = _stampede(home, upstream, False, environ)
        note(f"cache hits: one request {hits} times")
        hit = _cache_hits(home, upstream.port, hits, environ)
    finally:
        upstream.close()
        shutil.rmtree(home, ignore_errors=True)
    ratio = sequential["p50"] / parallel["p50"] if parallel["p50"] else None
    return {
        "fanout": {"providers": PROVIDERS, "latency_ms": LATENCY_MS, "requests": requests, "parallel": parallel,
                   "sequential": sequential, "speedup": None if ratio is None else round(ratio, 2)},
        "stampede": {"protected": protected, "unprotected": unprotected},
        "cache_hit": hit,
        "targets": {
            "fanout": {"target": f"{PROVIDERS} providers x {LATENCY_MS:g} ms assemble in about {LATENCY_MS:g} ms, "
                                 f"not {PROVIDERS * LATENCY_MS:g} (p50 <= {1.5 * LATENCY_MS:g} ms)",
                       "value": parallel["p50"], "passed": parallel["p50"] <= 1.5 * LATENCY_MS},
            "stampede": {"target": f"{STAMPEDE_REQUESTS} identical cold requests make {TARGET_STAMPEDE_CALLS} "
                                   "upstream call", "value": protected["upstream_calls"],
                         "passed": protected["upstream_calls"] == TARGET_STAMPEDE_CALLS},
            "cache_hit_p99": {"target": f"cache-hit assemble p99 <= {TARGET_CACHE_HIT_P99_MS:g} ms in-process "
                                        "(trace write included)",
                              "value": hit["p99_ms"], "passed": hit["p99_ms"] <= TARGET_CACHE_HIT_P99_MS},
        },
    }
