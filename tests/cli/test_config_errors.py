"""A bad ctx.toml is one line on stderr naming the key and the problem, exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DOCS_OK = """
[embedding]
embedder = "none"

[sources.docs]
kind = "files"
path = "docs"
"""

# (name, ctx.toml text, the key the message must name, words the problem must contain)
CASES = [
    ("unknown top-level key", "bogus_setting = 1\n" + DOCS_OK, "bogus_setting", ["unknown key"]),
    (
        "unknown key in a source",
        DOCS_OK + 'includes = ["**/*.md"]\n',
        "sources.docs.includes",
        ["unknown key"],
    ),
    (
        "wrong type",
        DOCS_OK + '\n[chunking]\nmax_tokens = "big"\n',
        "chunking.max_tokens",
        ["integer"],
    ),
    (
        "missing path",
        '[embedding]\nembedder = "none"\n\n[sources.docs]\nkind = "files"\npath = "nope"\n',
        "sources.docs.path",
        ["does not exist", "nope"],
    ),
    (
        "bad glob",
        DOCS_OK + 'include = ["docs/[ab"]\n',
        "sources.docs.include",
        ["bad glob", "docs/[ab", "unbalanced"],
    ),
    (
        "unknown source kind",
        '[embedding]\nembedder = "none"\n\n[sources.docs]\nkind = "ftp"\npath = "docs"\n',
        "sources.docs.kind",
        ["unknown kind", "ftp", "files"],
    ),
    (
        "source kind of the wrong type",
        '[embedding]\nembedder = "none"\n\n[sources.docs]\nkind = ["files"]\npath = "docs"\n',
        "sources.docs.kind",
        ["unknown kind"],
    ),
    (
        "invalid TOML",
        DOCS_OK + "\n[chunking\nmax_tokens = 100\n",
        "ctx.toml",
        ["not valid TOML"],
    ),
    (
        "overlap too large",
        DOCS_OK + "\n[chunking]\nmax_tokens = 100\noverlap_tokens = 60\n",
        "chunking.overlap_tokens",
        ["less than half", "max_tokens"],
    ),
    (
        "bad duration",
        DOCS_OK + 'max_staleness = "soon"\n',
        "sources.docs.max_staleness",
        ["bad duration"],
    ),
    (
        "unknown embedder",
        DOCS_OK.replace('embedder = "none"', 'embedder = "bert-huge"'),
        "embedding.embedder",
        ["unknown embedder 'bert-huge'", "minilm"],
    ),
    (
        "unknown summarizer",
        DOCS_OK + '\n[enrichment]\nsummarizer = "gpt"\n',
        "enrichment.summarizer",
        ["unknown summarizer 'gpt'", "extractive"],
    ),
    (
        "unknown format",
        DOCS_OK + '\n[assembly]\nformat = "xml"\n',
        "assembly.format",
        ["unknown format 'xml'", "messages"],
    ),
]


@pytest.fixture(autouse=True)
def _docs(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text.\n")


@pytest.mark.parametrize("command", [["ingest", "--json"], ["sources", "--json"], ["status"]])
@pytest.mark.parametrize(("name", "toml", "key", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_naming_the_key(
    name: str, toml: str, key: str, words: list[str], command: list[str], write_config, ctx_cli
) -> None:
    write_config(toml)
    res = ctx_cli(*command, ok=False)
    assert res.exit_code == 2, res
    assert res.stdout == "", f"{name}: stdout must stay clean: {res.stdout!r}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1, f"{name}: expected exactly one line on stderr, got {res.stderr!r}"
    line = lines[0]
    assert "Traceback" not in line
    assert line.startswith("error: config error:"), line
    assert key in line, f"{name}: the message must name {key!r}: {line!r}"
    for word in words:
        assert word in line, f"{name}: {word!r} missing from {line!r}"


def test_a_good_config_passes(write_config, ctx_cli) -> None:
    # The same base config without the mistake is accepted: the cases above fail for their own reason.
    write_config(DOCS_OK)
    rows = ctx_cli("sources", "--json").json()
    assert [r["name"] for r in rows] == ["docs"]


def test_config_named_by_flag_that_does_not_exist(ctx_cli, tmp_path: Path) -> None:
    res = ctx_cli("--config", str(tmp_path / "missing.toml"), "sources", "--json", ok=False)
    assert res.exit_code == 2
    assert res.stdout == ""
    assert len(res.stderr.splitlines()) == 1
    assert "config file not found" in res.stderr and "missing.toml" in res.stderr


def _sources_json(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`ctx sources --json` in a real process, so the console entry point's own error path runs."""
    return subprocess.run(
        [sys.executable, "-c", "from ctx.cli import main; main()", "sources", "--json"],
        cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120,
    )


def test_ctx_debug_shows_the_traceback(write_config, tmp_path: Path) -> None:
    write_config("bogus_setting = 1\n")
    proc = _sources_json(tmp_path, {**os.environ, "CTX_DEBUG": "1"})
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError" in proc.stderr and "bogus_setting" in proc.stderr


def test_without_ctx_debug_the_same_subprocess_has_no_traceback(write_config, tmp_path: Path) -> None:
    write_config("bogus_setting = 1\n")
    proc = _sources_json(tmp_path, {k: v for k, v in os.environ.items() if k != "CTX_DEBUG"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: config error: bogus_setting: unknown key"]
