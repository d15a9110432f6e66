"""A home is private to its user: the folder 0700 and nothing under it open to group or other, whoever made
the file (the CLI, the daemon, SQLite's -wal/-shm, diskcache, Chroma); ``ctx doctor`` reports a looser home
and ``--repair`` tightens it. (Tests run as root: the permission bits still show in stat.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES

CONFIG = """
[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
"""


def _loose(home: Path) -> list[str]:
    found = [] if not stat.S_IMODE(home.stat().st_mode) & 0o077 else ["."]
    for folder, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            path = Path(folder, name)
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                found.append(f"{path.relative_to(home)} {stat.S_IMODE(mode):o}")
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "docs" / "api", tmp_path / "docs" / "api")
    (tmp_path / "ctx.toml").write_text(CONFIG)
    return tmp_path


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual 0o022 umask, as a shell or an application has it (restored after the test)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _ctx(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "ctx.cli", *args], cwd=project, capture_output=True, text=True,
                          timeout=300, preexec_fn=lambda: os.umask(0o022))
    assert not check or proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.model
def test_a_fresh_ingest_leaves_nothing_readable_by_others(project: Path) -> None:
    _ctx(project, "ingest", "--json")
    _ctx(project, "assemble", "rotate an api key", "--json")  # traces, the cache tiers
    home = project / "home"
    assert (home / "catalog.db").exists() and (home / "vectors").exists()
    assert _loose(home) == []


@pytest.mark.model
def test_the_library_keeps_the_umask_and_still_makes_the_home_private(
        project: Path, open_umask: None, open_workspace: Callable[..., Any]) -> None:
    home = project / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # an existing home with loose modes is tightened when opened
    ws = open_workspace(project / "ctx.toml")
    ws.ingest()
    assert os.umask(0o022) == 0o022  # an application's umask is its own: the library leaves it alone
    assert _loose(home) == []


def test_doctor_reports_a_loose_home_and_repair_tightens_it(project: Path, ctx_cli: Callable[..., Any]) -> None:
    (project / "ctx.toml").write_text('[embedding]\nembedder = "none"\n' + CONFIG)
    ctx_cli("ingest", "--json")
    home = project / "home"
    home.chmod(0o755)
    for path in home.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (home / "notes.txt").write_text("x")
    (home / "notes.txt").chmod(0o640)
    assert len(_loose(home)) >= 3

    found = ctx_cli("doctor", "--json", ok=False)
    assert found.exit_code == 1
    check = next(c for c in found.json()["checks"] if c["check"] == "home permissions")
    assert not check["ok"] and check["count"] >= 2, check  # catalog.db and notes.txt at least
    human = ctx_cli("doctor", ok=False)
    assert "FAIL home permissions" in human.stderr

    fixed = ctx_cli("doctor", "--repair", "--json").json()
    assert fixed["repaired"]["home_permissions"] >= 2
    assert _loose(home) == []
    assert ctx_cli("doctor", "--json").json()["ok"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "notes.txt").stat().st_mode) == 0o600
