"""Data versions: the cold archive (`ctx archive`) and time travel (`ctx assemble --as-of`), lexical-only."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

OLD = "Refunds take five business days to reach the original card."
NEW = "Refunds now arrive instantly in the customer's wallet."
GONE = "Rotate the signing key from the security dashboard."
QUERY = "refunds card wallet rotate signing key"

BASE = """
[embedding]
embedder = "none"

[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture
def history(tmp_path: Path, write_config: Callable[[str], Path], ctx_cli: Any) -> Callable[[str], str]:
    """Ingest two docs, note the time, edit one and delete the other, ingest again; returns that time."""

    def make(archive: str = "") -> str:
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "refunds.md").write_text(f"# Refunds\n\n{OLD}\n")
        (docs / "keys.md").write_text(f"# Signing keys\n\n{GONE}\n")
        write_config(BASE + archive)
        ctx_cli("ingest", "--json")
        before = _now()
        (docs / "refunds.md").write_text(f"# Refunds\n\n{NEW}\n")
        (docs / "keys.md").unlink()
        totals = ctx_cli("ingest", "--json").json()["totals"]
        assert (totals["changed"], totals["deleted"]) == (1, 1)
        return before

    return make


def _assemble(ctx_cli: Any, *args: str) -> dict[str, Any]:
    return ctx_cli("assemble", QUERY, "--json", *args).json()  # type: ignore[no-any-return]


def _catalog(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "catalog.db")


def test_as_of_returns_the_old_text_and_the_deleted_document(history: Any, ctx_cli: Any) -> None:
    before = history()
    now = _assemble(ctx_cli)["context"]
    assert NEW in now and OLD not in now and GONE not in now
    then = _assemble(ctx_cli, "--as-of", before)
    assert OLD in then["context"] and NEW not in then["context"]
    assert GONE in then["context"]  # deleted after that moment: it is back as of then
    assert then["request"]["as_of"] == datetime.fromisoformat(before).isoformat(timespec="milliseconds")
    # An age means that long ago: a day ago there was no data at all yet.
    assert _assemble(ctx_cli, "--as-of", "1d")["blocks"] == []
    # A request without --as-of keeps exactly the request JSON it always had (traces, cache keys).
    assert "as_of" not in _assemble(ctx_cli)["request"]


def test_rerun_of_an_as_of_trace_reassembles_as_of_the_same_time(history: Any, ctx_cli: Any) -> None:
    before = history()
    trace_id = _assemble(ctx_cli, "--as-of", before)["trace_id"]
    report = ctx_cli("replay", trace_id, "--rerun", "--json").json()
    assert report["identical"] is True, report


def test_as_of_still_sees_archived_versions(history: Any, ctx_cli: Any, ctx_env: dict[str, str]) -> None:
    from ctx.store.archive import read_version

    before = history('\n[archive]\nenabled = false\nkeep = "0s"\n')  # archived by `ctx archive` only
    home = Path(ctx_env["CTX_HOME"])
    with _catalog(home) as db:
        assert db.execute("select count(*) from document_versions").fetchone()[0] == 3
    out = ctx_cli("archive", "--json").json()
    assert out["moved"] == 2 and out["files"] == 1 and out["bytes_after"] > 0
    archived = home / "archive" / out["file"]
    assert archived.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert len(gzip.decompress(archived.read_bytes())) == out["bytes_before"]
    with _catalog(home) as db:
        left = db.execute("select version, text from document_versions").fetchall()
        manifest = db.execute("select version, file, superseded_at, deleted_at from archived_versions").fetchall()
    assert [(version, NEW in text) for version, text in left] == [(2, True)]  # only the current version stays
    assert {row[1] for row in manifest} == {out["file"]} and all(row[2] for row in manifest)
    assert sum(1 for row in manifest if row[3]) == 1  # the deleted document's version records its deletion

    then = _assemble(ctx_cli, "--as-of", before)["context"]
    assert OLD in then and GONE in then and NEW not in then
    assert NEW in _assemble(ctx_cli)["context"]
    # An archived version reads like any other.
    from ctx.store.catalog import Catalog

    catalog = Catalog(home / "catalog.db")
    try:
        doc_id = next(r for r in catalog.db.execute("select doc_id from archived_versions where deleted_at is null"))[0]
        assert OLD in read_version(catalog, home, doc_id, 1)["text"]  # type: ignore[index]
    finally:
        catalog.close()
    again = ctx_cli("archive").stdout
    assert "moved 0 versions" in again and "2 versions in 1 files" in again


