"""The ctx-git-history plugin (plugins/ctx-git-history), installed and loaded as a user loads it.

It is registered through its ``ctx`` entry point (``CTX_LOAD_PLUGINS=git_history``), asked through the
real CLI (`ctx assemble --recipe dev ... --json`), and reads a real git repository built per test with
fixed authors and dates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from ctx import plugins

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

CONFIG = """
[embedding]
embedder = "none"

[providers.history]
kind = "git_history"
repo = "{repo}"
{extra}

[recipes.dev]
deadline = "10s"

[recipes.dev.providers]
history = {{ criticality = "enhancing", share = 0.3 }}
"""


@pytest.fixture(autouse=True)
def git_history_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The installed plugin through its entry point; the process-wide plugin manager is restored afterwards."""
    if not any(ep.name == "git_history" for ep in entry_points(group="ctx")):
        pytest.fail("the git_history plugin is not installed: pip install -e plugins/ctx-git-history")
    monkeypatch.setenv("CTX_LOAD_PLUGINS", "git_history")
    saved = plugins._pm
    plugins._pm = None
    plugins._registries.cache_clear()
    yield
    plugins._pm = saved
    plugins._registries.cache_clear()


class Repo:
    """A git repository with a fixed author and commit dates, built with the real git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.git("init", "-q")

    def git(self, *args: str, date: str = "2024-01-01T00:00:00+00:00") -> str:
        env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": os.devnull}  # the developer's own git config never changes a test
        done = subprocess.run([GIT or "git", "-C", str(self.root), "-c", "user.name=Ana Dev",
                               "-c", "user.email=ana@example.com", "-c", "init.defaultBranch=main", *args],
                              env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def commit(self, date: str, message: str, files: dict[str, str]) -> str:
        """Append a line to each file and commit them."""
        for name, line in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
            self.git("add", str(path))
        self.git("commit", "-q", "-m", message, date=date)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    r = Repo(tmp_path / "repo")
    r.commit("2024-01-01T09:00:00+00:00", "Add billing and auth",
             {"billing/refunds.py": "def refund(): ...", "auth/keys.py": "def rotate(): ...", "README.md": "# Shop"})
    r.commit("2024-02-01T09:00:00+00:00", "Refunds: prorate annual plans\n\nAnnual plans are refunded pro rata "
             "for the unused months.\n", {"billing/refunds.py": "def prorate(): ..."})
    r.commit("2024-03-01T09:00:00+00:00", "Rotate API keys every 90 days", {"auth/keys.py": "MAX_AGE_DAYS = 90"})
    r.commit("2024-04-01T09:30:00+02:00", "Refunds: round to whole cents", {"billing/refunds.py": "ROUND = 2"})
    return r


def assemble(ctx_cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    return ctx_cli("assemble", "--recipe", "dev", *args, "--json").json()  # type: ignore[no-any-return]


def history(out: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in out["blocks"] if b["provider"] == "history"]


def subjects(out: dict[str, Any]) -> list[str]:
    return [b["title"].split(" ", 1)[1] for b in history(out)]


def test_recent_commits_of_the_files_a_query_is_about(repo: Repo, write_config, ctx_cli) -> None:
    write_config(CONFIG.format(repo="repo", extra=""))
    assert "git_history" in plugins.plugin_names()  # loaded from the entry point, not imported by the test
    out = assemble(ctx_cli, "how are refunds computed")
    assert out["providers"]["history"]["status"] == "ok", out["providers"]
    # Every commit that touched billing/refunds.py, newest first; the auth-only commit is not among them.
    assert subjects(out) == ["Refunds: round to whole cents", "Refunds: prorate annual plans", "Add billing and auth"]
    blocks = history(out)
    assert [b["as_of"] for b in blocks] == ["2024-04-01T07:30:00+00:00", "2024-02-01T09:00:00+00:00",
                                            "2024-01-01T09:00:00+00:00"]
    assert blocks[0]["score"] > blocks[1]["score"] > blocks[2]["score"]
    newest, prorate, first = blocks
    assert newest["title"].split(" ")[0] == repo.git("rev-parse", "--short", "HEAD")
    assert newest["document"] == repo.git("rev-parse", "HEAD") and newest["version"] == 0
    assert "author: Ana Dev <ana@example.com>" in newest["text"]
    assert "date: 2024-04-01T09:30:00+02:00" in newest["text"]
    assert "files: billing/refunds.py" in newest["text"]
    assert "Annual plans are refunded pro rata for the unused months." in prorate["text"]
    # The first commit touched auth/keys.py too, but only the chosen file is listed.
    assert "files: billing/refunds.py" in first["text"] and "keys.py" not in first["text"]
    assert "Refunds: round to whole cents" in out["context"]


def test_a_query_about_no_file_gives_no_blocks_and_no_error(repo: Repo, write_config, ctx_cli) -> None:
    write_config(CONFIG.format(repo="repo", extra=""))
    for query in ("what is the weather like", "a b c to do"):  # no path word; only words under three letters
        out = assemble(ctx_cli, query)
        assert history(out) == []
        assert out["providers"]["history"]["status"] == "ok" and out["providers"]["history"]["error"] is None
        assert out["degradations"] == []


def test_files_param_names_the_files(repo: Repo, write_config, ctx_cli) -> None:
    write_config(CONFIG.format(repo="repo", extra=""))
    want = ["Rotate API keys every 90 days", "Add billing and auth"]
    assert subjects(assemble(ctx_cli, "what changed lately", "--param", "files=auth/keys.py")) == want
    # A bare file name finds the tracked file ending in it; ./ and repeats change nothing.
    assert subjects(assemble(ctx_cli, "what changed lately", "--param", "files=keys.py, ./auth/keys.py")) == want
    # Named files and the query's files together.
    both = assemble(ctx_cli, "refunds", "--param", "files=auth/keys.py")
    assert subjects(both) == ["Refunds: round to whole cents", "Rotate API keys every 90 days",
                              "Refunds: prorate annual plans", "Add billing and auth"]
    assert "files: auth/keys.py, billing/refunds.py" in history(both)[-1]["text"]
    # A path outside the repository is the provider's one-line failure, not the request's.
    out = assemble(ctx_cli, "refunds", "--param", "files=../ctx.toml")
    assert out["providers"]["history"]["status"] == "failed"
    assert "outside the repository" in out["providers"]["history"]["error"]


def test_a_sub_folder_of_the_repository_is_the_repository(repo: Repo, write_config, ctx_cli) -> None:
    write_config(CONFIG.format(repo="repo/billing", extra="max_commits = 2"))
    assert subjects(assemble(ctx_cli, "refunds")) == ["Refunds: round to whole cents",
                                                      "Refunds: prorate annual plans"]


def test_query_words_and_path_words() -> None:
    from ctx_git_history import FileIndex, query_words

    assert query_words("How are Refunds computed?") == ("comput", "refund")
    assert query_words("what does RefundService do with the_keys") == ("key", "refund", "servic")
    index = FileIndex.build("\0".join(["src/RefundService.java", "billing/refunds.py", "billing/refund-keys.md",
                                       "tests/test_formats_and_sources.py", "README.md"]))
    # More shared words first; then a match in the file stem before one in a folder name.
    assert index.match(query_words("refund keys and billing"), 10) == [
        "billing/refund-keys.md", "billing/refunds.py", "src/RefundService.java"]
    assert index.match(query_words("the readme"), 10) == ["README.md"]
    assert index.resolve("refunds.py") == ["billing/refunds.py"] and index.resolve("gone.py") == ["gone.py"]


def test_not_a_git_work_tree_is_a_one_line_config_error(tmp_path: Path, write_config, ctx_cli) -> None:
    (tmp_path / "plain").mkdir()
    write_config(CONFIG.format(repo="plain", extra=""))
    res = ctx_cli("assemble", "--recipe", "dev", "refunds", ok=False)
    assert res.exit_code == 2, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: config error: providers.history.repo: not a git work tree: "), lines[0]
    write_config(CONFIG.format(repo="missing", extra=""))
    res = ctx_cli("assemble", "--recipe", "dev", "refunds", ok=False)
    assert res.exit_code == 2 and res.stderr.startswith("error: config error: providers.history.repo: "), res


def test_a_new_commit_changes_the_answer_at_once(repo: Repo, write_config, ctx_cli) -> None:
    write_config(CONFIG.format(repo="repo", extra=""))
    first = assemble(ctx_cli, "refunds")
    assert first["cache"] == "miss" and subjects(first)[0] == "Refunds: round to whole cents"
    again = assemble(ctx_cli, "refunds")
    assert again["cache"] != "miss" and subjects(again) == subjects(first)  # nothing changed: from the cache
    repo.commit("2024-05-01T09:00:00+00:00", "Refunds: support partial refunds", {"billing/refunds.py": "PARTIAL = 1"})
    after = assemble(ctx_cli, "refunds")
    assert after["cache"] == "miss" and after["providers"]["history"]["cache"] == "miss"
    assert subjects(after) == ["Refunds: support partial refunds", *subjects(first)]


def test_git_is_killed_when_the_deadline_passes(tmp_path: Path, repo: Repo, write_config, ctx_cli,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pids = tmp_path / "pids"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(f"#!/bin/sh\necho $$ >> '{pids}'\nexec sleep 60\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    write_config(CONFIG.format(repo="repo", extra='timeout = "1s"'))
    started = time.monotonic()
    out = assemble(ctx_cli, "refunds", "--deadline", "500ms")
    assert time.monotonic() - started < 30
    assert history(out) == [] and out["providers"]["history"]["status"] in ("late", "timeout")
    spawned = [int(line) for line in pids.read_text().split()]
    assert len(spawned) == 2  # the hung git ran twice: to list files ahead of the request (prepare), then in it
    for pid in spawned:
        gone_by = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert not _alive(pid), f"git {pid} outlived the request"


def test_git_missing_fails_the_provider_not_the_request(tmp_path: Path, repo: Repo, write_config, ctx_cli,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    write_config(CONFIG.format(repo="repo", extra=""))
    out = assemble(ctx_cli, "refunds")
    assert out["providers"]["history"]["status"] == "failed"
    assert out["providers"]["history"]["error"] == "git is not installed (not found on PATH)"
    assert [d["kind"] for d in out["degradations"]] == ["failed"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
