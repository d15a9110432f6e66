"""The daemon's runtime file: how a client finds the daemon of a home, and proves it may talk to it.

One JSON file, mode 0600, in the home (as jupyter_server's runtime files): pid, address, API
version and a bearer token. A file whose pid is dead is stale: it is removed on sight.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from ctx.pids import alive

RUNTIME_NAME = "daemon.json"


@dataclass(frozen=True)
class Runtime:
    pid: int
    address: str  # "unix:/path/to/daemon.sock" or "http://127.0.0.1:PORT"
    api_version: str
    token: str
    started_at: str
    home: str

    @property
    def uds(self) -> str | None:
        return self.address.removeprefix("unix:") if self.address.startswith("unix:") else None

    @property
    def base_url(self) -> str:
        # Over a unix socket the URL only names the Host header, which must be a local one.
        return "http://localhost" if self.uds else self.address


def runtime_path(home: Path) -> Path:
    return home / RUNTIME_NAME


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write(home: Path, runtime: Runtime) -> None:
    """Atomically, and readable by the owner only from the first byte (the token is a secret)."""
    home.mkdir(parents=True, exist_ok=True)
    target = runtime_path(home)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(runtime), handle)
    os.replace(tmp, target)


def read(home: Path) -> Runtime | None:
    """The running daemon's runtime, or None; a stale file (its pid is dead) is removed."""
    path = runtime_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runtime = Runtime(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None  # half-written or foreign: treated as absent, never trusted
    if not alive(runtime.pid):
        remove(home, runtime.pid)
        return None
    return runtime


def remove(home: Path, pid: int | None = None) -> None:
    """Remove the runtime file, but only the one ``pid`` wrote when given (never a successor's)."""
    path = runtime_path(home)
    try:
        if pid is not None and json.loads(path.read_text(encoding="utf-8")).get("pid") != pid:
            return
        path.unlink()
    except (OSError, ValueError):
        pass
