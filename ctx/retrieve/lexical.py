"""Lexical retrieval: FTS5 BM25 over chunks, querying only the terms that can tell chunks apart.

BM25 scores every chunk that matches any query term, so a term found in a third of the corpus costs
a third of the corpus per query while adding little to the ranking (its IDF is low). Such terms are
left out when rarer ones exist; ``retrieval.max_term_share`` sets where "common" starts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ctx.process.stopwords import STOPWORDS

if TYPE_CHECKING:
    from ctx.retrieve.hybrid import Filters
    from ctx.store.catalog import Catalog

_TERM = re.compile(r"\w+", re.UNICODE)
# Below this many chunks every term is cheap: pruning would only change rankings for nothing.
PRUNE_FROM_CHUNKS = 5000


def query_terms(text: str) -> list[str]:
    """Unique lowercase words, stop words left out unless the query has nothing else."""
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(text)))
    return [t for t in terms if t not in STOPWORDS] or terms


def fts_match(terms: list[str]) -> str:
    """Each term quoted and OR-ed: user text can never inject FTS5 syntax."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def fts_query(text: str) -> str:
    return fts_match(query_terms(text))


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import snowballstemmer

    # The same (original Porter) algorithm as FTS5's porter tokenizer, so stems match the index's terms.
    return snowballstemmer.stemmer("porter")


class Lexical:
    def __init__(self, catalog: Catalog, max_term_share: float = 0.1) -> None:
        self.catalog = catalog
        self.max_term_share = max_term_share

    def search(self, query: str, filters: Filters, n: int, tenants: bool = True) -> list[tuple[str, float]]:
        """Top ``n`` (chunk id, bm25) pairs; ``tenants`` says whether any tenant data exists to filter out."""
        terms = self.selective(query_terms(query))
        if not terms:
            return []
        match = fts_match(terms)
        db = self.catalog.db
        if filters.sources or tenants:
            where, params = sql_filters(filters)
            sql = (
                "select c.id, bm25(chunks_fts) as rank from chunks_fts join chunks c on c.rowid = chunks_fts.rowid "
                f"where chunks_fts match ? {where} order by rank limit ?"
            )
            return [(r[0], r[1]) for r in db.execute(sql, [match, *params, n])]
        # Nothing to filter on: rank inside the FTS index first and join only the top n.
        sql = (
            "select c.id, f.rank from (select rowid, rank from chunks_fts where chunks_fts match ? "
            "order by rank limit ?) f join chunks c on c.rowid = f.rowid order by f.rank"
        )
        return [(r[0], r[1]) for r in db.execute(sql, [match, n])]

    def selective(self, terms: list[str]) -> list[str]:
        """The terms worth scoring: common ones go when rarer ones exist, the rarest always stays."""
        if len(terms) <= 1:
            return terms
        total = self.catalog.chunk_count()
        if total < PRUNE_FROM_CHUNKS:
            return terms
        stems = _stemmer().stemWords(terms)
        frequency = {
            term: self.catalog.db.execute("select doc from chunks_fts_vocab where term = ?", [stem]).fetchone()
            for term, stem in zip(terms, stems, strict=True)
        }
        # A stem the index does not know (absent, or stemmed differently) is kept: absent terms cost nothing.
        docs = {t: (row[0] if row else 0) for t, row in frequency.items()}
        limit = self.max_term_share * total
        kept = [t for t in terms if docs[t] <= limit]
        return kept or [min(terms, key=lambda t: docs[t])]


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
