"""Format conversion and the files, jsonl and sql source kinds."""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from ctx.builtins import files_source
from ctx.builtins.files_source import FilesSettings, FilesSource
from ctx.builtins.jsonl_source import JsonlSettings, JsonlSource
from ctx.builtins.sql_source import SqlSettings, SqlSource, connect_read_only
from ctx.errors import SourceError
from ctx.ingest.formats import format_for_path, to_text
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected

CTX = FetchContext(name="test")


# --- formats -----------------------------------------------------------------


def test_markdown_title_is_first_h1_outside_code() -> None:
    raw = "```\n# not a title\n```\n\nintro\n\n# Real Title\n\n## Sub\n"
    assert to_text(raw, "markdown") == (raw, "Real Title")
    assert to_text("no heading", "markdown") == ("no heading", None)


def test_text_is_unchanged() -> None:
    assert to_text("  plain\r\ntext ", "text") == ("  plain\r\ntext ", None)


def test_rst_headings_follow_order_of_adornment_styles() -> None:
    raw = textwrap.dedent(
        """\
        =========
        The Guide
        =========

        Intro text.

        Install
        -------

        Run it::

            pip install ctx
            ctx init

        Details
        ~~~~~~~

        .. code-block:: python
           :linenos:

           print('hi')

        Usage
        -----

        Done.
        """
    )
    text, title = to_text(raw, "rst")
    assert title == "The Guide"
    lines = text.splitlines()
    assert "# The Guide" in lines
    assert "## Install" in lines
    assert "### Details" in lines
    assert "## Usage" in lines
    assert "Run it:" in lines
    assert "```\npip install ctx\nctx init\n```" in text
    assert "```python\nprint('hi')\n```" in text
    assert "=========" not in text and "-------" not in text


def test_html_to_markdown_with_table_and_title() -> None:
    raw = """<html><head><title>Pricing</title><style>p { color: red }</style></head>
    <body><script>alert('x')</script><h1>Plans</h1><p>Pick <b>one</b>.</p>
    <table><tr><th>Plan</th><th>Price</th></tr><tr><td>Pro</td><td>$10</td></tr></table></body></html>"""
    text, title = to_text(raw, "html")
    assert title == "Pricing"
    assert text.startswith("# Plans")
    assert "Pick **one**." in text
    assert "| Plan | Price |" in text and "| Pro | $10 |" in text
    assert "alert" not in text and "color" not in text and "Pricing" not in text


def test_html_title_falls_back_to_h1() -> None:
    assert to_text("<h1>Hello <i>there</i></h1><p>x</p>", "html")[1] == "Hello there"
    assert to_text("<p>x</p>", "html")[1] is None


def test_json_pretty_printed_in_fence() -> None:
    text, title = to_text('{"a": [1, 2], "b": "é"}', "json")
    assert text == '```json\n{\n  "a": [\n    1,\n    2\n  ],\n  "b": "é"\n}\n```'
    assert title is None


def test_malformed_json_names_position() -> None:
    with pytest.raises(ValueError, match=r"^malformed JSON: Expecting value at line 3 column 5$"):
        to_text("[\n  1,\n    ]", "json")


def test_jsonl_records_and_bad_line() -> None:
    text, _ = to_text('{"a": 1}\n\n{"b": 2}\n', "jsonl")
    assert text == '{\n  "a": 1\n}\n\n{\n  "b": 2\n}'
    with pytest.raises(ValueError, match="line 2"):
        to_text('{"a": 1}\n{oops\n', "jsonl")


def test_csv_rows_become_paragraphs() -> None:
    raw = 'name,plan,notes\nAda,pro,"likes ""quotes"", commas"\nBob,free,\n'
    text, title = to_text(raw, "csv")
    assert text == 'name: Ada\nplan: pro\nnotes: likes "quotes", commas\n\nname: Bob\nplan: free'
    assert title is None