def test_an_archive_pass_that_dies_before_its_commit_loses_nothing(
        history: Any, ctx_cli: Any, ctx_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from ctx.store import archive
    from ctx.workspace import Workspace

    before = history('\n[archive]\nenabled = false\nkeep = "0s"\n')
    home = Path(ctx_env["CTX_HOME"])

    def crash(catalog: Any, rows: Any) -> None:
        raise RuntimeError("killed between the file and the commit")

    ws = Workspace.open("ctx.toml")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(archive, "record_manifest", crash)
            with pytest.raises(RuntimeError):
                ws.archive()
        with _catalog(home) as db:
            assert db.execute("select count(*) from document_versions").fetchone()[0] == 3
            assert db.execute("select count(*) from archived_versions").fetchone()[0] == 0
        [orphan] = list((home / "archive").iterdir())  # written and renamed, named by no manifest row
        assert OLD in _assemble(ctx_cli, "--as-of", before)["context"]
        old = orphan.stat().st_mtime - archive.ORPHAN_GRACE_S - 60
        os.utime(orphan, (old, old))
        out = ws.archive()
    finally:
        ws.close()
    assert out["moved"] == 2 and out["orphans_removed"] == 1 and not orphan.exists()
    assert sorted(p.name for p in (home / "archive").iterdir()) == [out["file"]]


TICKETS = [
    {"id": "acme-1", "account": "acme", "text": "Acme refund zephyrquartz approved after review."},
    {"id": "globex-1", "account": "globex", "text": "Globex refund marmalade approved after review."},
    {"id": "globex-2", "account": "globex", "text": "Globex refund octopus pending for the second invoice."},
]


def test_tenant_isolation_holds_as_of_a_past_time(tmp_path: Path, write_config: Any, ctx_cli: Any,
                                                  ctx_env: dict[str, str]) -> None:
    def write(rows: list[dict[str, str]]) -> None:
        (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write(TICKETS)
    write_config('[embedding]\nembedder = "none"\n\n[sources.tickets]\nkind = "jsonl"\npath = "tickets.jsonl"\n'
                 'tenant_field = "account"\n')
    ctx_cli("ingest", "--json")
    before = _now()
    write([{**TICKETS[0], "text": "Acme refund denied."}, TICKETS[1]])  # globex-2 deleted
    ctx_cli("ingest", "--json")
    query = "refund approved pending invoice"

    acme = ctx_cli("assemble", query, "--json", "--tenant", "acme", "--as-of", before).stdout
    assert "zephyrquartz" in acme and not any(w in acme for w in ("Globex", "marmalade", "octopus"))
    globex = ctx_cli("assemble", query, "--json", "--tenant", "globex", "--as-of", before).stdout
    assert "octopus" in globex and "zephyrquartz" not in globex
    shared = ctx_cli("assemble", query, "--json", "--as-of", before).json()
    assert shared["blocks"] == []  # without a tenant, shared data only: every ticket has one

    # A version written before versions recorded their tenant has none: it is never served.
    with _catalog(Path(ctx_env["CTX_HOME"])) as db:
        db.execute("update document_versions set tenant = null, format = null where key = 'globex-2'")
    for tenant in ([], ["--tenant", "acme"], ["--tenant", "globex"]):
        out = ctx_cli("assemble", query, "--json", "--as-of", before, *tenant).stdout
        assert "octopus" not in out


@pytest.mark.parametrize("value, message", [
    ("garbage", "expected an ISO-8601 time"),
    ("2999-01-01T00:00:00Z", "is in the future"),
    ("-3d", "expected an ISO-8601 time"),
    ("99999999999d", "before any data"),
])
def test_bad_as_of_values_are_one_line_errors(history: Any, ctx_cli: Any, value: str, message: str) -> None:
    history()
    out = ctx_cli("assemble", QUERY, "--as-of", value, ok=False)
    assert out.exit_code == 2 and message in out.stderr and out.stderr.count("\n") == 1, out
    assert "Traceback" not in out.stderr


def test_api_accepts_as_of_and_archives(history: Any, ctx_env: dict[str, str]) -> None:
    from starlette.testclient import TestClient

    from ctx.daemon.app import create_app
    from ctx.daemon.service import Service
    from ctx.settings import find_config, load_settings
    from ctx.store.writer import ThreadWriter
    from ctx.workspace import Workspace

    before = history()
    env = {**os.environ, **ctx_env}
    writer = ThreadWriter()
    ws = Workspace(load_settings(find_config("ctx.toml", env), env), env, writer)
    service = Service(ws)
    service.address = "unix:/test"
    service.start()
    headers = {"Authorization": "Bearer t0ken", "Host": "localhost"}
    try:
        with TestClient(create_app(service, "t0ken"), base_url="http://localhost") as api:
            then = api.post("/v1/assemble", json={"query": QUERY, "as_of": before}, headers=headers)
            assert then.status_code == 200 and OLD in then.json()["context"]
            bad = api.post("/v1/assemble", json={"query": QUERY, "as_of": "tomorrow"}, headers=headers)
            assert bad.status_code == 400 and "--as-of" in bad.json()["error"]["message"]
            moved = api.post("/v1/archive", headers=headers)
            assert moved.status_code == 200 and moved.json()["moved"] == 0  # keep: 30 days by default
    finally:
        service.stop(timeout=30)
        writer.close()
        ws.close()


def test_a_recreated_document_continues_its_history(history: Any, tmp_path: Path, ctx_cli: Any,
                                                    ctx_env: dict[str, str]) -> None:
    """Deleted then written again, a document gets the next version number: its first life stays readable."""
    before = history()
    between = _now()
    (tmp_path / "docs" / "keys.md").write_text("# Signing keys\n\nKeys are now managed by the platform team.\n")
    assert ctx_cli("ingest", "--json").json()["totals"]["new"] == 1
    with _catalog(Path(ctx_env["CTX_HOME"])) as db:
        versions = db.execute("select version, text from document_versions where key = 'keys.md' "
                              "order by version").fetchall()
    assert [v for v, _ in versions] == [1, 2] and GONE in versions[0][1]
    assert GONE in _assemble(ctx_cli, "--as-of", before)["context"]
    assert GONE not in _assemble(ctx_cli, "--as-of", between)["context"]  # deleted then
    assert GONE not in _assemble(ctx_cli)["context"]
