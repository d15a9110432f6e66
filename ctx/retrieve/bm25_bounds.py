"""Score bounds for exact top-n BM25 over FTS5: which rows can be left unscored without changing the top n.

FTS5's ``bm25()`` (ext/fts5/fts5_aux.c) scores a row as the sum, over the phrases of the MATCH
expression, of ``idf * f * (k1 + 1) / (f + k1 * (1 - b + b * D / avgdl))`` with ``k1 = 1.2``,
``b = 0.75``, ``f`` the phrase's count in the row and ``D`` the row's tokens over all columns;
``idf = log((N - n + 0.5) / (n + 0.5))``, raised to 1e-6 when not positive, where ``N`` is the
table's row count and ``n`` the rows matching the phrase. The fraction is below 1 in every row, so a
term adds less than its ceiling ``idf * (k1 + 1)`` to any score, and a row matching the set of terms T
scores less than the sum of T's ceilings.

A cover for a threshold is a list of term sets such that every T whose ceilings reach the threshold
contains one of them. Rows matching all terms of some set are scored exactly; every other row scores
below the threshold. So if the n-th best scored row reaches the threshold, the top n is exact
(MaxScore, Turtle & Flood 1995, with conjunctions as well as single terms).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

K1 = 1.2  # fts5_aux.c's constant; bm25() takes no argument to change it
# Ceilings summed in another order than FTS5 sums a score may round differently in the last bit; a sum
# taken this much larger can never be reached by a row it is meant to exclude.
SLACK = 1e-9
# FTS5's %_data rows for the averages record (the row count, then each column's token total) and the
# structure record (the index's segments).
_AVERAGES_ROWID = 1
_STRUCTURE_ROWID = 10


def phrase(term: str) -> str:
    """One query term as an FTS5 string: quoted, so user text can never inject FTS5 syntax."""
    return '"' + term.replace('"', '""') + '"'


def any_of(terms: Sequence[str]) -> str:
    return " OR ".join(phrase(t) for t in terms)


def index_state(db: sqlite3.Connection, fts: str = "chunks_fts") -> tuple[int, bytes] | None:
    """The row count bm25() divides by (xRowCount, from FTS5's averages record), and a signature that
    changes with every write to the index: the averages and structure records, which every flush of
    new or deleted rows rewrites (a new segment, a higher write counter). None for an empty index."""
    blocks = dict(db.execute(f"select id, block from {fts}_data where id in (?, ?)",
                             [_AVERAGES_ROWID, _STRUCTURE_ROWID]).fetchall())
    averages = blocks.get(_AVERAGES_ROWID)
    if not averages:
        return None
    return _varint(bytes(averages)), bytes(averages) + b"/" + bytes(blocks.get(_STRUCTURE_ROWID) or b"")


def _varint(data: bytes) -> int:
    """SQLite's varint, which FTS5 writes its records with: 7 bits a byte while the high bit says more
    follows, and a ninth byte that carries all 8."""
    value = 0
    for i in range(8):
        value = (value << 7) | (data[i] & 0x7F)
        if not data[i] & 0x80:
            return value
    return (value << 8) | data[8]


def phrase_hits(db: sqlite3.Connection, term: str, fts: str = "chunks_fts") -> int:
    """Rows matching the term's phrase, counted by FTS5 as bm25()'s xQueryPhrase counts them: the same
    tokenizer and stemmer, so no stem computed here can disagree with the index."""
    return int(db.execute(f"select count(*) from {fts} where {fts} match ?", [phrase(term)]).fetchone()[0])


def ceiling(rows: int, hits: int) -> float:
    """More than the term can add to any row's score: bm25()'s IDF, operation for operation, times k1 + 1."""
    idf = math.log((rows - hits + 0.5) / (hits + 0.5))
    return (idf if idf > 0.0 else 1e-6) * (K1 + 1.0)


class Overflow(Exception):
    """A cover would need more conjunctions than one MATCH expression should carry."""


def cover(ceilings: dict[str, float], threshold: float, cap: int) -> list[tuple[str, ...]]:
    """Term sets whose ceilings reach ``threshold``, such that every set of terms reaching it contains one.

    Depth first over the terms by falling ceiling: a set is emitted as soon as its sum reaches the
    threshold, and a branch ends when even all remaining terms would not reach it. Any T reaching the
    threshold contains the set found along T's own terms in that order. Raises Overflow past ``cap``."""
    order = sorted(ceilings, key=lambda t: -ceilings[t])  # sorted() is stable: query order among equals
    values = [ceilings[t] for t in order]
    rest = [sum(values[i:]) for i in range(len(values) + 1)]
    found: list[tuple[str, ...]] = []

    def walk(start: int, chosen: tuple[str, ...], total: float) -> None:
        for j in range(start, len(order)):
            if (total + rest[j]) * (1.0 + SLACK) < threshold:
                return
            if (total + values[j]) * (1.0 + SLACK) >= threshold:
                found.append((*chosen, order[j]))
                if len(found) > cap:
                    raise Overflow
            else:
                walk(j + 1, (*chosen, order[j]), total + values[j])

    walk(0, (), 0.0)
    return found


def tiers(ceilings: dict[str, float], threshold: float) -> list[tuple[str, ...]]:
    """The plain MaxScore cover, never too long: the lowest ceilings stay out while their sum is under
    ``threshold``, every other term is a set of its own."""
    out: set[str] = set()
    total = 0.0
    for term in sorted(ceilings, key=lambda t: ceilings[t]):
        if (total + ceilings[term]) * (1.0 + SLACK) >= threshold:
            break
        total += ceilings[term]
        out.add(term)
    return [(t,) for t in ceilings if t not in out]


def estimate(terms: Sequence[str], hits: dict[str, int], rows: int) -> float:
    """Rows matching all of ``terms``, as if terms fell independently: only to size a probe."""
    return rows * math.prod(hits[t] / rows for t in terms)


@dataclass(frozen=True, slots=True)
class Selection:
    """Rows to score for one query: those matching every term of at least one set."""

    terms: list[str]  # all of them, in query order: the phrase order FTS5 sums a score in
    sets: list[tuple[str, ...]]
    threshold: float  # every row left out scores below this

    def match(self) -> str:
        """The full query's phrases first and in its order, so FTS5 computes each returned row's score
        exactly as the full query does; then ``NOT`` the rows that match no set. A phrase under NOT is
        never positioned on a returned row, so it adds exactly 0.0 to that row's score. Every phrase
        costs bm25() a walk of its rows (its IDF), so the excluded rows are named with few: a row
        matching a term that is a set by itself is never excluded, so only the other terms are needed.
        (An empty phrase, such as ``"_"``, is never among them alone: it matches no row, so its ceiling
        is the highest and it is a set by itself before any other term is; FTS5 does not clear the
        positions under a NOT whose left side is such a phrase.)"""
        everything = any_of(self.terms)
        alone = {s[0] for s in self.sets if len(s) == 1}
        others = [t for t in self.terms if t not in alone]
        if not others:
            return everything  # every row is wanted: the plain query
        wanted = _trie(self.sets)
        if not self.sets:
            return f"({everything}) NOT ({any_of(others)})"  # nothing can reach the threshold
        return f"({everything}) NOT (({any_of(others)}) NOT ({wanted}))"

    def exact(self, ranked: Sequence[tuple[object, float]], n: int) -> bool:
        """Whether ``ranked`` (best first, bm25 ranks: negated scores) is the exact top n."""
        return len(ranked) == n and -ranked[-1][1] >= self.threshold


def _trie(sets: Sequence[tuple[str, ...]]) -> str:
    """The sets as one expression with shared prefixes written once, ``a AND (b OR c)`` for (a, b) and
    (a, c): each phrase in it costs bm25() a walk of its rows, and the cover's sets share prefixes."""
    heads: dict[str, list[tuple[str, ...]]] = {}
    for s in sets:
        heads.setdefault(s[0], []).append(s[1:])
    parts = []
    for head, tails in heads.items():
        if any(not t for t in tails):  # the head alone is a set: longer ones through it add no row
            parts.append(phrase(head))
        else:
            parts.append(f"({phrase(head)} AND ({_trie(tails)}))")
    return " OR ".join(parts)
