"""The one gateway the CLI, the TUI and apps use: the home's daemon when one runs, this process when none does.

Both clients serve every operation of :mod:`ctx.api.operations` through one method, ``call``, and return
the same plain data, so every command prints the same thing either way; ``get`` gives the operation's typed
output model instead. Requests are validated before choosing a side, so a bad option gives the same one-line
error in both. ``connect`` reads the home's runtime file first and imports the in-process machinery only
when no daemon runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError

from ctx.api import operations as ops
from ctx.api import runtime as rt
from ctx.api.inputs import API_VERSION, VERSION_HEADER, EvalIn, IngestIn, JobIn, describe
from ctx.errors import CtxError, NotFound, TransientError, UserError
from ctx.home import find_config, peek_home

if TYPE_CHECKING:
    from ctx.pipeline import Progress
    from ctx.workspace import Workspace

M = TypeVar("M", bound=BaseModel)
In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out")
FINISHED = ("ok", "partial", "failed", "interrupted")


def build(schema: type[M], **fields: Any) -> M:
    """A request model from command options; a bad value is a UserError naming the field."""
    try:
        return schema(**fields)
    except ValidationError as exc:
        raise UserError(describe(exc)) from None


class Client:
    """What both sides share: ``get`` on top of ``call``. Ingest and eval report progress, which differs."""

    mode: str

    def call(self, op: ops.Operation[In, Any], body: In | None = None) -> Any:
        """The operation's result as plain data (what its JSON holds); an error raises its typed error."""
        raise NotImplementedError

    def get(self, op: ops.Operation[In, Out], body: In | None = None) -> Out:
        """The operation's result as its typed output model."""
        return op.parse(self.call(op, body))

    def ingest(self, body: IngestIn, progress: Progress | None = None) -> dict[str, Any]:
        """Run an ingest job to the end, here or in the daemon, and return the finished job."""
        raise NotImplementedError

    def submit(self, body: IngestIn) -> dict[str, Any]:
        """Queue an ingest job and return it at once (a daemon runs it in the background)."""
        raise NotImplementedError

    def eval(self, body: EvalIn, progress: Callable[[int, int], None] | None = None,
             note: Callable[[str], None] | None = None) -> dict[str, Any]:
        return self.call(ops.EVAL, body)  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


def _plain(data: Any) -> Any:
    """Exactly what the same data looks like after a trip through the API's JSON."""
    return json.loads(json.dumps(data, default=str))


class LocalClient(Client):
    """Runs every operation's handler in this process, on the workspace (no daemon runs for this home)."""

    mode = "local"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def call(self, op: ops.Operation[In, Any], body: In | None = None) -> Any:
        result = op.handler(self.ws, body)
        return result if op.text else _plain(result)

    def ingest(self, body: IngestIn, progress: Progress | None = None) -> dict[str, Any]:
        return _plain(ops.INGEST.handler(self.ws, body, progress))  # type: ignore[no-any-return]

    def submit(self, body: IngestIn) -> dict[str, Any]:
        raise UserError("no daemon runs for this home: `ctx ingest` runs the job here, "
                        "`ctx daemon start` runs it in the background")

    def eval(self, body: EvalIn, progress: Callable[[int, int], None] | None = None,
             note: Callable[[str], None] | None = None) -> dict[str, Any]:
        return _plain(ops.EVAL.handler(self.ws, body, progress, note))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.ws.close()


ERRORS: dict[str, type[CtxError]] = {
    "bad_request": UserError, "invalid_request": UserError, "conflict": UserError,
    "payload_too_large": UserError, "not_found": NotFound, "unavailable": TransientError,
}


