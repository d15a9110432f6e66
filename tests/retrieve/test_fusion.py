"""Fusing the two legs: convex combination keeps score gaps, documents collect evidence from both legs,
and reciprocal rank fusion stays available as it was."""

from __future__ import annotations

import pytest

from ctx.retrieve.fusion import Fusion, fuse, normalised

CHUNKS = Fusion(by_document=False)


def _ids(fused: list[tuple[str, float]]) -> list[str]:
    return [cid for cid, _ in fused]


def test_min_max_puts_each_legs_best_at_one_and_its_last_at_zero() -> None:
    assert normalised([("a", 12.0), ("b", 9.0), ("c", 3.0)]) == {"a": 1.0, "b": 2 / 3, "c": 0.0}
    assert normalised([("a", 4.0)]) == {"a": 1.0}  # alone is best, not last
    assert normalised([]) == {}


def test_convex_keeps_a_clear_lead_that_reciprocal_ranks_flatten() -> None:
    # Lexically "x" is far ahead (an exact identifier); "y" is only a little ahead on the vector side.
    lexical = [("x", 30.0), ("y", 2.0), ("z", 1.9), ("w", 1.0)]
    vector = [("y", 0.62), ("w", 0.61), ("x", 0.60), ("z", 0.20)]
    assert _ids(fuse(lexical, vector, CHUNKS))[0] == "x"
    # RRF sees rank 1 + rank 2 against rank 3 + rank 1 and prefers "y".
    assert _ids(fuse(lexical, vector, Fusion("rrf", by_document=False)))[0] == "y"


def test_the_weight_moves_the_ranking_between_the_legs() -> None:
    lexical = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    vector = [("c", 0.9), ("b", 0.5), ("a", 0.1)]
    assert _ids(fuse(lexical, vector, Fusion(lexical_weight=1.0, by_document=False))) == ["a", "b", "c"]
    assert _ids(fuse(lexical, vector, Fusion(lexical_weight=0.0, by_document=False))) == ["c", "b", "a"]


def test_rrf_is_the_textbook_sum_of_reciprocal_ranks() -> None:
    fused = dict(fuse([("a", 3.0), ("b", 2.0)], [("b", 0.9), ("c", 0.8)], Fusion("rrf", rrf_k=60,
                                                                                  by_document=False)))
    assert fused == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})


def test_a_document_found_by_both_legs_through_different_chunks_wins() -> None:
    # doc A: its first chunk has the words, its second the meaning. B and C each have one strong chunk.
    doc_of = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    lexical = [("b1", 10.0), ("a1", 9.0), ("c1", 1.0)]
    vector = [("c1", 0.80), ("a2", 0.79), ("b1", 0.30)]
    by_chunk = _ids(fuse(lexical, vector, CHUNKS, doc_of))
    by_document = _ids(fuse(lexical, vector, Fusion(), doc_of))
    assert by_chunk[0] == "b1"  # chunk by chunk, A's evidence is split between a1 and a2
    assert by_document[0] in {"a1", "a2"}
    assert set(by_document) == set(by_chunk)  # nothing added or lost, only reordered


def test_documents_come_out_in_order_of_their_score_and_a_weak_second_chunk_does_not_push_others_down() -> None:
    doc_of = {"a1": "A", "a2": "A", "b1": "B"}
    lexical = [("a1", 10.0), ("b1", 8.0), ("a2", 1.0)]
    vector = [("a1", 0.9), ("b1", 0.8), ("a2", 0.1)]
    fused = fuse(lexical, vector, Fusion(), doc_of)
    assert _ids(fused) == ["a1", "b1", "a2"]
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)


def test_ties_are_broken_by_id_so_the_order_never_depends_on_input_order() -> None:
    lexical = [("b", 1.0), ("a", 1.0)]
    assert _ids(fuse(lexical, [], CHUNKS)) == ["a", "b"]
    assert _ids(fuse(list(reversed(lexical)), [], CHUNKS)) == ["a", "b"]


def test_one_empty_leg_leaves_the_other_legs_order() -> None:
    lexical = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    for fusion in (CHUNKS, Fusion(), Fusion("rrf")):
        assert _ids(fuse(lexical, [], fusion, {})) == ["a", "b", "c"]
        assert _ids(fuse([], [("c", 0.9), ("a", 0.5)], fusion, {})) == ["c", "a"]