def test_code_is_fenced_with_language_and_safe_fence() -> None:
    assert to_text("print(1)\n", "code:python") == ("```python\nprint(1)\n```", None)
    text, _ = to_text('s = """```"""', "code:python")
    assert text.startswith("````python\n") and text.endswith("\n````")


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        to_text("x", "pdf")


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("README.md", "markdown"),
        ("docs/a.MARKDOWN", "markdown"),
        ("x.mdx", "markdown"),
        ("notes.txt", "text"),
        ("guide.rst", "rst"),
        ("page.htm", "html"),
        ("page.html", "html"),
        ("data.json", "json"),
        ("data.ndjson", "jsonl"),
        ("data.jsonl", "jsonl"),
        ("table.csv", "csv"),
        ("src/app.py", "code:python"),
        ("web/app.tsx", "code:tsx"),
        ("main.go", "code:go"),
        ("lib.rs", "code:rust"),
        ("conf.yml", "code:yaml"),
        ("schema.sql", "code:sql"),
        ("Makefile", "text"),
        ("photo.jpeg", "text"),
    ],
)
def test_format_for_path(path: str, fmt: str) -> None:
    assert format_for_path(path) == fmt


# --- files source ------------------------------------------------------------


def _files(tmp_path: Path, **extra: object) -> FilesSettings:
    return FilesSettings.model_validate(
        {"kind": "files", "path": "corpus", **extra}, context={"base_dir": tmp_path}
    )


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for rel, body in {
        "b.md": "# B",
        "a.txt": "a",
        "docs/guide.rst": "Guide\n=====",
        "docs/api/ref.md": "# Ref",
        "docs/draft/wip.md": "wip",
        "src/app.py": "print(1)",
        ".git/config": "secret",
        "docs/.hidden.md": "hidden",
        "node_modules/pkg/index.js": "x",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    return root


def test_files_relative_path_resolves_against_config_dir(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert _files(tmp_path).path == (tmp_path / "corpus").resolve()


@pytest.mark.parametrize("value", ["missing", "corpus/a.txt"])
def test_files_path_must_be_existing_directory(tmp_path: Path, value: str) -> None:
    _tree(tmp_path)
    with pytest.raises(ValidationError, match=r"path does not exist|not a directory"):
        FilesSettings.model_validate({"path": value}, context={"base_dir": tmp_path})


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "empty pattern"),
        ("/etc/*", "absolute"),
        ("docs/[ab", "unbalanced '\\['"),
        ("docs/a]", "unbalanced '\\]'"),
        ("*.{md,txt", "unbalanced '{'"),
        ("*.md}", "unbalanced '}'"),
        ("a**b", "whole path component"),
        ("docs/**.md", "whole path component"),
    ],
)
def test_bad_globs_rejected(tmp_path: Path, pattern: str, problem: str) -> None:
    _tree(tmp_path)
    for key in ("include", "exclude"):
        with pytest.raises(ValidationError, match=f"bad glob .*{problem}"):
            _files(tmp_path, **{key: [pattern]})


def test_good_globs_accepted(tmp_path: Path) -> None:
    _tree(tmp_path)
    settings = _files(tmp_path, include=["**/*.{md,rst}", "[[:alpha:]]*.txt", "[]x]*", r"a\[b"])
    assert len(settings.include) == 4


def test_files_fetch_sorted_bytes_and_skips_hidden(tmp_path: Path) -> None:
    _tree(tmp_path)
    items = list(FilesSource().fetch(_files(tmp_path), CTX))
    keys = [r.key for r in items]
    assert keys == sorted(keys)
    assert ".git/config" not in keys and "docs/.hidden.md" not in keys
    assert "node_modules/pkg/index.js" in keys
    rec = next(r for r in items if r.key == "b.md")
    assert isinstance(rec, Record)
    assert rec.text == b"# B" and rec.title is None and rec.format == "markdown"
    assert rec.metadata["path"] == "b.md" and rec.metadata["size"] == 3
    assert rec.metadata["mtime"].endswith("+00:00")
    assert next(r for r in items if isinstance(r, Record) and r.key == "src/app.py").format == "code:python"


def test_files_include_and_exclude(tmp_path: Path) -> None:
    _tree(tmp_path)
    settings = _files(tmp_path, include=["docs/**/*.{md,rst}", "*.txt"], exclude=["docs/draft"])
    assert [r.key for r in FilesSource().fetch(settings, CTX)] == [
        "a.txt",
        "docs/api/ref.md",
        "docs/guide.rst",
    ]
    settings = _files(tmp_path, exclude=["node_modules", "**/*.py", "docs/**/ref.md"])
    keys = [r.key for r in FilesSource().fetch(settings, CTX)]
    assert keys == ["a.txt", "b.md", "docs/draft/wip.md", "docs/guide.rst"]


