"""Lexical retrieval: FTS5 BM25 over chunks, the exact top n over every query term, fast at 100k chunks.

BM25 scores every chunk that matches any query term, so a term found in a third of the corpus costs a
third of the corpus per query while adding little to any score. Leaving such terms out is fast but
changes rankings, so instead rows are left unscored only when a bound proves they cannot reach the top
n (ctx.retrieve.bm25_bounds):

1. count each term's rows (FTS5 itself counts, as bm25() does; kept while the index is unchanged);
2. probe: the rows having the rarest terms, scored in full; their n-th best is a floor for the
   true n-th best;
3. score only the rows whose terms' ceilings (the most a term can add to any score) reach that floor,
   in one MATCH expression that gives each of them its full-query score to the bit.

Every other row scores below the floor, so the top n is the full query's: same chunks, same scores,
same order (ties by rowid). When no probe finds n rows the full query runs. ``retrieval.max_term_share``
is deprecated and ignored: nothing is left to tune between speed and results.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctx.process.stopwords import STOPWORDS
from ctx.retrieve.bm25_bounds import (
    SLACK,
    Overflow,
    Selection,
    any_of,
    ceiling,
    cover,
    estimate,
    index_state,
    phrase,
    phrase_hits,
    tiers,
)

if TYPE_CHECKING:
    from ctx.retrieve.hybrid import Filters
    from ctx.store.catalog import Catalog

_TERM = re.compile(r"\w+", re.UNICODE)
# Below this many chunks the full query is cheap: counting each term's rows would cost more than it saves.
PRUNE_FROM_CHUNKS = 5000


def query_terms(text: str) -> list[str]:
    """Unique lowercase words, stop words left out unless the query has nothing else."""
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(text)))
    return [t for t in terms if t not in STOPWORDS] or terms


def fts_match(terms: list[str]) -> str:
    """Each term quoted and OR-ed: user text can never inject FTS5 syntax."""
    return any_of(terms)


def fts_query(text: str) -> str:
    return fts_match(query_terms(text))


@dataclass
class LexicalCounts:
    """How searches were answered, for measuring the pruning (not exact under concurrent requests:
    plain increments, as a lock per search would cost more than the figures are worth)."""

    searches: int = 0
    pruned: int = 0  # answered from a selection of rows
    full: int = 0  # the probe found fewer than n rows: the full query ran


# The probe aims at this many times n rows: enough that n of them are likely found, few to score.
PROBE_ROWS = 4
# Conjunctions one MATCH expression may carry; past it a query falls back to single-term tiers.
MAX_SETS = 64
MAX_CACHED_TERMS = 50_000  # term row counts kept per index state (a few MB at most)


class Lexical:
    def __init__(self, catalog: Catalog, prune_from: int = PRUNE_FROM_CHUNKS) -> None:
        self.catalog = catalog
        self.prune_from = prune_from
        self.counts = LexicalCounts()
        self._hits: tuple[bytes, dict[str, int]] = (b"", {})

    def search(self, query: str, filters: Filters, n: int, tenants: bool = True) -> list[tuple[str, float]]:
        """Top ``n`` (chunk id, bm25) pairs, best first, exactly as FTS5's bm25() over every query term
        ranks them (ties by rowid); ``tenants`` says whether any tenant data exists to filter out."""
        terms = query_terms(query)
        if not terms or n < 1:
            return []
        self.counts.searches += 1
        # Every statement of one search reads the same snapshot: counts, probe and selection must all
        # describe one index for the bound to hold while an ingest commits beside it.
        with _snapshot(self.catalog.db.conn):
            return self._search(terms, filters, n, tenants)

    def _search(self, terms: list[str], filters: Filters, n: int, tenants: bool) -> list[tuple[str, float]]:
        stats = self.statistics(terms)
        if stats is not None:
            rows, hits = stats
            floor = self.floor(terms, hits, rows, filters, n, tenants)
            if floor is not None:
                selection = _selection(terms, {t: ceiling(rows, hits[t]) for t in terms}, floor)
                ranked = self.ranked(selection.match(), filters, n, tenants)
                # Always exact: the probe's n rows score at least ``floor`` in full, so each matches a
                # set and was scored. Checked anyway, as it costs nothing.
                if selection.exact(ranked, n):
                    self.counts.pruned += 1
                    return ranked
            self.counts.full += 1
        return self.ranked(fts_match(terms), filters, n, tenants)

    def floor(self, terms: list[str], hits: dict[str, int], rows: int, filters: Filters, n: int,
              tenants: bool) -> float | None:
        """A score the true n-th best reaches, from a cheap probe; None when the probe finds too few rows.

        Any n rows' n-th best is a floor for the n-th best of all, and so is the n-th best of their
        scores over some of the terms (a term's share of a score is never negative, and the same in
        both). First rows with all of the rarest terms and any other, each term once in the expression,
        so each gets its full score (summed in another order than the full query sums it, hence the
        slack); if too few rows have them, the rows of the rarest terms scored on those terms alone."""
        found = sorted((t for t in terms if hits[t]), key=lambda t: hits[t])
        if not found:
            return None
        size = 1
        while size < len(found) and estimate(found[:size + 1], hits, rows) >= PROBE_ROWS * n:
            size += 1
        probes = [" AND ".join(phrase(t) for t in found[:k]) + (f" AND ({any_of(found[k:])})" if found[k:] else "")
                  for k in range(size, 0, -1)]  # fewer terms, more rows, while too few rows have them all
        enough = next((j for j in range(1, len(found) + 1) if sum(hits[t] for t in found[:j]) >= PROBE_ROWS * n),
                      len(found))
        for match in [*probes, any_of(found[:enough])]:
            ranked = self.ranked(match, filters, n, tenants)
            if len(ranked) == n:
                return -ranked[-1][1] * (1.0 - SLACK)
        return None

    def statistics(self, terms: list[str]) -> tuple[int, dict[str, int]] | None:
        """The table's rows and each term's matching rows, or None when the full query is the one to run.

        Counting a common term's rows walks them all, so counts are kept for as long as the index is
        unchanged (its signature is part of the key); hot query words are then free."""
        if len(terms) < 2:
            return None
        db = self.catalog.db
        state = index_state(db.conn)
        if state is None or state[0] < self.prune_from:
            return None
        rows, signature = state
        known, counts = self._hits
        if known != signature or len(counts) > MAX_CACHED_TERMS:
            counts = {}
            self._hits = (signature, counts)  # one tuple assignment: threads never see a mixed pair
        for term in terms:
            if term not in counts:
                counts[term] = phrase_hits(db.conn, term)
        return rows, {t: counts[t] for t in terms}

    def ranked(self, match: str, filters: Filters, n: int, tenants: bool) -> list[tuple[str, float]]:
        """Rows of ``match`` by FTS5 bm25 (rank), rowid breaking ties, so every way of asking for the
        same ranking returns the same order."""
        db = self.catalog.db
        if filters.sources or tenants:
            where, params = sql_filters(filters)
            sql = (
                "select c.id, bm25(chunks_fts) as rank from chunks_fts join chunks c on c.rowid = chunks_fts.rowid "
                f"where chunks_fts match ? {where} order by rank, chunks_fts.rowid limit ?"
            )
            return [(r[0], r[1]) for r in db.execute(sql, [match, *params, n])]
        # Nothing to filter on: rank inside the FTS index first and join only the top n.
        sql = (
            "select c.id, f.rank from (select rowid, rank from chunks_fts where chunks_fts match ? "
            "order by rank, rowid limit ?) f join chunks c on c.rowid = f.rowid order by f.rank, f.rowid"
        )
        return [(r[0], r[1]) for r in db.execute(sql, [match, n])]


def sql_filters(filters: Filters) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if filters.tenant:
        clauses.append("(c.tenant is null or c.tenant = ?)")
        params.append(filters.tenant)
    else:
        clauses.append("c.tenant is null")
    if filters.sources:
        clauses.append("c.source in (%s)" % ",".join("?" * len(filters.sources)))
        params.extend(filters.sources)
    return "".join(" and " + c for c in clauses), params


def _selection(terms: list[str], ceilings: dict[str, float], threshold: float) -> Selection:
    try:
        return Selection(terms, cover(ceilings, threshold, MAX_SETS), threshold)
    except Overflow:
        return Selection(terms, tiers(ceilings, threshold), threshold)


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction, unless one is open already (then its snapshot is the one read)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("begin")
    try:
        yield
    finally:
        conn.execute("commit")  # only reads happened: nothing to keep or lose
