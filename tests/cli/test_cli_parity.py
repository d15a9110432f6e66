"""The CLI uses the daemon when one runs and runs in-process when none runs, and every command prints the
same either way: same exit code, same stdout bytes, same error line. Only what must differ between two
runs (new trace and job ids, timestamps, timings, staleness, the ``daemon`` key of status) is normalised.

Every mode starts from the same home (a snapshot taken after the first ingest), so state-changing
commands (assemble, replay --rerun, ingest) leave the same state behind in each and later listings
(traces, jobs) can be compared whole.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.helpers import FIXTURES

CONFIG = """
[daemon]
scheduler = false

[cache]
# Every mode starts from the snapshot's cached contexts: none may expire while the modes run (minutes
# on a loaded machine), or one mode gets a cache hit where the next one assembles afresh.
context_ttl = "1h"

[sources.docs]
kind = "files"
path = "docs"
include = ["api/**", "billing/**", "security/**"]  # 17 pages (one HTML, one reST): enough, and quicker to embed
criticality = "critical"

[sources.tickets]
kind = "jsonl"
path = "tickets.jsonl"
id_field = "id"
text_fields = ["subject", "body"]
title_field = "subject"
metadata_fields = ["status", "priority", "user_id", "created_at"]
tenant_field = "account"
mode = "append"
criticality = "enhancing"
max_staleness = "24h"