def test_files_symlinks_skipped_unless_followed(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.md").write_text("o")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    keys = [r.key for r in FilesSource().fetch(_files(tmp_path), CTX)]
    assert "linked/o.md" not in keys
    keys = [r.key for r in FilesSource().fetch(_files(tmp_path, follow_symlinks=True), CTX)]
    assert "linked/o.md" in keys
    assert not any(k.startswith("loop/") for k in keys)  # the loop is not walked forever


def test_unreadable_file_is_rejected_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path)
    real_open = open

    def fake_open(path: Path, *args: object, **kwargs: object) -> object:
        if Path(path).name == "a.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(files_source, "open", fake_open, raising=False)
    items = {r.key: r for r in FilesSource().fetch(_files(tmp_path), CTX)}
    assert items["a.txt"] == Rejected(key="a.txt", reason="unreadable: Permission denied")
    assert isinstance(items["b.md"], Record)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "a.txt").chmod(0)
    try:
        items = {r.key: r for r in FilesSource().fetch(_files(tmp_path), CTX)}
    finally:
        (root / "a.txt").chmod(0o644)
    assert isinstance(items["a.txt"], Rejected)
    assert items["a.txt"].reason.startswith("unreadable: ")
    assert isinstance(items["b.md"], Record)


def test_files_oversized_rejected_without_reading(tmp_path: Path) -> None:
    _tree(tmp_path)
    items = {r.key: r for r in FilesSource().fetch(_files(tmp_path, max_record_bytes=4), CTX)}
    assert isinstance(items["a.txt"], Record)
    assert isinstance(items["docs/guide.rst"], Rejected) and "too large" in items["docs/guide.rst"].reason


def test_files_root_gone_is_source_error(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    settings = _files(tmp_path)
    root.rename(tmp_path / "moved")
    with pytest.raises(SourceError, match="directory not found"):
        list(FilesSource().fetch(settings, CTX))


# --- jsonl source ------------------------------------------------------------


def _jsonl(tmp_path: Path, data: bytes, **extra: object) -> list[Record | Rejected]:
    (tmp_path / "data.jsonl").write_bytes(data)
    settings = JsonlSettings.model_validate({"path": "data.jsonl", **extra}, context={"base_dir": tmp_path})
    return list(JsonlSource().fetch(settings, CTX))


def test_jsonl_records_fields_and_metadata(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "title": "T", "body": "Hello", "extra": "more", "tags": ["a"], "org": "acme", "x": 1},
        {"id": "b2", "body": "", "extra": ""},
    ]
    data = b"\xef\xbb\xbf" + b"\n".join(json.dumps(x).encode() for x in lines) + b"\n\n   \n"
    items = _jsonl(
        tmp_path,
        data,
        text_fields=["body", "extra"],
        title_field="title",
        metadata_fields=["tags", "missing"],
        tenant_field="org",
    )
    assert items == [
        Record(
            key="1", text="Hello\n\nmore", title="T", metadata={"tags": ["a"], "org": "acme"}, format="text"
        ),
        Record(key="b2", text="", title=None, metadata={}, format="text"),
    ]


def test_jsonl_rejections(tmp_path: Path) -> None:
    data = b"\n".join(
        [
            b'{"id": 1, "body": "ok"}',
            b'{"id": 2, "body": ',
            b"[1, 2]",
            b'{"body": "no id"}',
            b'{"id": 5, "text": "wrong field"}',
            b'{"id": 6, "body": "caf\xe9"}',
            b'{"id": 7, "body": NaN}',
            b'{"id": 8, "body": 42}',
        ]
    )
    items = _jsonl(tmp_path, data, text_fields=["body"])
    assert isinstance(items[0], Record) and items[0].text == "ok"
    rejected = [(r.key, r.reason) for r in items[1:] if isinstance(r, Rejected)]
    assert len(rejected) == len(items) - 1
    assert rejected[0][0] == "line:2" and rejected[0][1].startswith("malformed JSON on line 2: ")
    assert isinstance(items[1], Rejected) and items[1].raw == '{"id": 2, "body": '
    assert rejected[1] == ("line:3", "line 3 is not a JSON object")
    assert rejected[2] == ("line:4", "missing field 'id'")
    assert rejected[3] == ("5", "missing field 'body'")
    assert rejected[4] == ("line:6", "line 6 is not valid UTF-8")
    assert rejected[5][0] == "line:7" and "NaN" in rejected[5][1]
    assert rejected[6][0] == "8" and rejected[6][1].startswith("missing field 'body'")


