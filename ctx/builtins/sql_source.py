"""The "sql" source kind: rows of one read-only SELECT against a SQLite database."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ctx.errors import SourceError
from ctx.hookspecs import hookimpl
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected
from ctx.settings import SourceSettings, resolve_path

_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}
_MAIN_VERBS = {"SELECT", "VALUES", "INSERT", "UPDATE", "DELETE", "REPLACE"}


def _words(query: str) -> list[tuple[int, str]]:
    """Keywords and names outside strings and comments, with their parenthesis depth."""
    words: list[tuple[int, str]] = []
    depth, i, ended = 0, 0, False
    while i < len(query):
        char = query[i]
        if char in _QUOTES:
            end = query.find(_QUOTES[char], i + 1)
            while end != -1 and char != "[" and query[end + 1 : end + 2] == char:
                end = query.find(char, end + 2)  # a doubled quote is an escaped quote
            if end == -1:
                raise ValueError(f"unterminated {char} quote")
            i = end
        elif query.startswith("--", i):
            end = query.find("\n", i)
            i = len(query) if end == -1 else end
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = len(query) if end == -1 else end + 1
        elif char == ";":
            ended = True
        elif not char.isspace() and ended:
            raise ValueError("must be a single statement")
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char.isalpha() or char == "_":
            start = i
            while i + 1 < len(query) and (query[i + 1].isalnum() or query[i + 1] in "_$"):
                i += 1
            words.append((depth, query[start : i + 1].upper()))
        i += 1
    return words


def check_query(query: str) -> str:
    """Return ``query`` stripped if it is one read-only SELECT or WITH statement; else raise ValueError."""
    words = _words(query)
    if not words:
        raise ValueError("empty query")
    verb = words[0][1]
    if verb not in ("SELECT", "WITH"):
        raise ValueError(f"must be a single SELECT or WITH query, not {verb}")
    if verb == "WITH":
        # The CTE bodies sit inside parentheses; the first verb at depth 0 is what the statement does.
        main = next((w for d, w in words[1:] if d == 0 and w in _MAIN_VERBS), None)
        if main not in ("SELECT", "VALUES"):
            raise ValueError(f"a WITH query must end in SELECT, not {main or 'nothing'}")
    return query.strip()


def sqlite_file(value: Any, info: ValidationInfo) -> Path:
    """A ``database`` setting: an existing SQLite file, relative to ctx.toml."""
    path = resolve_path(value, info)
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    with open(path, "rb") as handle:
        header = handle.read(16)
    if header and header != b"SQLite format 3\x00":
        raise ValueError(f"not a SQLite database: {path}")
    return path


class SqlSettings(SourceSettings):
    """A SQLite database and the query whose rows become records."""

    kind: Literal["sql"] = "sql"
    database: Path
    query: str
    id_column: str = "id"
    text_columns: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    title_column: str | None = None
    metadata_columns: list[str] = Field(default_factory=list)

    @field_validator("database", mode="before")
    @classmethod
    def _database(cls, value: Any, info: ValidationInfo) -> Path:
        return sqlite_file(value, info)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return check_query(value)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open ``path`` so that no statement can write to it, whatever the query says."""
    conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=5)
    conn.execute("PRAGMA query_only = ON")  # belt and braces: mode=ro alone still allows temp writes
    return conn


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class SqlSource:
    """Runs the configured query on a read-only connection; each row is one record."""

    name = "sql"
    settings_model = SqlSettings

    def fetch(self, settings: SourceSettings, context: FetchContext) -> Iterator[Record | Rejected]:
        assert isinstance(settings, SqlSettings)
        if not settings.database.is_file():
            raise SourceError(f"source {context.name}: database not found: {settings.database}")
        try:
            conn = connect_read_only(settings.database)
        except sqlite3.Error as exc:
            raise SourceError(f"source {context.name}: cannot open {settings.database}: {exc}") from None
        # SQLite stores whatever bytes it is given as TEXT: one row that is not UTF-8 must not fail the whole
        # query. Its bytes are kept as surrogate escapes, which the record validation quarantines, row by row.
        conn.text_factory = lambda data: data.decode("utf-8", "surrogateescape")
        with closing(conn):
            try:
                cursor = conn.execute(settings.query)
                columns = [d[0] for d in cursor.description or []]
                self._check_columns(settings, columns, context.name)
                for number, row in enumerate(cursor, start=1):
                    yield self._record(dict(zip(columns, row, strict=True)), settings, number)
            except sqlite3.Error as exc:
                message = " ".join(str(exc).split())
                raise SourceError(f"source {context.name}: query failed: {message}") from None

    @staticmethod
    def _check_columns(settings: SqlSettings, columns: list[str], name: str) -> None:
        # A missing column breaks every row alike, so it is one error rather than N rejections.
        wanted = [settings.id_column, *settings.text_columns, *settings.metadata_columns]
        wanted += [c for c in (settings.title_column, settings.tenant_field) if c]
        for column in wanted:
            if column not in columns:
                raise SourceError(
                    f"source {name}: column {column!r} is not in the query result (has: {', '.join(columns)})"
                )

    @staticmethod
    def _record(row: dict[str, Any], settings: SqlSettings, number: int) -> Record | Rejected:
        key = _text(row[settings.id_column])
        if not key:
            return Rejected(key=f"row:{number}", reason=f"NULL or empty id column {settings.id_column!r}")
        values = [(c, _text(row[c])) for c in settings.text_columns]
        present = [(c, v) for c, v in values if v is not None]
        if not present:
            return Rejected(key=key, reason=f"NULL in text column {settings.text_columns[0]!r}")
        if len(settings.text_columns) == 1:
            text = present[0][1] or ""
        else:
            # Labelled lines keep a customer row readable once it is chunked and shown to a model.
            text = "\n".join(f"{c}: {v}" for c, v in present if v and v.strip())
        title = _text(row[settings.title_column]) if settings.title_column else None
        wanted = [*settings.metadata_columns, *([settings.tenant_field] if settings.tenant_field else [])]
        return Record(
            key=key,
            text=text,
            title=title if title and title.strip() else None,
            metadata={c: _jsonable(row[c]) for c in wanted},
            format="text",
        )


@hookimpl
def register_sources(register: Any) -> None:
    register(SqlSource())