class DaemonClient(Client):
    """Every call to the daemon goes through :meth:`_send`: auth, the API version check, typed errors.

    It speaks HTTP/1.1 through httpcore, the transport under httpx: ``import httpx`` also imports httpx's own
    command-line tool (click, pygments, rich's syntax highlighting), some 40 ms at every command.
    """

    mode = "daemon"

    def __init__(self, runtime: rt.Runtime, timeout: float = 60.0) -> None:
        import httpcore

        self.runtime = runtime
        self.timeout = timeout
        # A pool that never reads proxy variables (a loopback daemon is never reached through a proxy, nor is
        # its token sent to one) and never builds an SSL context (the daemon speaks plain HTTP).
        self.http = httpcore.ConnectionPool(uds=runtime.uds)
        self.headers = [(b"Authorization", f"Bearer {runtime.token}".encode()),
                        (VERSION_HEADER.encode(), API_VERSION.encode())]

    def call(self, op: ops.Operation[In, Any], body: In | None = None) -> Any:
        path, params, payload = op.target(body)
        reply = self._send(op.method, path, params, payload, op.timeout)
        return reply.text if op.text else reply.json()

    def health(self) -> dict[str, Any]:
        """The daemon's liveness (``/healthz``, the one route that needs no token)."""
        return self._send("GET", "/healthz").json()  # type: ignore[no-any-return]

    def _send(self, method: str, path: str, params: dict[str, Any] | None = None, payload: BaseModel | None = None,
              timeout: float | None = None) -> _Reply:
        """The answer to one request; a transport failure or an error response raises its typed error."""
        import httpcore

        query = urlencode({k: _query_value(v) for k, v in params.items()}) if params else ""
        url = f"{self.runtime.base_url}{path}{'?' + query if query else ''}"
        headers = list(self.headers)
        content = payload.model_dump_json(exclude_unset=True).encode() if payload is not None else None
        if content is not None:
            headers.append((b"Content-Type", b"application/json"))
        seconds = self.timeout if timeout is None else timeout
        try:
            response = self.http.request(method, url, headers=headers, content=content, extensions={
                "timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}})
        except (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
                httpcore.UnsupportedProtocol) as exc:
            raise TransientError(
                f"the daemon (pid {self.runtime.pid}) is not answering at {self.runtime.address}: {exc} "
                "(`ctx daemon status`, or `ctx daemon stop` and start it again)"
            ) from None
        reply = _Reply(response.status, {k.decode("latin-1").lower(): v.decode("latin-1")
                                          for k, v in response.headers}, response.content)
        served = reply.headers.get(VERSION_HEADER.lower())
        if served is not None and served != API_VERSION:
            raise UserError(f"the daemon speaks API v{served} and this ctx speaks v{API_VERSION}: "
                            "restart it with `ctx daemon stop && ctx daemon start`")
        if reply.status >= 400:
            try:
                error = reply.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "internal", f"HTTP {reply.status}: {reply.text[:200]}"
            raise ERRORS.get(code, CtxError)(message)
        return reply

    def submit(self, body: IngestIn) -> dict[str, Any]:
        return self.call(ops.INGEST, body)  # type: ignore[no-any-return]

    def ingest(self, body: IngestIn, progress: Progress | None = None) -> dict[str, Any]:
        """Queue the job in the daemon and follow it to the end, drawing progress from its counts."""
        job = self.submit(body)
        follower = _Follower(progress) if progress is not None else None
        while job["status"] not in FINISHED:
            if follower:
                follower.update(job)
            time.sleep(0.2)
            job = self.call(ops.JOB, JobIn(job_id=job["id"]))
        if follower:
            follower.update(job)
        return job

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _query_value(value: Any) -> str:
    """A query parameter as the API reads it: booleans as ``true``/``false``, as JSON writes them."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class _Follower:
    """Turns a polled job's per-source counts into the same progress calls an in-process run makes."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.done: dict[str, int] = {}
        self.finished: set[str] = set()

    def update(self, job: dict[str, Any]) -> None:
        for name, state in job["progress"].items():
            if name not in self.done:
                self.progress.source_started(name)
                self.done[name] = 0
            count = sum(state.get(k, 0) for k in ("new", "changed", "unchanged", "quarantined"))
            if count > self.done[name]:
                self.progress.advance(count - self.done[name])
                self.done[name] = count
            if state.get("finalized") and name not in self.finished:
                self.finished.add(name)
                self.progress.source_finished(name, state.get("error") is not None)


def connect(config: str | Path | None = None, env: Mapping[str, str] | None = None,
            home: str | Path | None = None) -> Client:
    """The daemon of the home ``config`` (or CTX_CONFIG, or ./ctx.toml) names, if one runs; else this process.

    ``home`` stands for CTX_HOME. The runtime file is read before anything heavy is imported: through a
    daemon, a command loads no settings models, stores or model. Without one, the workspace is opened here
    (which validates ctx.toml).
    """
    environ = dict(os.environ if env is None else env)
    if home is not None:
        environ["CTX_HOME"] = str(home)
    path = find_config(config, environ)
    home = peek_home(path, environ)
    runtime = rt.read(home) if home is not None else None
    if runtime is not None:
        return DaemonClient(runtime)
    from ctx.workspace import Workspace

    return LocalClient(Workspace.open(path, environ))


def connect_workspace(ws: Workspace) -> Client:
    """The daemon of an open workspace's home if one runs, else that workspace in this process."""
    runtime = rt.read(ws.home)
    return DaemonClient(runtime) if runtime is not None else LocalClient(ws)
