"""A bad ctx.toml is one line on stderr naming the key and the problem, exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# --- a ctx.toml with no sources --------------------------------------------------------------------------


def _hint_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert "[sources.NAME]" in lines[0] and "ctx.toml.example" in lines[0] and "ctx init" in lines[0], lines[0]
    return lines[0]


def _no_sources_answers(ctx: Callable[..., Any]) -> str:
    """Every command that reads sources says the same thing: the ones that would do nothing refuse (exit 2),
    the listing stays a listing (exit 0, empty) with the hint on stderr; --json stdout stays clean."""
    said = set()
    for args in (("ingest",), ("ingest", "--json"), ("assemble", "hello"), ("assemble", "hello", "--json"),
                 ("search", "hello"), ("search", "hello", "--json")):
        code, stdout, stderr = ctx(*args)
        assert code == 2, (args, code, stderr)
        assert stdout == ""
        line = _hint_line(stderr)
        assert line.startswith("error: no sources configured")
        said.add(line.removeprefix("error: "))
    code, stdout, stderr = ctx("sources", "--json")
    assert (code, json.loads(stdout)) == (0, [])
    said.add(_hint_line(stderr))
    code, stdout, stderr = ctx("sources")
    assert code == 0 and "source" in stdout  # the (empty) table
    said.add(_hint_line(stderr))
    assert len(said) == 1, said
    return said.pop()


def test_an_empty_config_says_what_to_add_the_same_way_everywhere(tmp_path: Path, ctx_cli: Any) -> None:
    (tmp_path / "ctx.toml").write_text("")

    def ctx(*args: str) -> tuple[int, str, str]:
        res = ctx_cli(*args, ok=False)
        return res.exit_code, res.stdout, res.stderr

    _no_sources_answers(ctx)


def test_an_empty_config_through_the_daemon(tmp_path: Path, daemon: Callable[..., Any]) -> None:
    config = tmp_path / "ctx.toml"
    config.write_text('[embedding]\nembedder = "none"\n')
    d = daemon(config=config)

    def ctx(*args: str) -> tuple[int, str, str]:
        proc = d.cli(*args, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    _no_sources_answers(ctx)
    assert "/v1/assemble 400" in d.log() and "Traceback" not in d.log()


def test_without_sources_a_recipe_of_other_providers_still_assembles(tmp_path: Path, ctx_cli: Any) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "refunds.md").write_text("Refunds within 30 days.\n")
    (tmp_path / "ctx.toml").write_text(
        '[embedding]\nembedder = "none"\n\n[providers.policy]\nkind = "static"\npaths = ["policies/*.md"]\n\n'
        '[recipes.default]\nproviders = { policy = {} }\n')
    out = ctx_cli("assemble", "hello", "--json").json()
    assert "Refunds within 30 days." in out["context"]


def test_a_home_ingested_under_an_older_config_still_answers(tmp_path: Path, ctx_cli: Any) -> None:
    config = tmp_path / "ctx.toml"
    config.write_text(DOCS_OK)
    ctx_cli("ingest", "--json")
    config.write_text('[embedding]\nembedder = "none"\n')  # the sources are gone from the config, not the home
    assert ctx_cli("search", "some text", "--json").json()  # what it ingested (docs/a.md)
