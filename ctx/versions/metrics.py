"""Retrieval metrics for one query: recall@k, recall@100, MRR, nDCG@10 (trec_eval's definition) and token
efficiency.

A ranking is a list of documents, best first, each named by the set of ids a label may use for it
(document id, key, ``source:key``). A label is credited once, at the first rank that matches it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NDCG_CUTOFF = 10
RECALL_DEPTH = 100  # recall@100, as BEIR and MTEB report it beside nDCG@10
TOP = 10  # documents named per query in a run's results

Doc = frozenset[str]


def doc_names(row: Mapping[str, Any]) -> Doc:
    """Every name a label may give the document of a trace candidate (or a hit)."""
    names = {str(row.get("doc_id") or "")}
    key, source = row.get("doc_key"), row.get("source")
    if key:
        names.add(str(key))
        if source:
            names.add(f"{source}:{key}")
    return frozenset(n for n in names if n)


@dataclass(frozen=True)
class Judged:
    """A ranking against a query's labels: the gain at each rank and which labels each rank matched."""

    gains: list[float]
    matched: list[frozenset[str]]
    relevant: dict[str, float]

    @property
    def positive(self) -> int:
        return sum(1 for g in self.relevant.values() if g > 0)


def judge(ranking: Sequence[Doc], relevant: Mapping[str, float]) -> Judged:
    credited: set[str] = set()
    gains: list[float] = []
    matched: list[frozenset[str]] = []
    for names in ranking:
        hits = frozenset(label for label in relevant if label in names and label not in credited)
        credited |= hits
        gains.append(max((relevant[label] for label in hits), default=0.0))
        matched.append(hits)
    return Judged(gains, matched, dict(relevant))


def recall_at(judged: Judged, k: int) -> float:
    """Share of the relevant documents (grade above 0) found in the first ``k`` ranks."""
    if not judged.positive:
        return 0.0
    found = {label for hits in judged.matched[:k] for label in hits if judged.relevant[label] > 0}
    return len(found) / judged.positive


def reciprocal_rank(judged: Judged) -> float:
    """1 / the rank of the first relevant document; 0 when none was retrieved."""
    return next((1.0 / rank for rank, gain in enumerate(judged.gains, 1) if gain > 0), 0.0)