# No command passes --user: nothing is enrolled, and `ab` reports the same empty experiment either way.
[experiments.trial]
metric = "tokens"
variants.prod = { version = "prod", share = 0.5 }
variants.candidate = { version = "candidate", share = 0.5 }
"""

QUERY = "how do I rotate an API key after a leak?"
TENANT_QUERY = "refund for a double charge"
FIRST = "{first}"  # the trace assembled before the snapshot: the same id in every mode
LAST = "{last}"  # the trace this mode's `assemble --json` just made

# (arguments, expected exit code, how stdout is compared). Order matters: later commands see what earlier
# ones did. EXACT: the stdout bytes themselves, unnormalised (nothing in them may differ). SAME: byte for byte
# after the normaliser. TABLE: a rich table with a volatile cell (ms, seconds, staleness) whose width moves
# the columns: after the normaliser, runs of padding are collapsed too.
EXACT, SAME, TABLE = "exact", "same", "table"
COMMANDS: list[tuple[tuple[str, ...], int, str]] = [
    (("search", QUERY), 0, EXACT),
    (("search", QUERY, "--json"), 0, EXACT),
    (("search", QUERY, "--source", "tickets", "--tenant", "acme", "--json"), 0, EXACT),
    (("assemble", QUERY, "--json"), 0, SAME),
    (("assemble", QUERY), 0, EXACT),
    (("assemble", TENANT_QUERY, "-t", "acme"), 0, EXACT),
    (("assemble", TENANT_QUERY, "-t", "acme", "--budget", "300", "--format", "messages", "--json"), 0, SAME),
    (("replay", FIRST), 0, EXACT),
    (("replay", FIRST, "--json"), 0, EXACT),
    (("replay", LAST), 0, EXACT),
    (("replay", LAST, "--json"), 0, SAME),
    (("replay", FIRST, "--rerun", "--json"), 0, SAME),
    (("replay", FIRST, "--rerun"), 0, EXACT),
    (("traces", "--json"), 0, SAME),
    (("traces",), 0, TABLE),
    (("sources", "--json"), 0, SAME),
    (("sources",), 0, TABLE),
    (("status",), 0, SAME),
    (("status", "--json"), 0, SAME),
    (("quarantine", "--json"), 0, EXACT),
    (("quarantine", "--source", "tickets"), 0, EXACT),
    (("doctor", "--json"), 0, EXACT),
    (("doctor",), 0, EXACT),
    (("jobs", "--json"), 0, EXACT),
    (("ingest", "--json"), 0, SAME),
    (("ingest", "docs"), 0, TABLE),  # the run summary, on stderr
    (("jobs", "--json"), 0, SAME),
    (("jobs",), 0, SAME),
    (("search", QUERY, "--json"), 0, EXACT),
    (("cost", "--json"), 0, SAME),
    (("eval", str(FIXTURES / "eval" / "queries.jsonl"), "--json"), 0, SAME),  # its run id and time normalised
    (("alerts", "--all", "--json"), 0, EXACT),  # nothing past a warm-up or a bound yet: the same empty list
    (("alerts",), 0, EXACT),
    (("ab", "list", "--json"), 0, EXACT),
    (("ab", "report", "trial", "--json"), 0, SAME),
    (("ab", "report", "trial"), 0, EXACT),
    (("archive", "--json"), 0, EXACT),  # nothing superseded 30 days ago: the same empty pass
    (("versions", "list", "--json"), 0, EXACT),  # the one version, stored by the snapshot's first assemble
    (("versions", "list"), 0, EXACT),
    (("versions", "show", "--json"), 0, EXACT),  # the version in force
    (("versions", "show"), 0, EXACT),
    # Errors: the same exit code and the same one-line message on stderr.
    (("assemble", ""), 2, EXACT),
    (("search", "   ", "--json"), 2, EXACT),
    (("search", "x", "--tenant", ""), 2, EXACT),
    (("search", "x", "--source", "nope"), 2, EXACT),
    (("assemble", "q", "--budget", "-5"), 2, EXACT),
    (("assemble", "q", "--format", "yaml"), 2, EXACT),
    (("assemble", "q", "--as-of", "2999-01-01"), 2, EXACT),
    (("audit", "--window", "soon"), 2, EXACT),
    (("replay", "nonexistent-id"), 3, EXACT),
    (("replay", "nonexistent-id", "--rerun", "--json"), 3, EXACT),
    (("replay", "%%%%%%%%"), 3, EXACT),  # a prefix is text, not a LIKE pattern
    (("jobs", "nonexistent-id"), 3, EXACT),
    (("quarantine", "--source", "nope", "--json"), 2, EXACT),
    (("ingest", "nope", "--json"), 2, EXACT),
    (("cost", "--since", "soon"), 2, EXACT),
    (("versions", "show", "nope"), 3, EXACT),
    (("versions", "show", "a/b", "--json"), 2, EXACT),
    (("versions", "rollback", "prod"), 3, EXACT),
    (("versions", "label", "nope", "prod"), 3, EXACT),
    (("assemble", QUERY, "--version", "nope"), 3, EXACT),
    (("replay", FIRST, "--version", "nope"), 2, EXACT),
    (("eval", "no-such-queries.jsonl"), 2, EXACT),
    (("ab", "report", "nope"), 3, EXACT),
    (("ab", "report", "trial", "--since", "soon"), 2, EXACT),
]


class Normaliser:
    """Hides what must differ between two runs of the same commands, and nothing else.

    Only ids and timestamps minted during this run are replaced (ids by ``<new-id-N>`` in order of first
    appearance, so references between outputs still have to line up); the ids and timestamps in the
    snapshot, and dates in the ingested data, stay as they are.
    """

    UUID7 = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}\b")
    STAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?")
    RULES: ClassVar[list[tuple[re.Pattern[str], str]]] = [
        # timings and durations in JSON
        (re.compile(r'"([a-z_]+_ms|ms|seconds|embed_seconds|staleness_s|uptime_s)": [0-9.e+-]+'), r'"\1": <t>'),
        # the `daemon` key of status: null in-process, the daemon's description through it
        (re.compile(r'"daemon": (?:null|\{.*?\n  \})(?=\n\})', re.S), '"daemon": <daemon>'),
        # live breaker and cache figures: of the process that assembles (none in a fresh CLI process)
        (re.compile(r'"assembly": (?:null|\{.*?\n  \})(?=,\n  "daemon")', re.S), '"assembly": <live>'),
        # which cache tier answered: a CLI process starts with an empty L1, the daemon keeps its own
        (re.compile(r'"cache": "(?:l1|l2|miss|coalesced)"'), '"cache": <cache>'),
        (re.compile(r"\bcache (?:l1|l2|miss|coalesced) ·"), "cache <cache> ·"),
        (re.compile(r"(?<=│ )(?:l1|l2|miss|coalesced)(?= +│)"), "<cache>"),
        (re.compile(r'"status": "(?:ok|cached|coalesced)"'), '"status": <answered>'),
        (re.compile(r'"age_s": (?:null|[0-9.e+-]+)'), '"age_s": <t>'),
        (re.compile(r'"since": "[0-9T:.+-]+"'), '"since": <t>'),  # the cost window's start: now - 7d
        # text: assemble's trace line, status's source ages, the sources table's staleness, the ingest summary
        (re.compile(r"\b\d+\.\d ms\b"), "<t> ms"),
        (re.compile(r"\(\d+s old,"), "(<t>s old,"),
        (re.compile(r"│ \d+s / (\d+s +│)"), r"│ <t>s / \1"),
        (re.compile(r"\b\d+\.\d{2}s\b"), "<t>s"),
    ]
    # the last cell of a row of the traces table (ms) and of the ingest summary (seconds)
    LAST_CELL = re.compile(r"(│ +)\d+\.\d+( +│)$", re.M)
    PADDING = re.compile(r"(?<=\S) {2,}|(?<=[│┃]) {2,}")
    RULE = re.compile(r"[━─]+")

    def __init__(self, since_ms: int) -> None:
        self.since_ms = since_ms
        self.ids: dict[str, str] = {}

    def _id(self, match: re.Match[str]) -> str:
        value = match.group(0)
        if int(value[:8] + value[9:13], 16) < self.since_ms:  # a UUIDv7 starts with its creation time in ms
            return value
        return self.ids.setdefault(value, f"<new-id-{len(self.ids) + 1}>")

    def _stamp(self, match: re.Match[str]) -> str:
        value = match.group(0)
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # By the second, as the tables print them: nothing in the snapshot shares a second with a run.
        return "<now>" if int(when.timestamp()) >= self.since_ms // 1000 else value

    def __call__(self, text: str, table: bool = False) -> str:
        text = self.UUID7.sub(self._id, text)
        text = self.STAMP.sub(self._stamp, text)
        for pattern, replacement in self.RULES:
            text = pattern.sub(replacement, text)
        if table:
            text = self.LAST_CELL.sub(r"\1<t>\2", text)
            text = self.RULE.sub("─", self.PADDING.sub(" ", text))
        return text


class Output:
    def __init__(self, code: int, stdout: bytes, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"<exit {self.code} stdout {self.stdout[:300]!r} stderr {self.stderr[-500:]!r}>"


class Run:
    """Every command of COMMANDS in one mode, from the snapshot."""

    def __init__(self, name: str, run: Callable[..., Output], first: str) -> None:
        self.name = name
        self.since_ms = int(time.time() * 1000)
        self.outputs: list[Output] = []
        last = ""
        for args, code, _ in COMMANDS:
            argv = [a.replace(FIRST, first).replace(LAST, last) for a in args]
            out = run(*argv)
            assert out.code == code, (name, argv, out)
            if argv[0] == "assemble" and "--json" in argv and code == 0:
                last = json.loads(out.stdout)["trace_id"]
            self.outputs.append(out)
        self.normalise = Normaliser(self.since_ms)


def compare(expected: Run, actual: Run) -> None:
    """Same exit codes, same stdout (exactly, or after the normaliser), same stderr after the normaliser."""
    for (args, _, how), want, got in zip(COMMANDS, expected.outputs, actual.outputs, strict=True):
        where = f"`ctx {' '.join(args)}`: {expected.name} vs {actual.name}"
        assert got.code == want.code, where
        if how == EXACT:
            assert got.stdout == want.stdout, where
        table = how == TABLE
        want_out = expected.normalise(want.stdout.decode("utf-8"), table)
        got_out = actual.normalise(got.stdout.decode("utf-8"), table)
        assert got_out == want_out, (where, _first_difference(want_out, got_out))
        want_err = expected.normalise(want.stderr, table)
        got_err = actual.normalise(got.stderr, table)
        assert got_err == want_err, (where, _first_difference(want_err, got_err))
        if want.code != 0:
            assert got.stderr == want.stderr, where
            assert want.stdout == b"", where
            lines = want.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (where, want.stderr)


def _first_difference(a: str, b: str) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False)):
        if x != y:
            return f"line {i + 1}:\n- {x}\n+ {y}"
    return f"lengths differ: {len(a)} vs {len(b)}"


@pytest.fixture
def parity_home(tmp_path: Path, docs_dir: Path, write_config: Any, ctx_cli: Any, ctx_env: dict[str, str],
                monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, Callable[[], None]]:
    # Wide enough that no table wraps, the same in this process and in subprocesses (rich reads COLUMNS).
    monkeypatch.setenv("COLUMNS", "400")
    shutil.copy(FIXTURES / "tickets.jsonl", tmp_path / "tickets.jsonl")
    config = write_config(CONFIG)
    summary = ctx_cli("--config", str(config), "ingest", "--json").json()
    assert summary["ok"] and summary["model_id"] != "none", summary  # the real model: the end-to-end path
    assert summary["totals"]["new"] == 17 + 60 and summary["totals"]["quarantined"] == 3, summary
    first = ctx_cli("--config", str(config), "assemble", QUERY, "--json").json()["trace_id"]
    home = Path(ctx_env["CTX_HOME"])
    snapshot = tmp_path / "snapshot"
    shutil.copytree(home, snapshot)
    time.sleep(1.01 - time.time() % 1)  # so that no run starts in the second the snapshot was made in

    def restore() -> None:
        shutil.rmtree(home)
        shutil.copytree(snapshot, home)

    return config, first, restore


def test_every_command_prints_the_same_with_or_without_the_daemon(parity_home: Any, ctx_cli: Any,
                                                                   daemon: Any) -> None:
    config, first, restore = parity_home

    def in_process(*args: str) -> Output:
        res = ctx_cli("--config", str(config), *args, ok=False)
        return Output(res.exit_code, res.stdout_bytes, res.stderr)

    # 1. No daemon: every command runs in this process.
    assert ctx_cli("--config", str(config), "status", "--json").json()["daemon"] is None
    local = Run("in-process, no daemon", in_process, first)

    # 2. A daemon on the same home, back at the snapshot: the real CLI in a subprocess.
    restore()
    d = daemon(config=config)

    def subprocess_cli(*args: str) -> Output:
        # As d.cli, but stdout stays bytes (text mode would decode it and translate newlines).
        command = [sys.executable, "-m", "ctx.cli", "--config", str(config), *args]
        proc = subprocess.run(command, env={**d.env, "COLUMNS": "400"}, capture_output=True, timeout=120)
        return Output(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))

    assert json.loads(subprocess_cli("status", "--json").stdout)["daemon"]["pid"] == d.runtime.pid
    via_subprocess = Run("subprocess through the daemon", subprocess_cli, first)

    # 3. Back at the snapshot with a fresh daemon: the CLI in this process, which must now go through it.
    d.cli("daemon", "stop")
    restore()
    d.start()
    status = ctx_cli("--config", str(config), "status", "--json").json()
    assert status["daemon"] is not None and status["daemon"]["pid"] == d.runtime.pid
    via_daemon = Run("in-process through the daemon", in_process, first)

    # The CLI says it queued the job, in-process or through the daemon (the API's own default is "api").
    position = COMMANDS.index(((("jobs", "--json"), 0, SAME)), COMMANDS.index((("ingest", "docs"), 0, TABLE)))
    for run in (local, via_subprocess, via_daemon):
        jobs = json.loads(run.outputs[position].stdout)
        assert [j["trigger"] for j in jobs] == ["cli", "cli", "cli"], (run.name, jobs)

    compare(local, via_subprocess)
    compare(local, via_daemon)
