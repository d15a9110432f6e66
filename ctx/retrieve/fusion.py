"""Fusing the lexical and vector legs into one ranking of chunks.

Two methods, chosen by ``[retrieval] fusion``:

- ``convex`` (default): each leg's scores are min-max normalised over its own candidates (BM25 and cosine
  similarity live on unrelated scales, so raw scores cannot be added), then combined as
  ``w * lexical + (1 - w) * vector``. Unlike reciprocal rank fusion it keeps how far apart two candidates
  are: a chunk far ahead in one leg stays ahead, where RRF would give rank 1 and rank 2 nearly the
  same credit. (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023.)
- ``rrf``: reciprocal rank fusion, ``sum 1 / (rrf_k + rank)``, which needs no scores at all.

With ``by_document`` the legs are also read per document (a document scores what its best chunk scores
in that leg), and a document's best chunk is ranked by the document's fused score. A document whose
words match one chunk and whose meaning matches another is then found by both legs together, where
ranking chunks alone splits that evidence between two chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Method = Literal["convex", "rrf"]
# A leg's candidates, best first: (chunk id, a score where higher is better).
Leg = Sequence[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Fusion:
    method: Method = "convex"
    lexical_weight: float = 0.5  # convex only; the vector leg gets the rest
    rrf_k: int = 60  # rrf only
    by_document: bool = True


def normalised(leg: Leg) -> dict[str, float]:
    """Min-max over the leg's own candidates: its best is 1, its last 0 (as good as not found)."""
    if not leg:
        return {}
    values = [score for _, score in leg]
    low, high = min(values), max(values)
    if high <= low:  # one candidate, or all tied: each is as good as the best
        return {cid: 1.0 for cid, _ in leg}
    return {cid: (score - low) / (high - low) for cid, score in leg}


def reciprocal(leg: Leg, k: int) -> dict[str, float]:
    return {cid: 1.0 / (k + rank) for rank, (cid, _) in enumerate(leg, 1)}


def fuse(lexical: Leg, vector: Leg, fusion: Fusion, doc_of: Mapping[str, str] | None = None
         ) -> list[tuple[str, float]]:
    """Every candidate of either leg with its fused score, best first (ties by chunk id, so stable).

    ``doc_of`` maps chunk ids to their documents; it is needed with ``by_document`` (a chunk missing from
    it counts as its own document).
    """
    if fusion.method == "rrf":
        legs = [reciprocal(lexical, fusion.rrf_k), reciprocal(vector, fusion.rrf_k)]
        weights = (1.0, 1.0)
    else:
        legs = [normalised(lexical), normalised(vector)]
        weights = (fusion.lexical_weight, 1.0 - fusion.lexical_weight)
    chunks = _combine(legs, weights)
    if not fusion.by_document:
        return sorted(chunks.items(), key=lambda item: (-item[1], item[0]))
    doc_of = doc_of or {}
    if fusion.method == "rrf":
        # Ranks per document: a document takes the rank of its first chunk in the leg.
        legs = [reciprocal(_first_per_document(leg, doc_of), fusion.rrf_k) for leg in (lexical, vector)]
    else:
        legs = [_best_per_document(scores, doc_of) for scores in legs]
    documents = _combine(legs, weights)
    # A document's best chunk carries the document's score; its other chunks keep their own, which is never
    # higher (a document's score in each leg is its best chunk's). So documents come out in the order of
    # their fused scores, and a weak second chunk of the first document does not push the next
    # document's best chunk down.
    best: dict[str, str] = {}
    for cid in sorted(chunks, key=lambda c: (-chunks[c], c)):
        best.setdefault(doc_of.get(cid, cid), cid)
    final = dict(chunks)
    for doc, cid in best.items():
        final[cid] = documents[doc]
    return sorted(final.items(), key=lambda item: (-item[1], item[0]))


def _combine(legs: Sequence[Mapping[str, float]], weights: Sequence[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for leg, weight in zip(legs, weights, strict=True):
        for cid, score in leg.items():
            out[cid] = out.get(cid, 0.0) + weight * score
    return out


def _best_per_document(scores: Mapping[str, float], doc_of: Mapping[str, str]) -> dict[str, float]:
    best: dict[str, float] = {}
    for cid, score in scores.items():
        doc = doc_of.get(cid, cid)
        best[doc] = max(best.get(doc, score), score)
    return best


def _first_per_document(leg: Leg, doc_of: Mapping[str, str]) -> list[tuple[str, float]]:
    seen: dict[str, float] = {}
    for cid, score in leg:
        seen.setdefault(doc_of.get(cid, cid), score)
    return list(seen.items())
