"""The daemon's lifecycle, with real processes: start, announce, one per home, stale files, drain on SIGTERM,
logs, and the TCP opt-in. Every command runs as users run it (``ctx ...`` in a subprocess)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ctx.api import runtime as rt
from ctx.api.operations import STATUS
from ctx.api.schemas import API_VERSION


def _config(extra_daemon: str = "", embedder: str = 'embedder = "none"', docs: str = "docs") -> str:
    return f"""
[embedding]
{embedder}

[daemon]
scheduler = false
watch = false
{extra_daemon}

[sources.docs]
kind = "files"
path = "{docs}"
include = ["**/*.md"]
"""


def _cli(config: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real `ctx` command, on the test's home (CTX_HOME is in os.environ)."""
    return subprocess.run([sys.executable, "-m", "ctx.cli", "--config", str(config), *args],
                          env=dict(os.environ), capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for a parent that is not us counts as exited)."""
    if not rt.alive(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _home() -> Path:
    return Path(os.environ["CTX_HOME"])


@pytest.fixture(autouse=True)
def _reaper() -> Iterator[None]:
    """Whatever a test started on its home and did not stop is stopped here."""
    yield
    found = rt.read(_home())
    if found is not None:
        os.kill(found.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not _gone(found.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _gone(found.pid):
            os.kill(found.pid, signal.SIGKILL)


def test_start_status_stop(daemon: Callable[..., Any], write_config: Callable[[str], Path], docs_dir: Path) -> None:
    config = write_config(_config())
    d = daemon(config=config)
    home = d.home

    status = d.cli("daemon", "status", "--json")
    info = json.loads(status.stdout)
    assert info["running"] is True
    assert info["api_version"] == API_VERSION
    pid, address = info["pid"], info["address"]
    assert isinstance(pid, int) and pid != os.getpid() and rt.alive(pid)
    assert address == f"unix:{home / 'daemon.sock'}"
    assert info["home"] == str(home)

    # The runtime file: owner-only from the start, and everything a client needs.
    runtime_file = home / "daemon.json"
    assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600
    data = json.loads(runtime_file.read_text())
    assert {"pid", "address", "api_version", "token"} <= set(data)
    assert (data["pid"], data["address"], data["api_version"]) == (pid, address, API_VERSION)
    assert len(data["token"]) >= 32
    assert not list(home.glob("daemon.*.tmp"))  # written atomically: no temp file left behind

    sock = home / "daemon.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    # A plain command goes through the daemon, and says so.
    through = json.loads(d.cli("status", "--json").stdout)
    assert through["daemon"] is not None
    assert (through["daemon"]["pid"], through["daemon"]["address"]) == (pid, address)
    assert "GET /v1/status 200" in d.log()

    stopped = d.cli("daemon", "stop")
    assert f"pid {pid}" in stopped.stderr
    assert _gone(pid)
    assert not runtime_file.exists()
    assert not sock.exists()

    assert d.cli("daemon", "status", check=False).returncode == 3
    gone = d.cli("daemon", "status", "--json", check=False)
    assert gone.returncode == 3
    assert json.loads(gone.stdout) == {"running": False, "home": str(home)}
    # Without a daemon the same command runs in-process.
    assert json.loads(d.cli("status", "--json").stdout)["daemon"] is None


def test_one_daemon_per_home(daemon: Callable[..., Any], write_config: Callable[[str], Path], docs_dir: Path) -> None:
    config = write_config(_config())
    d = daemon(config=config)
    first = d.runtime

    refused = d.cli("daemon", "start", check=False)
    line = _one_line_error(refused)
    assert f"pid {first.pid}" in line and "already runs" in line

    # The foreground entry points fail on the lock, before touching the socket or the runtime file.
    for command in ([sys.executable, "-m", "ctx.daemon", "--config", str(config)],
                    [sys.executable, "-m", "ctx.cli", "--config", str(config), "daemon", "start", "--foreground"]):
        proc = subprocess.run(command, env=d.env, capture_output=True, text=True, timeout=120)
        line = _one_line_error(proc)
        assert f"pid {first.pid}" in line and "already runs" in line

    # The lock, not the runtime file, is what guards the home: with the file gone a second one still fails.
    runtime_file = d.home / "daemon.json"
    saved = runtime_file.read_bytes()
    runtime_file.unlink()
    try:
        proc = subprocess.run([sys.executable, "-m", "ctx.daemon", "--config", str(config)],
                              env=d.env, capture_output=True, text=True, timeout=120)
        assert "already runs" in _one_line_error(proc)
    finally:
        runtime_file.write_bytes(saved)
        os.chmod(runtime_file, 0o600)

    # The first daemon is untouched and still serving on its socket.
    assert d.runtime == first
    assert d.client().call(STATUS)["daemon"]["pid"] == first.pid


def test_a_stale_runtime_file_is_detected_and_removed(write_config: Callable[[str], Path], docs_dir: Path) -> None:
    config = write_config(_config())
    home = _home()
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid is free
    assert not rt.alive(dead.pid)
    home.mkdir(parents=True)
    rt.write(home, rt.Runtime(dead.pid, f"unix:{home / 'daemon.sock'}", API_VERSION, "stale-token",
                              "2026-01-01T00:00:00+00:00", str(home)))
    # A crashed daemon also leaves its socket file behind.
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(home / "daemon.sock"))
    leftover.close()
    assert (home / "daemon.json").exists() and (home / "daemon.sock").exists()

    status = _cli(config, "daemon", "status")
    assert status.returncode == 3, status.stderr
    assert "no daemon runs" in status.stderr
    assert not (home / "daemon.json").exists()
    # Commands do not try to reach the dead daemon: they run in-process.
    assert json.loads(_cli(config, "status", "--json").stdout)["daemon"] is None

    # The same with a stale file present when `ctx daemon start` runs: it starts.
    rt.write(home, rt.Runtime(dead.pid, f"unix:{home / 'daemon.sock'}", API_VERSION, "stale-token",
                              "2026-01-01T00:00:00+00:00", str(home)))
    started = _cli(config, "daemon", "start", "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["pid"] != dead.pid
    fresh = rt.read(home)
    assert fresh is not None and fresh.pid == info["pid"] and fresh.token != "stale-token"
    assert json.loads(_cli(config, "daemon", "status", "--json").stdout)["pid"] == info["pid"]
    assert _cli(config, "daemon", "stop").returncode == 0


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> rt.Runtime:
    from ctx.daemon.server import healthy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the daemon exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
        found = rt.read(_home())
        if found is not None and found.pid == proc.pid and healthy(found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"the daemon did not answer within {timeout}s: {log.read_text(errors='replace')[-2000:]}")


@pytest.mark.model
def test_sigterm_drains_the_request_in_flight_and_exits_zero(tmp_path: Path, docs_dir: Path,
                                                            write_config: Callable[[str], Path], ctx_cli: Any) -> None:
    """With the real model: SIGTERM stops new connections, finishes the request being served, exits 0."""
    from ctx.api.schemas import IngestIn
    from ctx.client import DaemonClient

    small = tmp_path / "small"
    small.mkdir()
    for name in ("billing/refunds-and-disputes.md", "billing/plans.md", "api/rate-limits.md"):
        shutil.copy(docs_dir / name, small / Path(name).name)
    config = write_config(_config(embedder="", docs="small"))  # the default embedder: the real model
    log = tmp_path / "foreground.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ctx.cli", "--config", str(config), "daemon", "start",
                                 "--foreground"], stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    conn: socket.socket | None = None
    try:
        runtime = _wait_ready(proc, log)
        assert runtime.uds is not None
        client = DaemonClient(runtime)
        job = client.ingest(IngestIn())
        assert job["status"] == "ok", job
        assert job["summary"]["totals"]["new"] == 3
        client.close()

        # A request whose headers are in, and whose route is waiting for its body (the 100 Continue says so).
        body = json.dumps({"query": "how long do refunds take?", "budget": 500}).encode()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(60)
        conn.connect(runtime.uds)
        conn.sendall(f"POST /v1/assemble HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {runtime.token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        assert _read_head(conn).startswith(b"HTTP/1.1 100")

        proc.send_signal(signal.SIGTERM)
        # Shutdown has begun once new connections are refused; the request above is still in flight.
        deadline = time.monotonic() + 60
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(runtime.uds)
            except (ConnectionRefusedError, FileNotFoundError):
                break
            finally:
                probe.close()
            assert time.monotonic() < deadline, "the daemon kept accepting connections after SIGTERM"
            time.sleep(0.02)
        assert proc.poll() is None, "the daemon exited with a request in flight"

        conn.sendall(body)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply[:500]
        assembled = json.loads(payload)
        assert "refunds-and-disputes.md" in [b["document"] for b in assembled["blocks"]]

        assert proc.wait(timeout=120) == 0, log.read_text(errors="replace")[-2000:]
    finally:
        if conn is not None:
            conn.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (_home() / "daemon.json").exists()
    assert not Path(runtime.uds).exists()
    text = log.read_text(errors="replace")
    assert "draining" in text and f"ctx daemon {proc.pid} stopped" in text
    assert "Traceback" not in text
    # The request that was in flight finished completely: its trace is stored and replays.
    traces = ctx_cli("--config", str(config), "traces", "--json").json()
    assert assembled["trace_id"] in [t["id"] for t in traces]


def test_start_json_and_logs(write_config: Callable[[str], Path], docs_dir: Path, ctx_cli: Any) -> None:
    config = write_config(_config())
    home = _home()
    missing = _cli(config, "daemon", "logs")
    assert missing.returncode == 3 and "no daemon log" in _one_line_error(missing)

    started = _cli(config, "daemon", "start", "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)  # stdout is JSON and only JSON
    assert info["api_version"] == API_VERSION and info["home"] == str(home)
    assert info["address"] == f"unix:{home / 'daemon.sock'}"
    runtime = rt.read(home)
    assert runtime is not None and (runtime.pid, runtime.address) == (info["pid"], info["address"])
    with httpx.Client(base_url="http://localhost", transport=httpx.HTTPTransport(uds=runtime.uds)) as http:
        for _ in range(6):
            assert http.get("/healthz").status_code == 200

    last5 = _cli(config, "daemon", "logs", "-n", "5")
    assert last5.returncode == 0, last5.stderr
    lines = last5.stdout.splitlines()
    assert len(lines) == 5, last5.stdout
    full = (home / "daemon.log").read_text().splitlines()  # read after: the daemon may have logged since
    at = full.index(lines[0])
    assert full[at:at + 5] == lines  # consecutive lines of the log
    assert at + 5 >= len(full) - 1  # the newest ones (one request may have been logged since)
    everything = ctx_cli("--config", str(config), "daemon", "logs", "-n", "1000").stdout
    assert f"ctx daemon {info['pid']} serving" in everything and "GET /healthz 200" in everything
    assert ctx_cli("--config", str(config), "daemon", "logs", "-n", "0").stdout == ""

    assert _cli(config, "daemon", "stop").returncode == 0
    assert f"ctx daemon {info['pid']} stopped" in (home / "daemon.log").read_text()


def test_tcp_is_opt_in(daemon: Callable[..., Any], write_config: Callable[[str], Path], docs_dir: Path) -> None:
    config = write_config(_config("tcp = true\nport = 0"))
    # A proxy in the environment (common on corporate machines) must not carry CLI-to-daemon traffic, nor the
    # token: this one refuses connections, so any request sent through it fails.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{free.getsockname()[1]}"
    d = daemon(config=config, HTTP_PROXY=proxy, http_proxy=proxy, ALL_PROXY=proxy, NO_PROXY="", no_proxy="")
    runtime = d.runtime
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", runtime.address)
    assert match, runtime.address
    assert int(match.group(1)) > 0  # port 0 asks the OS for a free port, and the runtime file names it
    assert not (d.home / "daemon.sock").exists()

    with httpx.Client(base_url=runtime.address, trust_env=False, timeout=30) as http:
        assert http.get("/healthz").json()["pid"] == runtime.pid
        assert http.get("/v1/status").status_code == 401
        served = http.get("/v1/status", headers={"Authorization": f"Bearer {runtime.token}"})
        assert served.status_code == 200
        assert served.json()["daemon"]["address"] == runtime.address
        # A web page the user visits can reach 127.0.0.1, but only under its own name (DNS rebinding).
        rebound = http.get("/v1/status", headers={"Authorization": f"Bearer {runtime.token}",
                                                  "Host": f"attacker.example.com:{match.group(1)}"})
        assert rebound.status_code == 403

    through = json.loads(d.cli("status", "--json").stdout)
    assert through["daemon"]["address"] == runtime.address
    info = json.loads(d.cli("daemon", "status", "--json").stdout)
    assert info["address"] == runtime.address

    assert d.cli("daemon", "stop").returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{runtime.address}/healthz", trust_env=False, timeout=5)


@pytest.mark.model
def test_a_daemon_run_leaves_nothing_readable_by_others(daemon: Callable[..., Any], write_config: Callable[[str], Path],
                                                        docs_dir: Path) -> None:
    """The home, daemon.log and everything the daemon's ingest and assembly write are private to the user,
    even when the shell that starts it has the usual 0o022 umask."""
    config = write_config(_config(embedder=""))
    old = os.umask(0o022)  # the children inherit it: `ctx daemon start` and the daemon itself
    try:
        d = daemon(config=config)
        d.cli("ingest", "--json")
        d.cli("assemble", "rotate an api key", "--json")
        d.cli("daemon", "stop")
    finally:
        os.umask(old)
    home = d.home
    assert (home / "daemon.log").exists() and (home / "vectors").exists()
    loose = [f"{p} {stat.S_IMODE(p.lstat().st_mode):o}" for p in [home, *home.rglob("*")]
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert loose == []
