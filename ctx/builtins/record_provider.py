"""The ``record`` provider: a structured lookup, one read-only parameterised SQL query per request.

Named parameters (``:user``, ``:session``, ``:tenant``, ``:query`` or any ``--param NAME=VALUE``)
are bound from the request, never spliced into the SQL. The database is opened read-only, and a
query still running when the deadline passes is interrupted inside SQLite, not just abandoned.
"""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ctx.assemble.provider import BaseProvider, ContextRequest, Deadline, ProviderError, Services, make_block
from ctx.builtins.sql_source import _text, check_query, connect_read_only, sqlite_file
from ctx.hookspecs import hookimpl
from ctx.models import Block
from ctx.settings import Freshness, ProviderSettings
from ctx.store.catalog import now_iso

# Named parameters outside quoted strings: ``:name``.
_PARAM = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<![:\w]):([A-Za-z_]\w*)")


def parameters(query: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.group(1) for m in _PARAM.finditer(query) if m.group(1)))


class RecordSettings(ProviderSettings):
    kind: Literal["record"] = "record"
    freshness: Freshness = Freshness.near_realtime
    database: Path
    query: str = Field(description="one SELECT with named parameters, e.g. where id = :user")
    key_column: str | None = Field(default=None, description="names each row in provenance (default: row n)")
    title: str = "record"
    max_rows: int = Field(default=20, ge=1, le=10_000)

    @field_validator("database", mode="before")
    @classmethod
    def _database(cls, value: Any, info: ValidationInfo) -> Path:
        return sqlite_file(value, info)

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return check_query(value)


class RecordProvider(BaseProvider):
    settings: RecordSettings

    def needs(self) -> tuple[str, ...]:
        return parameters(self.settings.query)

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        # The tenant always: a query that forgets to bind it must still never share one tenant's cached
        # rows with another tenant's request.
        return (*((name, request.value(name)) for name in self.needs()), request.tenant)

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]:
        values = {name: request.value(name) for name in self.needs()}
        rows = await self.services.run_sync(self._query, values, deadline)
        stamp = now_iso()
        s = self.settings
        blocks = []
        for n, row in enumerate(rows, 1):
            key = _text(row.get(s.key_column)) if s.key_column else None
            text = "\n".join(f"{col}: {_text(value)}" for col, value in row.items() if value is not None)
            blocks.append(make_block(self.name, key or f"row {n}", s.title, text, score=1.0 / n, as_of=stamp,
                                     tenant=request.tenant))
        return blocks

    def _query(self, values: dict[str, Any], deadline: Deadline) -> list[dict[str, Any]]:
        s = self.settings
        try:
            conn = connect_read_only(s.database)
        except sqlite3.Error as exc:
            raise ProviderError(f"cannot open {s.database.name}: {exc}") from None
        # Interrupts the statement inside SQLite once the deadline has passed.
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline.at), 1000)
        with closing(conn):
            try:
                cursor = conn.execute(s.query, values)
                columns = [d[0] for d in cursor.description or []]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchmany(s.max_rows)]
            except sqlite3.Error as exc:
                raise ProviderError(f"query failed: {' '.join(str(exc).split())}") from None


class RecordKind:
    name = "record"
    settings_model = RecordSettings

    def create(self, name: str, settings: ProviderSettings, services: Services) -> RecordProvider:
        return RecordProvider(name, settings, services)


@hookimpl
def register_providers(register: Any) -> None:
    register(RecordKind())
