"""The ASGI app: routes generated from the operations table, behind one security layer.

Every route but ``/healthz`` needs the bearer token; every request needs a local Host header (DNS
rebinding) and a body under the size limit. Errors are JSON ``{"error": {"code", "message"}}``
with stable codes, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctx.api.inputs import API_VERSION, VERSION_HEADER, describe
from ctx.api.outputs import ErrorOut, Health
from ctx.daemon.routes import add_routes
from ctx.daemon.service import Service
from ctx.errors import ConfigError, CtxError, NotFound, TransientError, UserError

log = logging.getLogger("ctx.daemon")
TARGET_KEY = "ctx.request_target"  # where http_protocol() keeps the request target as sent, in scope["extensions"]
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
OPEN_PATHS = {"/healthz"}
VERSION_PAIR = (VERSION_HEADER.lower().encode(), API_VERSION.encode())
ERRORS = {401: "unauthorized", 403: "host_not_allowed", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "payload_too_large", 422: "invalid_request", 503: "unavailable"}
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": name.replace("_", " ")}
    for code, name in {400: "bad_request", 401: "unauthorized", 403: "host_not_allowed", 404: "not_found",
                       413: "payload_too_large", 422: "invalid_request", 503: "unavailable"}.items()
}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


class Guard:
    """Host check, bearer token and body size limit, before any route runs (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, token: str, allowed_hosts: list[str], max_body: int, service: Service) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = LOCAL_HOSTS | {h.lower() for h in allowed_hosts}
        self.max_body = max_body
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_seen = {"status": 500}

        async def send_versioned(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), VERSION_PAIR]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scope, refusal = self._target(scope)
        refusal = refusal or self._refuse(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send_versioned)
        else:
            await self.app(scope, self._limited(receive), send_versioned)
        route = scope.get("route")
        name = getattr(route, "path", "unmatched")
        self.service.metrics.requests.labels(name, scope["method"], str(status_seen["status"])).inc()
        self.service.metrics.request_seconds.labels(name).observe(time.perf_counter() - started)
        log.info("%s %s %s %.1fms", scope["method"], scope["path"], status_seen["status"],
                 (time.perf_counter() - started) * 1000)

    def _target(self, scope: Scope) -> tuple[Scope, JSONResponse | None]:
        """The scope with an absolute-form request target (``GET http://host/v1/status``) checked and made
        origin-form, or a refusal: its host names the server as much as the Host header does (RFC 9112
        3.2.2), so a foreign one is refused the same way. httptools keeps only the target's path: the
        protocol from :func:`http_protocol` keeps the whole target for this check; h11 keeps it in raw_path."""
        target = (scope.get("extensions") or {}).get(TARGET_KEY) or scope.get("raw_path") or b"/"
        if b"%00" in target.lower() or "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # A path or query parameter is not checked by the input models' validators (the body is): a NUL
            # is refused here for all of them, as it is in a body (400: the schema allows it, no store does).
            return scope, error(400, "bad_request", "invalid request: the request target holds a NUL (%00)")
        if target.startswith(b"/"):
            return scope, None
        try:
            parts = urlsplit(target.decode("ascii"))
            host = (parts.hostname or "").lower()
        except (UnicodeDecodeError, ValueError):
            parts, host = None, ""
        if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
            return scope, error(400, "bad_request", "the request target must be a path or an http URL")
        if host not in self.hosts:
            return scope, error(403, "host_not_allowed", f"request target host {host[:100]!r} is not a local name "
                                "(DNS-rebinding protection)")
        path = parts.path or "/"
        return {**scope, "path": unquote(path), "raw_path": path.encode("ascii"),
                "query_string": parts.query.encode("ascii")}, None

    def _refuse(self, path: str, headers: dict[str, str]) -> JSONResponse | None:
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
        if name.lower() not in self.hosts:
            return error(403, "host_not_allowed", f"Host {host[:100]!r} is not a local name (DNS-rebinding protection)")
        if path not in OPEN_PATHS:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                return error(401, "unauthorized", "missing or wrong bearer token (it is in the home's daemon.json)",
                             {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return error(413, "payload_too_large", f"request body over {self.max_body} bytes")
        return None

    def _limited(self, receive: Receive) -> Receive:
        """Counts a body sent without Content-Length (chunked) and stops it at the limit."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        return wrapped


class _TooLarge(StarletteHTTPException):
    """An HTTPException: FastAPI re-raises those from its body parsing (any other error becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def create_app(service: Service, token: str) -> ASGIApp:
    """The FastAPI app: the error envelope, /healthz, and one route per operation (``ctx.daemon.routes``)."""
    settings = service.ws.settings.daemon
    app = FastAPI(title="ctx daemon", version=API_VERSION, responses=RESPONSES,
                  description="Context assembly, search, ingest jobs, events, traces and replay for one ctx home. "
                              "Every route but /healthz needs `Authorization: Bearer TOKEN` (TOKEN is in the "
                              "home's daemon.json).")
    _errors(app)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> dict[str, Any]:
        """Liveness, without a token: the only open route."""
        return {"ok": True, "api_version": API_VERSION, "pid": os.getpid()}

    add_routes(app, lambda op, body: service.run(op, body))  # looked up per call: tests build the app on a stand-in
    return Guard(app, token, settings.allowed_hosts, settings.max_body_bytes, service)


def _errors(app: FastAPI) -> None:
    """Typed errors become the JSON error envelope with a stable code, never a traceback."""

    @app.exception_handler(CtxError)
    async def ctx_error(request: Request, exc: CtxError) -> JSONResponse:
        if isinstance(exc, NotFound):
            return error(404, "not_found", str(exc))
        if isinstance(exc, UserError | ConfigError):
            return error(400, "bad_request", str(exc))
        if isinstance(exc, TransientError):
            return error(503, "unavailable", str(exc))
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error(500, "internal", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", describe(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed (RFC 9110 `Allow`).
        return error(exc.status_code, ERRORS.get(exc.status_code, "bad_request"), str(exc.detail),
                     dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed unexpectedly", request.method, request.url.path)
        return error(500, "internal", f"unexpected {type(exc).__name__} (details in the daemon log)")


def http_protocol() -> Any:
    """uvicorn's ``http`` protocol for the daemon: httptools (when installed) with the request target kept.

    httptools hands the app only the path of ``GET http://evil.example/v1/status``: the Guard could not see
    the host. This subclass keeps the target as sent in ``scope["extensions"]``; h11 (uvicorn's fallback)
    already keeps it whole in ``raw_path``.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    class TargetKeeping(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            # Before the parent builds the scope's path and starts the app: the target is whole by now.
            if not self.url.startswith(b"/"):
                extensions: dict[str, Any] = self.scope.setdefault("extensions", {})  # type: ignore[typeddict-item]
                extensions[TARGET_KEY] = bytes(self.url)
            super().on_headers_complete()

    return TargetKeeping