def test_jsonl_path_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="path does not exist"):
        JsonlSettings.model_validate({"path": "nope.jsonl"}, context={"base_dir": tmp_path})
    with pytest.raises(ValidationError, match="not a file"):
        JsonlSettings.model_validate({"path": "."}, context={"base_dir": tmp_path})


def test_jsonl_file_gone_is_source_error(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"id": 1, "text": "x"}\n')
    settings = JsonlSettings.model_validate({"path": "data.jsonl"}, context={"base_dir": tmp_path})
    (tmp_path / "data.jsonl").unlink()
    with pytest.raises(SourceError):
        list(JsonlSource().fetch(settings, CTX))


# --- sql source --------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, name TEXT, notes TEXT, org TEXT, score REAL)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
            [
                (1, "Ada", "likes tea", "acme", 1.5),
                (2, "Bob", None, "beta", None),
                (None, "Ghost", "x", "acme", 0),
            ],
        )
    conn.close()
    return path


def _sql(tmp_path: Path, **extra: object) -> SqlSettings:
    return SqlSettings.model_validate({"database": "crm.db", **extra}, context={"base_dir": tmp_path})


def test_sql_rows_become_records(tmp_path: Path, db: Path) -> None:
    settings = _sql(
        tmp_path,
        query="SELECT * FROM t ORDER BY id",
        text_columns=["name", "notes"],
        title_column="name",
        metadata_columns=["score"],
        tenant_field="org",
    )
    items = list(SqlSource().fetch(settings, CTX))
    assert items[0] == Rejected(key="row:1", reason="NULL or empty id column 'id'")
    assert items[1] == Record(
        key="1", text="name: Ada\nnotes: likes tea", title="Ada", metadata={"score": 1.5, "org": "acme"}
    )
    assert isinstance(items[2], Record) and items[2].text == "name: Bob"


def test_sql_single_text_column_is_plain(tmp_path: Path, db: Path) -> None:
    settings = _sql(
        tmp_path, query="WITH x AS (SELECT id, notes AS text FROM t) SELECT * FROM x WHERE id = 1"
    )
    items = list(SqlSource().fetch(settings, CTX))
    assert items == [Record(key="1", text="likes tea", title=None, metadata={})]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("DELETE FROM t", "not DELETE"),
        ("  -- tidy\n update t set name = 'x'", "not UPDATE"),
        ("SELECT 1; DROP TABLE t", "single statement"),
        ("WITH x AS (SELECT 1) DELETE FROM t", "not DELETE"),
        ("PRAGMA writable_schema = 1", "not PRAGMA"),
        ("", "empty query"),
    ],
)
def test_sql_write_queries_rejected_at_config_time(
    tmp_path: Path, db: Path, query: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        _sql(tmp_path, query=query)


def test_sql_read_queries_accepted(tmp_path: Path, db: Path) -> None:
    for query in [
        "select 'a;b' as x, replace(name, 'a', 'b') from t;",
        "/* c */ WITH RECURSIVE n(i) AS (SELECT 1) SELECT i FROM n",
    ]:
        assert _sql(tmp_path, query=query).query == query.strip()


def test_sql_connection_is_read_only(db: Path) -> None:
    conn = connect_read_only(db)
    try:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM t")
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("CREATE TEMP TABLE scratch (x)")
    finally:
        conn.close()
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (3,)
    check.close()


def test_sql_missing_column_and_bad_query_are_source_errors(tmp_path: Path, db: Path) -> None:
    with pytest.raises(SourceError, match="column 'body' is not in the query result"):
        list(SqlSource().fetch(_sql(tmp_path, query="SELECT id, name FROM t", text_columns=["body"]), CTX))
    with pytest.raises(SourceError, match="query failed: no such table: nope"):
        list(SqlSource().fetch(_sql(tmp_path, query="SELECT * FROM nope"), CTX))


def test_sql_database_must_be_sqlite(tmp_path: Path) -> None:
    (tmp_path / "crm.db").write_text("not a database at all")
    with pytest.raises(ValidationError, match="not a SQLite database"):
        _sql(tmp_path, query="SELECT 1")
