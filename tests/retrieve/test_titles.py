"""A document's title is searchable: words found only in a title reach the lexical leg, in new homes and
in homes made before titles were indexed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ctx.store.catalog import Catalog
from ctx.store.schema import migrations

RECORDS = [
    {"_id": "p1", "title": "Zanzibar: consistent global authorization",
     "text": "We describe the design of a system that stores access control lists for many services."},
    {"_id": "p2", "title": "Bigtable storage", "text": "A distributed store for structured data at scale."},
]

CONFIG = """
[embedding]
embedder = "none"

[sources.papers]
kind = "jsonl"
path = "papers.jsonl"
id_field = "_id"
title_field = "title"
"""


def test_a_word_only_in_the_title_finds_the_document(tmp_path: Path, ctx_cli: Callable[..., Any]) -> None:
    (tmp_path / "papers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (tmp_path / "ctx.toml").write_text(CONFIG)
    ctx_cli("ingest", "--json")
    hits = ctx_cli("search", "zanzibar authorization", "--json").json()
    assert [h["doc_key"] for h in hits] == ["p1"]
    assert hits[0]["lexical_rank"] == 1
    # The title is matched, not shown twice: the chunk's text is the document's text alone.
    assert "Zanzibar" not in hits[0]["text"]


def _home_before_titles(root: Path) -> Path:
    """A catalog with the schema as it was before titles were indexed, holding one document and its chunk."""
    path = root / "catalog.db"
    db = Database(sqlite3.connect(path))
    migrations.apply(db, stop_before="m011_chunk_titles_in_fts")
    assert "title" not in db.table("chunks").columns_dict
    db.table("documents").insert({"id": "d1", "source": "papers", "key": "p1", "title": RECORDS[0]["title"],
                                  "version": 1})
    db.table("chunks").insert({"id": "c1", "doc_id": "d1", "source": "papers", "version": 1, "ordinal": 0,
                               "heading": "", "text": RECORDS[0]["text"], "start": 0, "end": 10})
    db.conn.commit()
    db.conn.close()
    return path


def test_a_home_from_before_title_indexing_is_migrated_and_finds_titles(tmp_path: Path) -> None:
    path = _home_before_titles(tmp_path)

    catalog = Catalog(path)  # opening it applies the migration
    try:
        rows = catalog.db.execute("select c.id from chunks_fts f join chunks c on c.rowid = f.rowid "
                                  "where chunks_fts match 'zanzibar'").fetchall()
        assert rows == [("c1",)]
        # Text words are still found, and the index is in step with its table.
        assert catalog.db.execute("select count(*) from chunks_fts where chunks_fts match 'services'"
                                  ).fetchone()[0] == 1
        catalog.db.execute("insert into chunks_fts(chunks_fts) values('integrity-check')")
        # New writes keep the title (the triggers index it).
        catalog.db.execute("update chunks set title = 'Spanner' where id = 'c1'")
        assert catalog.db.execute("select count(*) from chunks_fts where chunks_fts match 'spanner'"
                                  ).fetchone()[0] == 1
        assert catalog.db.execute("select count(*) from chunks_fts where chunks_fts match 'zanzibar'"
                                  ).fetchone()[0] == 0
    finally:
        catalog.close()


class _KilledMidway(Database):
    """A connection whose migration dies after the index was dropped and before it is whole again."""

    def execute(self, sql: str, parameters: Any = None) -> Any:
        if sql.startswith("create trigger chunks_au"):
            raise sqlite3.OperationalError("killed")
        return super().execute(sql, parameters) if parameters is not None else super().execute(sql)


def test_a_migration_that_dies_midway_leaves_the_old_index_whole(tmp_path: Path) -> None:
    path = _home_before_titles(tmp_path)

    dying = _KilledMidway(sqlite3.connect(path))
    try:
        migrations.apply(dying)
    except sqlite3.OperationalError:
        pass
    dying.conn.close()
    after = Database(sqlite3.connect(path))
    # Nothing of it stayed: no title column, the old index still answers, and the migration is still to do.
    assert "title" not in after.table("chunks").columns_dict
    assert after.execute("select count(*) from chunks_fts where chunks_fts match 'services'").fetchone()[0] == 1
    assert "m011_chunk_titles_in_fts" not in {m.name for m in migrations.applied(after)}
    after.conn.close()

    catalog = Catalog(path)  # the next open completes it
    try:
        assert catalog.db.execute("select count(*) from chunks_fts where chunks_fts match 'zanzibar'").fetchone()[0] == 1
    finally:
        catalog.close()