def ndcg_at(judged: Judged, k: int = NDCG_CUTOFF) -> float:
    """nDCG@k as trec_eval's ``ndcg_cut`` (so pytrec_eval and BEIR) computes it: linear gains (the grade
    itself, not 2^grade - 1), discounted by log2(rank + 1), over the ideal ordering of every judged
    relevant document cut at ``k``."""
    ideal = sorted((g for g in judged.relevant.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return 0.0
    top = ideal[0]  # nDCG does not change when every gain is scaled: dividing by the top one keeps sums finite
    dcg = sum(g / top / math.log2(rank + 1) for rank, g in enumerate(judged.gains[:k], 1) if g > 0)
    idcg = sum(g / top / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    return dcg / idcg


def block_tokens(row: Mapping[str, Any], cut: Mapping[str, int]) -> float:
    """Tokens a kept block took, counted as the cost ledger counts them (ctx.observe.cost.usage): a stored
    chunk's count from ingest, what was left of a truncated one, else ~4 characters a token."""
    if row.get("truncated") and row.get("chunk_id") in cut:
        return float(cut[row["chunk_id"]])
    return float(row.get("token_count") or 0) or max((row.get("end", 0) - row.get("start", 0)) / 4, 1.0)


def token_efficiency(kept: Iterable[tuple[Doc, float]], relevant: Mapping[str, float], total: int) -> float:
    """Tokens of the kept blocks that belong to a relevant document / all tokens of the context."""
    if total <= 0:
        return 0.0
    useful = sum(tokens for names, tokens in kept if any(relevant.get(n, 0) > 0 for n in names))
    return min(useful / total, 1.0)  # block counts are in the chunk encoding: never claim more than all


def ranking(candidates: Sequence[Mapping[str, Any]], providers: Mapping[str, Mapping[str, Any]]) -> list[Doc]:
    """The retrieval candidates of a trace as a ranking of documents, first occurrence winning.

    Blocks from other providers (a policy file, a profile, a user's tickets) are not ranked: they are
    chosen by who asks, not by the query. With several retrieval providers, their candidates are merged
    by fused score.
    """
    return [doc_names(row) for row in documents(candidates, providers)]


def documents(candidates: Sequence[Mapping[str, Any]], providers: Mapping[str, Mapping[str, Any]]
              ) -> list[Mapping[str, Any]]:
    """The candidate that ranks each document (its first), in ranking order (see :func:`ranking`)."""
    rows = [c for c in candidates if (providers.get(c.get("provider") or "") or {}).get("kind") == "retrieval"]
    if len({c.get("provider") for c in rows}) > 1:
        rows = sorted(rows, key=lambda c: -float(c.get("score") or 0.0))
    seen: set[str] = set()
    out: list[Mapping[str, Any]] = []
    for row in rows:
        doc = _doc(row)
        if doc not in seen:
            seen.add(doc)
            out.append(row)
    return out


def extend(ranked: Sequence[Mapping[str, Any]], deeper: Sequence[Mapping[str, Any]], depth: int
           ) -> list[Mapping[str, Any]]:
    """``ranked`` as it is, then the documents of ``deeper`` it lacks, cut at ``depth``: the top of a deep
    ranking is always the ranking the version serves, so recall@100 never disagrees with recall@k or nDCG@10."""
    seen = {_doc(row) for row in ranked}
    return [*ranked, *(row for row in deeper if _doc(row) not in seen)][:depth]


def doc_label(row: Mapping[str, Any]) -> str:
    """How a document is named in per-query results: ``source:key`` (what labels usually say), else its id."""
    key, source = row.get("doc_key"), row.get("source")
    return f"{source}:{key}" if key and source else _doc(row)


def _doc(row: Mapping[str, Any]) -> str:
    return str(row.get("doc_id") or row.get("chunk_id"))


def kept_blocks(candidates: Sequence[Mapping[str, Any]], degradations: Sequence[Mapping[str, Any]]
                ) -> list[tuple[Doc, float]]:
    cut = {d["chunk_id"]: int(d.get("tokens_after") or 0) for d in degradations
           if d.get("kind") == "truncated" and d.get("chunk_id")}
    return [(doc_names(c), block_tokens(c, cut)) for c in candidates if c.get("kept")]


def score(trace: Any, relevant: Mapping[str, float], k: int,
          deeper: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Every metric of one query from its (unstored) trace record; ``deeper`` are retrieval candidates of
    the same search run deeper (``RetrievalProvider.ranked``), which only recall@100 reads."""
    rows = documents(trace.candidates, trace.providers)
    judged = judge([doc_names(r) for r in rows], relevant)
    deep = extend(rows, documents(deeper, trace.providers), RECALL_DEPTH)
    return {
        "recall_at_k": recall_at(judged, k), "recall_at_100": recall_at(judge([doc_names(r) for r in deep], relevant),
                                                                         RECALL_DEPTH),
        "mrr": reciprocal_rank(judged), "ndcg_at_10": ndcg_at(judged),
        "token_efficiency": token_efficiency(kept_blocks(trace.candidates, trace.degradations), relevant,
                                             trace.tokens),
        "retrieved": len(rows), "depth": len(deep), "tokens": trace.tokens,
        "found": sum(1 for hits in judged.matched for label in hits if relevant[label] > 0),
        "first_relevant": next((r for r, g in enumerate(judged.gains, 1) if g > 0), None),
        "top": [doc_label(r) for r in rows[:TOP]],
    }


def unscored(error: str) -> dict[str, Any]:
    """The results of a query the version gave no context: it scores nothing."""
    return {**dict.fromkeys(METRICS, 0.0), "retrieved": 0, "depth": 0, "tokens": 0, "found": 0,
            "first_relevant": None, "top": [], "error": error}


METRICS = ("recall_at_k", "recall_at_100", "mrr", "ndcg_at_10", "token_efficiency")
