"""Shared test helpers: a loopback upstream HTTP server, waiters, the daemon driver, and session-built homes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

# What a home holds that belongs to one running process, never to a copy of the home.
RUNTIME_FILES = ("daemon.json", "daemon.log", "daemon.lock")


# --- the CLI in this process ---------------------------------------------------------------------------


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str, stdout_bytes: bytes) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.stdout_bytes = stdout_bytes

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<Result exit={self.exit_code} stderr={self.stderr[-2000:]!r}>"


def run_cli(*args: str, ok: bool = True) -> Result:
    """The real CLI in this process, with the current environment."""
    from ctx.cli import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    out = Result(res.exit_code, res.stdout, res.stderr, res.stdout_bytes)
    if ok:
        assert res.exit_code == 0, out
    return out


# --- workspaces opened in this process ------------------------------------------------------------


class Workspaces:
    """Opens workspaces the ways ctx does, and closes every one it opened (the ``open_workspace`` fixture)."""

    def __init__(self) -> None:
        self._opened: list[tuple[Any, Any]] = []

    def __call__(self, config: str | Path | None = None, env: dict[str, str] | None = None,
                 threaded: bool = False) -> Any:
        """``Workspace.open(config, env)``; ``threaded`` builds it as the daemon does, with one writer thread
        (for tests that use it from many threads at once, or run the daemon's service on it)."""
        from ctx.workspace import Workspace

        if not threaded:
            ws = Workspace.open(config, env=env)
            self._opened.append((ws, None))
            return ws
        from ctx.settings import find_config, load_settings
        from ctx.store.writer import ThreadWriter

        env = dict(os.environ if env is None else env)
        writer = ThreadWriter()
        ws = Workspace(load_settings(find_config(config, env), env), env, writer)
        self._opened.append((ws, writer))
        return ws

    def close(self) -> None:
        for ws, writer in reversed(self._opened):
            ws.close()
            if writer is not None:
                writer.close()
        self._opened.clear()


# --- a real daemon ----------------------------------------------------------------------------------


class Daemon:
    """A real daemon subprocess for one home, started the way users start it (`ctx daemon start`)."""

    def __init__(self, home: Path, env: dict[str, str], config: Path | None) -> None:
        self.home = home
        self.env = env
        self.config = config

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The real `ctx` command in a subprocess, with this daemon's home and config."""
        command = [sys.executable, "-m", "ctx.cli", *(["--config", str(self.config)] if self.config else []), *args]
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"ctx {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}"
        return proc

    def start(self) -> Daemon:
        self.cli("daemon", "start", timeout=240)
        return self

    @property
    def runtime(self) -> Any:
        from ctx.api import runtime as rt

        found = rt.read(self.home)
        assert found is not None, f"no daemon running for {self.home}"
        return found

    def client(self) -> Any:
        from ctx.client import DaemonClient

        return DaemonClient(self.runtime)

    def log(self) -> str:
        path = self.home / "daemon.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        from ctx.api import runtime as rt

        found = rt.read(self.home)
        if found is None:
            return
        os.kill(found.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while rt.alive(found.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if rt.alive(found.pid):
            os.kill(found.pid, signal.SIGKILL)


# --- waiters -------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               what: str = "the condition") -> Any:
    """Polls ``predicate`` until it returns something truthy (and returns that); fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {value!r})")
        time.sleep(interval)


# --- a loopback upstream -------------------------------------------------------------------------------


@dataclass
class Request:
    """One request a :class:`Loopback` server received."""

    method: str
    target: str  # the path with its query string, as sent
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (the last value of a repeated one)."""
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    @property
    def raw_query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header by name, whatever its case."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), default)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What a handler answers: ``body`` is bytes, text, or anything JSON-serialisable (sent as JSON)."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        if self.content_type:
            headers["Content-Type"] = self.content_type
        return data, headers


Handler = Callable[[Request], Reply]
L = TypeVar("L", bound="Loopback")


class Loopback:
    """A real HTTP server on 127.0.0.1 that answers every request with ``handler(request)``.

    It records every request (``requests``, ``calls``), can wait ``delay`` seconds before answering, and its
    handler and delay can change while it runs (``set``). A handler's AssertionError is answered with a 418
    and the reason, so that a broken expectation surfaces in the test instead of hanging the client.
    """

    def __init__(self, handler: Handler | None = None, delay: float = 0.0) -> None:
        self.handler: Handler = handler or (lambda request: Reply())
        self.delay = delay
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.request_queue_size = 128  # bursts of concurrent requests queue instead of being refused
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.requests)

    def to(self, path: str) -> list[Request]:
        """The requests received on ``path`` (without its query string)."""
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def set(self, **changes: Any) -> None:
        """Changes attributes (``handler``, ``delay`` or a handler's own state) under the server's lock."""
        with self.lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def start(self: L) -> L:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Loopback:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            handler, delay = self.handler, self.delay
        # The answer is decided on arrival (as a server that then takes ``delay`` to send it).
        try:
            reply = handler(request)
        except AssertionError as exc:
            reply = Reply(418, str(exc))
        if delay:
            time.sleep(delay)
        return reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = server._answer(Request(self.command, self.path, dict(self.headers.items()), body))
                data, headers = reply.encode()
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (its deadline passed): nothing to answer
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return _Handler


def serving(make: Callable[..., L]) -> Iterator[Callable[..., L]]:
    """The body of a server fixture: the fixture's value starts a ``make(...)`` server; all stop at teardown."""
    started: list[L] = []

    def start(*args: Any, **kwargs: Any) -> L:
        server = make(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def no_proxy(monkeypatch: Any) -> None:
    """httpx honours proxy variables; loopback requests must never go through one."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class Receiver(Loopback):
    """A loopback webhook endpoint: records every request; ``fail[path] = n`` answers the next n with 500."""

    def __init__(self) -> None:
        self.fail: dict[str, int] = {}
        super().__init__(self._respond)

    def _respond(self, request: Request) -> Reply:
        with self.lock:
            failing = self.fail.get(request.path, 0)
            self.fail[request.path] = max(failing - 1, 0)
        return Reply(500 if failing else 200)


# --- homes built once per session ------------------------------------------------------------------------


@dataclass
class Template:
    """A project folder (config, data files, ``home/``) built once per session, and what building it returned."""

    root: Path
    output: Any = None

    @property
    def home(self) -> Path:
        return self.root / "home"


def copy_tree(source: Path, target: Path) -> Path:
    """Copies a project folder or a home into ``target`` (merging into it), without the files of a process
    that ran on it. Modification times are kept, so a files source sees its documents unchanged.

    Nothing in a home names its own path (the catalog keys documents by their path inside the source, Chroma's
    sqlite names segments by id), so a copy works wherever it lands.
    """
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*RUNTIME_FILES), dirs_exist_ok=True)
    return target


# --- generated corpora --------------------------------------------------------------------------------


CORPUS_TOPICS = ["refunds", "webhooks", "rate limits", "SAML", "audit logs", "billing", "SDK setup", "experiments",
                 "segments", "data residency"]


def write_markdown_corpus(root: Path, sources: list[str], docs_per_source: int, sections: int = 3) -> str:
    """Deterministic generated markdown documents, one folder per source; returns their [sources] tables."""
    for source in sources:
        folder = root / source
        folder.mkdir(parents=True)
        for i in range(docs_per_source):
            rnd = random.Random(f"{source}-{i}")
            parts = []
            for j in range(sections):
                topic = rnd.choice(CORPUS_TOPICS)
                body = " ".join(
                    f"Step {j}.{k} of the {topic} procedure in {source} document {i} applies to team {rnd.randint(1, 999)}."
                    for k in range(8)
                )
                parts.append(f"## Part {j}: {topic}\n\n{body}\n")
            (folder / f"doc-{i:02d}.md").write_text(f"# {source.title()} document {i}\n\n" + "\n".join(parts))
    return "".join(f'[sources.{s}]\nkind = "files"\npath = "{s}"\ninclude = ["**/*.md"]\n\n' for s in sources)
