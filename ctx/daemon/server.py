"""The daemon's lifecycle: one per home (a lock), bind, announce (the runtime file), serve, drain, exit 0."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ctx.api import runtime as rt
from ctx.api.schemas import API_VERSION
from ctx.errors import TransientError, UserError
from ctx.settings import DaemonSettings, Settings
from ctx.store import private
from ctx.store.catalog import now_iso

log = logging.getLogger("ctx.daemon")
LOG_NAME = "daemon.log"
LOG_ROTATE_BYTES = 10_000_000
UDS_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def socket_path(home: Path) -> Path:
    path = home / "daemon.sock"
    if len(str(path)) <= UDS_MAX:
        return path
    # A deep home cannot hold a socket path: use a private folder in the temp dir, named after the home.
    folder = Path(tempfile.gettempdir()) / f"ctx-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / (hashlib.sha256(str(home).encode()).hexdigest()[:16] + ".sock")


def _lock(home: Path) -> IO[str]:
    """Held for the daemon's life: a second daemon on the home fails here, whatever the timing."""
    fd = os.open(home / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    handle = os.fdopen(fd, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        running = rt.read(home)
        where = f" (pid {running.pid}, {running.address})" if running else ""
        raise UserError(f"a daemon already runs for {home}{where}; `ctx daemon stop` stops it") from None
    return handle


def _bind(settings: DaemonSettings, home: Path) -> tuple[socket.socket, str]:
    if settings.tcp:
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            sock.close()
            raise UserError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
        port = sock.getsockname()[1]
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        address = f"http://{host}:{port}"
    else:
        path = socket_path(home)
        path.unlink(missing_ok=True)  # we hold the lock: any socket left here is a dead daemon's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: only this user may connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        address = f"unix:{path}"
    sock.listen(2048)
    sock.setblocking(False)
    return sock, address


def _ignore(signum: int, frame: Any) -> None:
    pass


def serve(settings: Settings, env: Mapping[str, str]) -> int:
    """Run the daemon in this process until SIGTERM or SIGINT; returns the exit code."""
    import uvicorn

    from ctx.daemon.app import create_app, http_protocol
    from ctx.daemon.service import Service
    from ctx.store.writer import ThreadWriter
    from ctx.workspace import Workspace

    assert settings.home is not None
    home = private.make_home(settings.home)
    lock = _lock(home)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # httpx logs every request's full URL at INFO: a token in a source's, provider's or webhook's URL
    # would land in daemon.log. Its warnings still get through.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    writer = ThreadWriter()
    ws = Workspace(settings, env, writer)
    ws.origin = "daemon"  # traces say who served them: the audit looks for a context service
    sock, address = _bind(settings.daemon, home)
    try:
        started = time.perf_counter()
        ws.assembler.prepare()  # open the stores and load the model now, not inside the first deadline
        if ws.embedder is not None:
            ws.embedder.warm_up()  # also for /v1/search, which asks no provider
        service = Service(ws)
        service.address = address
        token = rt.new_token()
        server = uvicorn.Server(uvicorn.Config(
            create_app(service, token), http=http_protocol(), log_config=None, access_log=False, lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=int(settings.daemon.drain_timeout) or None,
        ))
        service.start()
        rt.write(home, rt.Runtime(os.getpid(), address, API_VERSION, token, now_iso(), str(home)))
        log.info("ctx daemon %s serving %s on %s (ready in %.1fs)", os.getpid(), home, address,
                 time.perf_counter() - started)
        # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal with the handler
        # installed before it started: with these no-op ones, shutdown finishes here and exits 0.
        signal.signal(signal.SIGTERM, _ignore)
        signal.signal(signal.SIGINT, _ignore)
        server.run(sockets=[sock])
        log.info("draining: stopping the scheduler and the job lanes at a safe point")
        service.stop(timeout=max(settings.daemon.drain_timeout, 1.0) * 3)
    finally:
        rt.remove(home, os.getpid())
        if address.startswith("unix:"):
            Path(address.removeprefix("unix:")).unlink(missing_ok=True)
        writer.close()
        ws.close()
        lock.close()
    log.info("ctx daemon %s stopped", os.getpid())
    return 0


def start_background(settings: Settings, env: Mapping[str, str], timeout: float = 180.0) -> rt.Runtime:
    """Start the daemon as a detached process and wait until it answers."""
    assert settings.home is not None
    home = settings.home
    running = rt.read(home)
    if running is not None:
        raise UserError(f"a daemon already runs for {home} (pid {running.pid}, {running.address})")
    private.make_home(home)
    log_path = home / LOG_NAME
    if log_path.exists() and log_path.stat().st_size > LOG_ROTATE_BYTES:
        log_path.replace(log_path.with_suffix(".log.1"))
    command = [sys.executable, "-m", "ctx.daemon"]
    if settings.config_path:
        command += ["--config", str(settings.config_path)]
    # The log holds request errors and paths: 0600 whatever the caller's umask (an in-process caller keeps its own).
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log_file:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**env, "CTX_HOME": str(home)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise UserError(f"the daemon exited at start (code {code}): {last_line(log_path)}")
        runtime = rt.read(home)
        if runtime is not None and runtime.pid == proc.pid and healthy(runtime):
            return runtime
        time.sleep(0.1)
    raise TransientError(f"the daemon (pid {proc.pid}) did not answer within {timeout:.0f}s; see `ctx daemon logs`")


def healthy(runtime: rt.Runtime) -> bool:
    import httpx

    transport = httpx.HTTPTransport(uds=runtime.uds) if runtime.uds else None
    try:
        with httpx.Client(base_url=runtime.base_url, transport=transport, timeout=2.0, trust_env=False) as http:
            return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def stop(home: Path, timeout: float = 60.0) -> rt.Runtime | None:
    """SIGTERM the home's daemon and wait for it to drain and exit; None if none was running."""
    runtime = rt.read(home)
    if runtime is None:
        return None
    os.kill(runtime.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not rt.alive(runtime.pid):
            rt.remove(home, runtime.pid)
            return runtime
        time.sleep(0.05)
    raise TransientError(f"the daemon (pid {runtime.pid}) did not stop within {timeout:.0f}s; "
                         f"`kill -9 {runtime.pid}` forces it (queued work resumes at the next start)")


def last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"
