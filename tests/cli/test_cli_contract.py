"""The CLI's contract: --json is JSON and only JSON, errors are one line with a meaningful exit code,
every command has an example in its help, and importing the CLI stays light."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from ctx.cli import app

CONFIG = """
[embedding]
embedder = "none"

[sources.tickets]
kind = "jsonl"
path = "tickets.jsonl"
title_field = "subject"
freshness = "near_realtime"
criticality = "important"

[sources.crm]
kind = "sql"
database = "crm.db"
query = "select id, name, notes, plan from accounts order by id"
text_columns = ["notes"]
title_column = "name"
metadata_columns = ["plan"]
freshness = "batch"
criticality = "enhancing"

[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
criticality = "critical"
"""

TICKETS = [
    {"id": "T-1", "subject": "Refund request", "text": "The customer was charged twice and wants a refund."},
    {"id": "T-2", "subject": "Key leak", "text": "An API key was pasted in a public repository; rotate it."},
]


@pytest.fixture
def workspace_files(tmp_path: Path, write_config) -> Path:
    with open(tmp_path / "tickets.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in TICKETS)
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        conn.execute("create table accounts (id integer primary key, name text, notes text, plan text)")
        conn.executemany(
            "insert into accounts values (?, ?, ?, ?)",
            [
                (
                    1,
                    "Acme Corp",
                    "Acme renews the enterprise plan every March; billing contact is Wile.",
                    "enterprise",
                ),
                (
                    2,
                    "Initech",
                    "Initech asked for invoices by post; their TPS reports are due Fridays.",
                    "team",
                ),
            ],
        )
    conn.close()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nA double charge is refunded in full within five days.\n")
    (docs / "keys.md").write_text("# API keys\n\nRotate a leaked API key at once, then revoke the old one.\n")
    write_config(CONFIG)
    return tmp_path


def _only_json(res: Any) -> Any:
    assert res.exit_code == 0, res
    text = res.stdout
    assert text.strip(), "no output"
    return json.loads(text)  # raises if anything but one JSON document is on stdout


def _one_line_error(res: Any, code: int | None = None) -> str:
    assert res.exit_code != 0, res
    if code is not None:
        assert res.exit_code == code, res
    assert res.stdout == "", res.stdout
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


# --- --json is JSON, and nothing else --------------------------------------------------------------


def test_every_data_command_prints_only_json(workspace_files: Path, ctx_cli) -> None:
    summary = _only_json(ctx_cli("ingest", "--json"))
    assert summary["ok"] is True and summary["totals"]["new"] == 6
    hits = _only_json(ctx_cli("search", "refund", "--json"))
    assert isinstance(hits, list) and hits
    assembled = _only_json(ctx_cli("assemble", "refund for a double charge", "--json"))
    assert assembled["trace_id"] and assembled["blocks"]
    trace = _only_json(ctx_cli("replay", assembled["trace_id"], "--json"))
    assert trace["id"] == assembled["trace_id"] and trace["context"] == assembled["context"]
    rerun = _only_json(ctx_cli("replay", assembled["trace_id"], "--rerun", "--json"))
    assert rerun["identical"] is True
    traces = _only_json(ctx_cli("traces", "--json"))
    assert [t["id"] for t in traces][-1] == assembled["trace_id"]
    sources = _only_json(ctx_cli("sources", "--json"))
    assert {s["name"] for s in sources} == {"tickets", "crm", "docs"}
    status = _only_json(ctx_cli("status", "--json"))
    assert status["documents"] == 6 and status["traces"] == 2
    doctor = _only_json(ctx_cli("doctor", "--json"))
    assert doctor["ok"] is True


def test_json_stays_clean_with_the_real_model_in_a_fresh_process(workspace_files: Path) -> None:
    # A fresh process catches anything a heavy import (torch, transformers, chromadb) prints to stdout.
    config = workspace_files / "ctx.toml"
    config.write_text(config.read_text().replace('embedder = "none"', 'embedder = "minilm"'))
    proc = subprocess.run(
        [sys.executable, "-c", "from ctx.cli import main; main()", "ingest", "--json"],
        cwd=workspace_files,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["model_id"] != "none"
    assert summary["totals"]["chunks_embedded"] > 0


# --- errors are one line with an exit code ----------------------------------------------------------


def test_unknown_trace_id_exits_3(workspace_files: Path, ctx_cli) -> None:
    line = _one_line_error(ctx_cli("replay", "nope-nope-nope", ok=False), 3)
    assert "no trace" in line
    line = _one_line_error(ctx_cli("replay", "nope-nope-nope", "--json", ok=False), 3)
    assert "no trace" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["search", ""], ["query is empty"]),
        (["search", "   ", "--json"], ["query is empty"]),
        (["assemble", ""], ["query is empty"]),
        (["assemble", "refunds", "--budget", "-5"], ["--budget", "0 or more"]),
        (["assemble", "refunds", "--source", "nope", "--json"], ["unknown source", "nope"]),
        (["search", "refunds", "--source", "nope"], ["unknown source", "nope"]),
        (["assemble", "refunds", "--format", "xml"], ["unknown format", "xml", "markdown"]),
        (["ingest", "unknown-source"], ["unknown source", "unknown-source"]),
        (["ingest", "docs", "unknown-source", "--json"], ["unknown source", "unknown-source"]),
        (["search"], ["Missing argument", "query"]),
        (["search", "refunds", "--limit", "0"], ["--limit"]),
    ],
    ids=lambda v: (
        " ".join(v) if isinstance(v, list) and v and v[0] in ("search", "assemble", "ingest") else ""
    ),
)
def test_bad_input_is_one_line_exit_2(
    workspace_files: Path, ctx_cli, args: list[str], words: list[str]
) -> None:
    line = _one_line_error(ctx_cli(*args, ok=False), 2)
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line


def test_failed_ingest_of_unknown_source_changes_nothing(workspace_files: Path, ctx_cli) -> None:
    ctx_cli("ingest", "docs", "unknown-source", ok=False)
    status = ctx_cli("status", "--json").json()
    assert status["documents"] == 0 and status["runs"] == 0


def test_a_failing_source_still_prints_only_json_and_exits_1(workspace_files: Path, ctx_cli) -> None:
    with sqlite3.connect(workspace_files / "crm.db") as conn:
        conn.execute("drop table accounts")
    conn.close()
    res = ctx_cli("ingest", "--json", ok=False)
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert summary["ok"] is False
    per = {s["source"]: s for s in summary["sources"]}
    assert "no such table" in per["crm"]["error"]
    assert per["tickets"]["error"] is None and per["tickets"]["new"] == 2
    sources = {s["name"]: s for s in ctx_cli("sources", "--json").json()}
    assert sources["crm"]["stale"] is True and "no such table" in sources["crm"]["last_error"]
    assert sources["tickets"]["stale"] is False


# --- budget 0 --------------------------------------------------------------------------------------


def test_budget_zero_succeeds_empty_with_every_candidate_dropped(workspace_files: Path, ctx_cli) -> None:
    ctx_cli("ingest", "--json")
    plain = ctx_cli("assemble", "refund for a double charge", "--budget", "0")
    assert plain.stdout == ""
    out = ctx_cli("assemble", "refund for a double charge", "--budget", "0", "--json").json()
    assert out["context"] == "" and out["tokens"] == 0 and out["blocks"] == []
    trace = ctx_cli("replay", out["trace_id"], "--json").json()
    candidates = {c["chunk_id"] for c in trace["candidates"]}
    assert len(candidates) >= 2
    assert not any(c["kept"] for c in trace["candidates"])
    dropped = {d["chunk_id"] for d in out["degradations"] if d["kind"] == "dropped"}
    assert dropped == candidates
    assert all(d["kind"] == "dropped" for d in out["degradations"])


# --- help and import weight --------------------------------------------------------------------------


def _commands() -> dict[str, Any]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_the_core_commands_are_registered() -> None:
    names = set(_commands())
    assert {
        "init",
        "ingest",
        "search",
        "assemble",
        "replay",
        "traces",
        "sources",
        "status",
        "doctor",
    } <= names
    registered = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert registered <= names


def _all_commands() -> list[str]:
    """Every command, with the subcommands of groups (``daemon start``) as their own entries."""
    out = []
    for name, command in _commands().items():
        out.append(name)
        out += [f"{name} {sub}" for sub in getattr(command, "commands", {})]
    return sorted(out)


@pytest.mark.parametrize("name", _all_commands())
def test_every_command_help_has_an_example(name: str, ctx_cli) -> None:
    res = ctx_cli(*name.split(), "--help")
    assert "Usage:" in res.stdout
    assert "Example:" in res.stdout, f"`ctx {name} --help` has no example"
    assert res.stderr == ""


def test_root_help_works(ctx_cli) -> None:
    res = ctx_cli("--help")
    for name in ("ingest", "assemble", "replay"):
        assert name in res.stdout


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import json, sys\n"
        "import ctx.cli\n"
        "heavy = ['chromadb', 'torch', 'sentence_transformers', 'sqlite_utils', 'transformers', 'numpy']\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


# --- jsonl and sql through the CLI, and the sources listing -------------------------------------------


def test_sources_before_and_after_the_first_sync(workspace_files: Path, ctx_cli) -> None:
    before = {s["name"]: s for s in ctx_cli("sources", "--json").json()}
    assert set(before) == {"tickets", "crm", "docs"}
    for row in before.values():
        assert row["stale"] is True
        assert row["last_success_at"] is None and row["staleness_s"] is None
        assert row["documents"] == 0 and row["chunks"] == 0 and row["quarantined"] == 0
    assert (
        before["tickets"]["freshness"] == "near_realtime" and before["tickets"]["criticality"] == "important"
    )
    assert before["crm"]["freshness"] == "batch" and before["crm"]["criticality"] == "enhancing"
    assert before["docs"]["criticality"] == "critical"
    assert before["tickets"]["max_staleness_s"] == 300.0 and before["crm"]["max_staleness_s"] == 86400.0

    summary = ctx_cli("ingest", "--json").json()
    per = {s["source"]: s for s in summary["sources"]}
    assert per["tickets"]["new"] == 2 and per["crm"]["new"] == 2 and per["docs"]["new"] == 2

    after = {s["name"]: s for s in ctx_cli("sources", "--json").json()}
    for name in ("tickets", "crm", "docs"):
        row = after[name]
        assert row["documents"] == 2
        assert row["chunks"] >= 2
        assert row["quarantined"] == 0
        assert row["stale"] is False
        assert row["last_success_at"] and row["last_error"] is None


def test_jsonl_and_sql_records_are_searchable_with_provenance(workspace_files: Path, ctx_cli) -> None:
    ctx_cli("ingest", "tickets", "crm", "--json")
    hits = ctx_cli("search", "TPS reports", "--json").json()
    assert hits[0]["source"] == "crm" and hits[0]["doc_key"] == "2" and hits[0]["title"] == "Initech"
    hits = ctx_cli("search", "pasted in a public repository", "--json").json()
    assert hits[0]["source"] == "tickets" and hits[0]["doc_key"] == "T-2" and hits[0]["title"] == "Key leak"
    out = ctx_cli("assemble", "enterprise plan renewal", "--source", "crm", "--json").json()
    assert {b["source"] for b in out["blocks"]} == {"crm"}
    assert out["blocks"][0]["document"] == "1"
    # docs was never ingested: only the two named sources are in the store.
    sources = {s["name"]: s["documents"] for s in ctx_cli("sources", "--json").json()}
    assert sources == {"tickets": 2, "crm": 2, "docs": 0}


@pytest.mark.parametrize("line", [
    r'{"id": "s1", "text": "lone \udcff here"}', r'{"id": "s\udcff1", "text": "fine"}',
    r'{"id": "s1", "text": "nul \u0000 here"}', '{"id": "s1", "text": "x", "n": 1e400}',
    '{"id": "s1", "text": "x", "n": 1%s}' % ("0" * 400), '{"id": "s1", "text": "x", "n": 1%s}' % ("0" * 5000),
], ids=["surrogate", "surrogate-id", "nul", "inf", "big-int", "huge-int"])
def test_push_of_an_unstorable_event_is_one_line_exit_2(tmp_path: Path, write_config, ctx_cli, line: str) -> None:
    """Issue 13: such an event was an exit 1 ("unexpected UnicodeEncodeError"); the request is refused whole,
    as the daemon refuses it (400), and nothing is queued."""
    write_config('[embedding]\nembedder = "none"\n\n[sources.sessions]\nkind = "events"\nmetadata_fields = ["n"]\n')
    feed = tmp_path / "feed.jsonl"
    feed.write_text(line + "\n", encoding="utf-8")
    message = _one_line_error(ctx_cli("push", "sessions", str(feed), ok=False), 2)
    assert message.startswith("error: ") and "unexpected" not in message, message
    assert ctx_cli("jobs", "--json").json() == []


@pytest.mark.parametrize("args", [["search", "a \udcff b"], ["assemble", "a \x00 b", "--json"],
                                  ["assemble", "refunds", "--param", "user=\udcff"]],
                         ids=["search", "assemble", "param"])
def test_unstorable_text_in_arguments_is_one_line_exit_2(workspace_files: Path, ctx_cli, args: list[str]) -> None:
    # A command line that is not UTF-8 reaches Python as lone surrogates (os.fsdecode).
    message = _one_line_error(ctx_cli(*args, ok=False), 2)
    assert message.startswith("error: invalid request: ") and "unexpected" not in message, message
