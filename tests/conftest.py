"""Every test gets its own CTX_HOME, no installed third-party plugins, and no network but loopback."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    FIXTURES,
    Daemon,
    Loopback,
    Receiver,
    Result,
    Template,
    Workspaces,
    copy_tree,
    no_proxy,
    run_cli,
    serving,
)

os.environ["CTX_LOAD_PLUGINS"] = ""  # installed third-party plugins never load in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise OSError(f"network access blocked in tests: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    _guard_network(monkeypatch)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unpacked model for the whole session: unpacking is per home otherwise."""
    return tmp_path_factory.mktemp("models")


def _isolate(monkeypatch: pytest.MonkeyPatch, root: Path, model_dir: Path) -> dict[str, str]:
    """A test's environment: ``root`` is the working directory, ``root/home`` its CTX_HOME."""
    home = root / "home"
    monkeypatch.setenv("CTX_HOME", str(home))
    monkeypatch.setenv("CTX_MODEL_DIR", str(model_dir))
    monkeypatch.delenv("CTX_CONFIG", raising=False)
    monkeypatch.delenv("CTX_DEBUG", raising=False)
    monkeypatch.chdir(root)
    return {"CTX_HOME": str(home), "CTX_MODEL_DIR": str(model_dir)}


@pytest.fixture(autouse=True)
def ctx_env(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return _isolate(monkeypatch, tmp_path, model_dir)


@pytest.fixture
def ctx_cli() -> Callable[..., Result]:
    """Runs the real CLI in-process (the model stays loaded between calls)."""
    return run_cli


@pytest.fixture(scope="session")
def home_template(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Callable[..., Template]:
    """``home_template(name, build)``: a project folder whose home was built once per session.

    ``build(root)`` runs once per name, in ``root`` as the working directory with ``root/home`` as CTX_HOME (as
    a test would): it writes the project's files and runs what fills the home (an ingest with the real model,
    say); what it returns is kept as ``Template.output``. Tests take a copy (``copy_project``), never the
    template itself.
    """
    built: dict[str, Template] = {}

    def get(name: str, build: Callable[[Path], Any]) -> Template:
        if name not in built:
            root = tmp_path_factory.mktemp(f"template-{name}")
            with pytest.MonkeyPatch.context() as mp:
                _guard_network(mp)
                _isolate(mp, root, model_dir)
                output = build(root)
            built[name] = Template(root, output)
        return built[name]

    return get


@pytest.fixture
def copy_project(tmp_path: Path) -> Callable[[Template], Path]:
    """``copy_project(template)``: the template's files and home copied into this test's folder (its CTX_HOME)."""

    def copy(template: Template) -> Path:
        copy_tree(template.root, tmp_path)
        return tmp_path

    return copy


@pytest.fixture
def demo_home(home_template: Callable[..., Template], copy_project: Callable[[Template], Path]) -> Template:
    """This test's CTX_HOME holds a copy of a session-wide `ctx demo --json` home (the real model ingested
    fixtures/demo.toml into ``home/demo`` once); ``output`` is what that first demo printed."""
    template = home_template("demo", lambda root: run_cli("demo", "--json").json())
    copy_project(template)
    return template


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "ctx.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def docs_dir(tmp_path: Path) -> Iterator[Path]:
    """A small copy of the fixture docs that tests may edit."""
    target = tmp_path / "docs"
    shutil.copytree(FIXTURES / "docs", target)
    yield target


@pytest.fixture
def daemon(ctx_env: dict[str, str]) -> Iterator[Callable[..., Daemon]]:
    """``daemon(config=path)`` starts a real daemon subprocess for the test's home; it is stopped at teardown."""
    started: list[Daemon] = []

    def start(config: Path | None = None, **extra_env: str) -> Daemon:
        env = {**os.environ, **ctx_env, **extra_env}
        d = Daemon(Path(ctx_env["CTX_HOME"]), env, config).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Loopback]]:
    """``loopback(handler, delay=0)`` starts a loopback upstream server (stopped at teardown)."""
    no_proxy(monkeypatch)
    yield from serving(Loopback)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A loopback webhook endpoint, started for the test."""
    no_proxy(monkeypatch)
    with Receiver() as server:
        yield server


@pytest.fixture
def open_workspace() -> Iterator[Workspaces]:
    """``open_workspace(config=None, env=None, threaded=False)``: a Workspace for this test, closed at teardown."""
    workspaces = Workspaces()
    yield workspaces
    workspaces.close()

