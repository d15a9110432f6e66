"""The pruned lexical leg returns exactly what FTS5's bm25() over every query term returns: the same chunks,
the same scores to the bit, the same order (ties by rowid), with and without tenant and source filters,
on a generated corpus with common and rare words, pruning switched on from the first chunk."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctx.retrieve.bm25_bounds import (
    SLACK,
    Overflow,
    Selection,
    ceiling,
    cover,
    index_state,
    phrase,
    phrase_hits,
    tiers,
)
from ctx.retrieve.hybrid import Filters
from ctx.retrieve.lexical import Lexical, query_terms
from ctx.services.assembly import retriever_for
from ctx.settings.pipeline import RetrievalSettings
from ctx.store.catalog import Catalog

# Zipf-like: the first words land in most chunks (the costly terms pruning exists for), the last in few.
VOCAB = [f"w{i}" for i in range(80)] + ["cell", "cells", "protein", "proteins", "foo_bar"]
ODD = ["_", "unknownword", "foo_bar", "the", "a", "cells", "x" * 40, "é"]
CHUNKS = 1500


def _text(rng: random.Random, words: int) -> str:
    weights = [1.0 / (i + 1) ** 0.9 for i in range(len(VOCAB))]
    return " ".join(rng.choices(VOCAB, weights, k=words))


def _corpus(path: Path, chunks: int = CHUNKS, seed: int = 3) -> Catalog:
    rng = random.Random(seed)
    catalog = Catalog(path)
    rows = [
        {
            "id": f"c{i:05d}", "doc_id": f"d{i // 3}", "source": rng.choice(["s1", "s2", "s3"]),
            "tenant": rng.choice([None, None, "a", "b"]), "version": 1, "ordinal": i % 3,
            "heading": _text(rng, rng.randint(0, 4)), "text": _text(rng, rng.randint(1, 60)),
        }
        for i in range(chunks)
    ]
    # A few exact duplicates, so equal scores exist and the tie order is tested too.
    rows += [dict(rows[i], id=f"dup{i}") for i in range(0, 60, 3)]
    catalog.db.table("chunks").insert_all(rows)
    return catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    return _corpus(tmp_path_factory.mktemp("exact") / "catalog.db")


def reference(catalog: Catalog, query: str, filters: Filters, n: int, tenants: bool) -> list[tuple[str, float]]:
    """The unpruned query, written out here rather than taken from the code under test."""
    terms = query_terms(query)
    if not terms:
        return []
    match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    clauses, params = [], []
    if filters.sources or tenants:
        clauses.append("(c.tenant is null or c.tenant = ?)" if filters.tenant else "c.tenant is null")
        params += [filters.tenant] if filters.tenant else []
        if filters.sources:
            clauses.append("c.source in (%s)" % ",".join("?" * len(filters.sources)))
            params += filters.sources
    where = "".join(" and " + c for c in clauses)
    sql = (f"select c.id, bm25(chunks_fts) as score from chunks_fts join chunks c on c.rowid = chunks_fts.rowid "
           f"where chunks_fts match ? {where} order by score, chunks_fts.rowid limit ?")
    return [(r[0], r[1]) for r in catalog.db.execute(sql, [match, *params, n])]


QUERIES = st.lists(st.sampled_from(VOCAB + ODD), min_size=1, max_size=7).map(" ".join)
FILTERS = st.builds(Filters, sources=st.sampled_from([None, ["s1"], ["s2", "s3"]]),
                    tenant=st.sampled_from([None, "a", "b"]))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES, filters=FILTERS, n=st.sampled_from([1, 3, 10, 40]), tenants=st.booleans())
def test_pruned_search_equals_the_full_query(catalog: Catalog, query: str, filters: Filters, n: int,
                                             tenants: bool) -> None:
    lexical = Lexical(catalog, prune_from=1)
    assert lexical.search(query, filters, n, tenants) == reference(catalog, query, filters, n, tenants)


def test_pruning_is_exercised_and_exact_on_many_queries(catalog: Catalog) -> None:
    """Not only that results agree, but that they came from a pruned selection most of the time: a leg
    that always ran the full query would pass the property test above and prune nothing."""
    rng = random.Random(11)
    lexical = Lexical(catalog, prune_from=1)
    for _ in range(300):
        query = " ".join(rng.sample(VOCAB, rng.randint(2, 6)))
        filters = Filters(tenant=rng.choice([None, "a"]), sources=rng.choice([None, ["s1", "s2"]]))
        assert lexical.search(query, filters, 10, True) == reference(catalog, query, filters, 10, True), query
    assert lexical.counts.searches == 300
    assert lexical.counts.pruned >= 200, lexical.counts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES, share=st.floats(0, 1), cap=st.sampled_from([2, 64]))
def test_a_selection_returns_exactly_its_rows_with_their_full_scores(catalog: Catalog, query: str, share: float,
                                                                     cap: int) -> None:
    """What exactness rests on, without the slack of the bound hiding a mistake: the selection's MATCH
    expression returns exactly the rows matching every term of some set, each with the score to the bit
    that the full query gives it (phrases under NOT add nothing)."""
    terms = query_terms(query)
    db = catalog.db.conn
    rows = catalog.chunk_count()
    ceilings = {t: ceiling(rows, phrase_hits(db, t)) for t in terms}
    threshold = share * sum(ceilings.values())
    try:
        sets = cover(ceilings, threshold, cap)
    except Overflow:
        sets = tiers(ceilings, threshold)
    selection = Selection(terms, sets, threshold)
    sql = "select rowid, bm25(chunks_fts) from chunks_fts where chunks_fts match ?"
    full = dict(db.execute(sql, [" OR ".join(phrase(t) for t in terms)]).fetchall())
    matching = {t: {r[0] for r in db.execute(sql, [phrase(t)])} for t in terms}
    wanted = {r: score for r, score in full.items() if any(all(r in matching[t] for t in s) for s in sets)}
    assert dict(db.execute(sql, [selection.match()]).fetchall()) == wanted


def test_max_term_share_no_longer_changes_results(catalog: Catalog) -> None:
    query, filters = "w0 w1 w2 w30 cells", Filters()
    rankings = {}
    for share in (0.01, 0.1, 1.0):  # the retriever ctx builds from each [retrieval] table
        lexical = retriever_for(catalog, None, None, RetrievalSettings(max_term_share=share)).lexical
        lexical.prune_from = 1
        rankings[share] = lexical.search(query, filters, 20, False)
    assert rankings[0.01] == rankings[0.1] == rankings[1.0] == reference(catalog, query, filters, 20, False)


def test_below_prune_from_the_full_query_runs(catalog: Catalog) -> None:
    lexical = Lexical(catalog)  # the default threshold: more chunks than this corpus has
    assert lexical.search("w0 w1 w40", Filters(), 10, False) == reference(catalog, "w0 w1 w40", Filters(), 10, False)
    assert lexical.counts.pruned == 0


def test_counts_follow_writes_to_the_index(tmp_path: Path) -> None:
    """Row counts per term are kept while the index is unchanged; a write must retire them, or the
    bounds would rest on stale IDFs."""
    catalog = _corpus(tmp_path / "catalog.db", chunks=400)
    lexical = Lexical(catalog, prune_from=1)
    query = "w0 w1 w2 w50"
    assert lexical.search(query, Filters(), 10, False) == reference(catalog, query, Filters(), 10, False)
    catalog.db.execute("delete from chunks where rowid % 3 = 0")
    catalog.db.table("chunks").insert_all(
        [{"id": f"new{i}", "doc_id": "dn", "source": "s1", "heading": "", "text": "w50 w50 w50 w1"}
         for i in range(30)])
    catalog.db.conn.commit()
    assert lexical.search(query, Filters(), 10, False) == reference(catalog, query, Filters(), 10, False)


def test_index_state_counts_the_rows_bm25_counts(catalog: Catalog) -> None:
    state = index_state(catalog.db.conn)
    assert state is not None
    assert state[0] == catalog.chunk_count()


def test_a_term_never_adds_its_ceiling(catalog: Catalog) -> None:
    """The bound everything rests on: one term's bm25 in any row stays under idf * (k1 + 1)."""
    rows = catalog.chunk_count()
    for term in ["w0", "w3", "w40", "cells", "foo_bar"]:
        best = catalog.db.execute("select bm25(chunks_fts) as score from chunks_fts where chunks_fts match ? "
                                  "order by score limit 1", ['"' + term + '"']).fetchone()[0]
        assert -best < ceiling(rows, phrase_hits(catalog.db.conn, term))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(0.01, 10), min_size=1, max_size=7), threshold=st.floats(0, 40),
       cap=st.sampled_from([3, 64]))
def test_cover_and_tiers_cover_every_term_set_that_reaches_the_threshold(values: list[float], threshold: float,
                                                                          cap: int) -> None:
    ceilings = {f"t{i}": v for i, v in enumerate(values)}
    try:
        sets = cover(ceilings, threshold, cap)
    except Overflow:
        sets = None
    for found in [tiers(ceilings, threshold)] + ([sets] if sets is not None else []):
        for size in range(1, len(values) + 1):
            for chosen in itertools.combinations(ceilings, size):
                reaches = sum(ceilings[t] for t in chosen) * (1 + SLACK) >= threshold
                covered = any(set(s) <= set(chosen) for s in found)
                assert covered or not reaches, (chosen, found)
