"""Offline evaluation: the metrics on a hand-checked set, the two query formats, and `ctx eval` end to end
(one version, two side by side, one that needs its own index), which stores its run and no trace."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctx.errors import UserError
from ctx.versions.eval import paired_bootstrap
from ctx.versions.evalset import digest, load
from ctx.versions.metrics import (
    judge,
    kept_blocks,
    ndcg_at,
    ranking,
    recall_at,
    reciprocal_rank,
    token_efficiency,
)
from tests.helpers import FIXTURES

QUERIES = FIXTURES / "eval" / "queries.jsonl"
BEIR_QUERIES = FIXTURES / "eval" / "beir-queries.jsonl"
BEIR_QRELS = FIXTURES / "eval" / "beir-qrels.tsv"


def doc(*names: str) -> frozenset[str]:
    return frozenset(names)


# --- metrics, by hand -------------------------------------------------------------------------------

RANKED = [doc("A"), doc("B"), doc("C"), doc("D")]
GRADED = {"B": 2.0, "D": 1.0, "E": 1.0}  # E is relevant but never retrieved


def test_recall_mrr_and_ndcg_match_the_arithmetic() -> None:
    judged = judge(RANKED, GRADED)
    assert judged.gains == [0.0, 2.0, 0.0, 1.0]
    # recall@3: of B, D, E only B is in the first three → 1/3; @10: B and D → 2/3.
    assert recall_at(judged, 3) == pytest.approx(1 / 3)
    assert recall_at(judged, 10) == pytest.approx(2 / 3)
    # MRR: the first relevant document (B) is at rank 2 → 1/2.
    assert reciprocal_rank(judged) == 0.5
    # nDCG@10, linear gains over log2(rank + 1) as trec_eval's ndcg_cut:
    #   DCG  = 2/log2(3) + 1/log2(5)            = 1.2618595 + 0.4306766          = 1.6925361
    #   IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309298 + 0.5            = 3.1309298
    #   nDCG = 1.6925361 / 3.1309298                                              = 0.5405857
    assert ndcg_at(judged, 10) == pytest.approx(0.5405857, abs=1e-6)
    # nDCG@2: DCG = 2/log2(3) = 1.2618595; IDCG = 2 + 1/log2(3) = 2.6309298 → 0.4796249
    assert ndcg_at(judged, 2) == pytest.approx(0.4796249, abs=1e-6)
    # with 2^rel - 1 gains it would be (3/log2(3) + 1/log2(5)) / (3 + 1/log2(3) + 1/log2(4)) = 0.5698: not this
    assert not math.isclose(ndcg_at(judged, 10), 0.5698, abs_tol=1e-3)


def test_a_label_counts_once_and_a_perfect_ranking_scores_one() -> None:
    # The same document twice in a ranking (two names for it) earns its gain only at its first rank.
    twice = judge([doc("x", "docs:x"), doc("x")], {"x": 1.0})
    assert twice.gains == [1.0, 0.0]
    perfect = judge([doc("B"), doc("D"), doc("E")], GRADED)
    assert recall_at(perfect, 3) == 1.0 and reciprocal_rank(perfect) == 1.0 and ndcg_at(perfect) == pytest.approx(1.0)
    nothing = judge([], GRADED)
    assert (recall_at(nothing, 10), reciprocal_rank(nothing), ndcg_at(nothing)) == (0.0, 0.0, 0.0)
    # nDCG does not depend on the scale of the grades, and huge grades stay finite.
    assert ndcg_at(judge(RANKED, {k: v * 1e307 for k, v in GRADED.items()})) == pytest.approx(0.5405857, abs=1e-6)


def test_ranking_is_per_document_from_retrieval_only_and_labels_match_any_name() -> None:
    providers = {"retrieval": {"kind": "retrieval"}, "policy": {"kind": "static"}}
    rows = [
        {"chunk_id": "c1", "doc_id": "d1", "doc_key": "a.md", "source": "docs", "provider": "retrieval"},
        {"chunk_id": "p1", "doc_id": "pol", "doc_key": "policy.md", "source": "", "provider": "policy"},
        {"chunk_id": "c2", "doc_id": "d1", "doc_key": "a.md", "source": "docs", "provider": "retrieval"},
        {"chunk_id": "c3", "doc_id": "d2", "doc_key": "b.md", "source": "docs", "provider": "retrieval"},
    ]
    ranked = ranking(rows, providers)
    assert ranked == [doc("d1", "a.md", "docs:a.md"), doc("d2", "b.md", "docs:b.md")]
    for label in ("d2", "b.md", "docs:b.md"):  # our id, the key, or source:key
        assert reciprocal_rank(judge(ranked, {label: 1.0})) == 0.5


def test_token_efficiency_counts_relevant_kept_blocks_over_the_whole_context() -> None:
    rows = [
        {"chunk_id": "c1", "doc_id": "d1", "doc_key": "a.md", "source": "docs", "kept": True, "token_count": 100},
        {"chunk_id": "c2", "doc_id": "d2", "doc_key": "b.md", "source": "docs", "kept": True, "token_count": 300},
        {"chunk_id": "c3", "doc_id": "d3", "doc_key": "c.md", "source": "docs", "kept": True, "token_count": 200,
         "truncated": True},
        {"chunk_id": "c4", "doc_id": "d1", "doc_key": "a.md", "source": "docs", "kept": False, "token_count": 80},
    ]
    cut = [{"kind": "truncated", "chunk_id": "c3", "tokens_before": 200, "tokens_after": 50}]
    kept = kept_blocks(rows, cut)
    assert [t for _, t in kept] == [100.0, 300.0, 50.0]  # a truncated block counts what was left of it
    # a.md (100) and the cut c.md (50) are relevant; the context is 500 tokens: (100 + 50) / 500 = 0.3.
    assert token_efficiency(kept, {"a.md": 2.0, "docs:c.md": 1.0, "b.md": 0.0}, 500) == pytest.approx(0.3)
    assert token_efficiency(kept, {"a.md": 1.0}, 0) == 0.0  # an empty context


def test_the_paired_bootstrap_is_deterministic_and_tells_noise_from_a_difference() -> None:
    same = paired_bootstrap([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert same["significant"] is False and same["p_value"] == 1.0
    a = [0.2, 0.4, 0.3, 0.5, 0.1, 0.6, 0.3, 0.2]
    better = [x + 0.3 + 0.01 * i for i, x in enumerate(a)]
    result = paired_bootstrap(a, better)
    assert result["significant"] is True and result["low"] > 0 and result["p_value"] < 0.05
    assert paired_bootstrap(a, better) == result  # a fixed seed: the same verdict every time
    noisy = paired_bootstrap(a, [0.3, 0.3, 0.4, 0.4, 0.0, 0.7, 0.2, 0.2])
    assert noisy["significant"] is False and noisy["low"] < 0 < noisy["high"]


# --- the query sets ---------------------------------------------------------------------------------


def test_both_fixture_formats_load_the_same_queries() -> None:
    ours, beir = load(QUERIES), load(BEIR_QUERIES, BEIR_QRELS)
    assert len(ours) == len(beir) == 16
    assert [(q.id, q.query) for q in ours] == [(q.id, q.query) for q in beir]
    assert ours[0].relevant == {"api/rotating-api-keys.md": 2.0, "api/authentication.md": 1.0,
                                "changelog/2026-10.md": 1.0}
    assert next(q for q in ours if q.id == "q07").relevant == {"docs:billing/plans.md": 1.0}  # a plain list
    assert digest(ours) == digest(load(QUERIES)) and digest(ours) != digest(beir)


def test_jsonl_defaults_and_trec_qrels(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "refunds", "relevant": ["billing/refunds.md"]}\n\n'
                    '{"id": 7, "query": "plans", "relevant": {"billing/plans.md": 3, "x": 0}}\n')
    first, second = load(path)
    assert (first.id, first.relevant) == ("q1", {"billing/refunds.md": 1.0})
    assert (second.id, second.relevant) == ("7", {"billing/plans.md": 3.0, "x": 0.0})
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "1", "text": "refunds"}\n{"_id": "2", "text": "unjudged in this split"}\n')
    trec = tmp_path / "qrels.txt"
    trec.write_text("1 0 billing/refunds.md 1\n1 0 billing/plans.md 0\n")
    (only,) = load(queries, trec)  # BEIR keeps the queries its qrels judge
    assert (only.id, only.relevant) == ("1", {"billing/refunds.md": 1.0, "billing/plans.md": 0.0})


@pytest.mark.parametrize(("text", "line", "says"), [
    ('{"query": "a", "relevant": ["x"]}\n{not json\n', 2, "not JSON"),
    ('[1, 2]\n', 1, "expected a JSON object"),
    ('{"relevant": ["x"]}\n', 1, '"query" must be a non-empty string'),
    ('{"query": "  ", "relevant": ["x"]}\n', 1, '"query" must be a non-empty string'),
    ('{"query": "a"}\n', 1, '"relevant" must be'),
    ('{"query": "a", "relevant": []}\n', 1, "no relevant document"),
    ('{"query": "a", "relevant": {"x": 0}}\n', 1, "no relevant document"),
    ('{"query": "a", "relevant": {"x": "high"}}\n', 1, "must be a number"),
    ('{"query": "a", "relevant": {"x": true}}\n', 1, "must be a number"),
    ('{"query": "a", "relevant": [""]}\n', 1, "non-empty string"),
    ('{"id": "a", "query": "a", "relevant": ["x"]}\n{"id": "a", "query": "b", "relevant": ["y"]}\n', 2, "twice"),
    ('{"_id": "1", "text": "a"}\n', 1, "--qrels"),
])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and says in message
    if "twice" not in says:
        assert message.startswith(f"{path}:{line}:")


def test_bad_qrels_and_empty_sets_are_refused(tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"_id": "1", "text": "refunds"}\n')
    for text, line, says in (("query-id\tcorpus-id\tscore\n2\tdoc\t1\n", 2, "not in"),
                             ("1\tdoc\n", 1, "expected query-id"), ("1\tdoc\t1\n1\tdoc\tmuch\n", 2, "not a number")):
        qrels = tmp_path / "qrels.tsv"
        qrels.write_text(text)
        with pytest.raises(UserError, match=rf"^{qrels}:{line}: .*{says}"):
            load(queries, qrels)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no labeled queries"):
        load(empty)
    with pytest.raises(UserError, match="no such file"):
        load(tmp_path / "missing.jsonl")


# --- ctx eval, end to end -----------------------------------------------------------------------------

LEXICAL = """
[embedding]
embedder = "none"

[sources.docs]
kind = "files"
path = "{docs}"
"""


def _home(write_config: Callable[[str], Path], docs_dir: Path, ctx_cli: Callable[..., Any], extra: str = "") -> Path:
    config = write_config(LEXICAL.format(docs=docs_dir) + extra)
    ctx_cli("ingest", "--quiet")
    return config


def _workspace(config: Path) -> Any:
    from ctx.workspace import Workspace

    return Workspace.open(config)


def _runs(config: Path) -> list[dict[str, Any]]:
    ws = _workspace(config)
    try:
        rows = ws.catalog.db.execute("select version, recipe, queries, queries_sha256, k, count, metrics, "
                                     "data_sha256 from eval_runs order by created_at").fetchall()
        return [{"version": r[0], "recipe": r[1], "queries": r[2], "queries_sha256": r[3], "k": r[4], "count": r[5],
                 "metrics": json.loads(r[6]), "data_sha256": r[7]} for r in rows]
    finally:
        ws.close()


def _current(config: Path) -> str:
    ws = _workspace(config)
    try:
        return str(ws.current_version().id)
    finally:
        ws.close()


def test_ctx_eval_scores_the_demo_docs_stores_its_run_and_no_trace(write_config: Any, docs_dir: Path,
                                                                   ctx_cli: Any) -> None:
    config = _home(write_config, docs_dir, ctx_cli)
    out = ctx_cli("eval", str(QUERIES), "--json").json()
    assert out["count"] == 16 and out["failed"] == 0 and out["k"] == 10 and out["recipe"] == "default"
    metrics = out["metrics"]
    assert set(metrics) == {"recall_at_k", "recall_at_100", "mrr", "ndcg_at_10", "token_efficiency"}
    # Hand-made queries over the docs they were written from: retrieval finds most of them near the top.
    assert metrics["recall_at_k"] >= 0.8 and metrics["mrr"] >= 0.7 and metrics["ndcg_at_10"] >= 0.6
    assert 0.0 < metrics["token_efficiency"] <= 1.0
    per_query = {r["id"]: r for r in out["results"]}
    assert per_query["q16"]["first_relevant"] is not None  # an exact error code: lexical finds it
    assert all(0.0 <= r[m] <= 1.0 for r in out["results"] for m in metrics)
    # The same queries in BEIR form score the same.
    beir = ctx_cli("eval", str(BEIR_QUERIES), "--qrels", str(BEIR_QRELS), "--json").json()
    assert beir["metrics"] == metrics
    runs = _runs(config)
    assert [(r["version"], r["count"], r["k"]) for r in runs] == [(_current(config), 16, 10)] * 2
    assert runs[0]["metrics"] == metrics and runs[0]["queries"] == str(QUERIES)
    assert runs[0]["queries_sha256"] == out["queries_sha256"]
    assert runs[0]["data_sha256"] == out["data"]["sha256"] == beir["data"]["sha256"]
    assert out["data"]["documents"] == sum(1 for p in docs_dir.rglob("*") if p.is_file()) and out["data"]["chunks"] > 0
    assert ctx_cli("traces", "--json").json() == []  # evaluation is not traffic
    human = ctx_cli("eval", str(QUERIES), "--k", "3")
    assert "recall@3" in human.stdout and "nDCG@10" in human.stdout and "eval run" in human.stderr
    assert "recall@100" in human.stdout and f"version {out['version']}" in human.stdout
    assert f"data {out['data']['sha256'][:12]}" in human.stdout and "recall@100 over rankings of" in human.stdout


def test_ctx_eval_bad_input_is_one_line_and_exit_2(write_config: Any, docs_dir: Path, ctx_cli: Any,
                                                   tmp_path: Path) -> None:
    _home(write_config, docs_dir, ctx_cli)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "refunds", "relevant": ["x"]}\n{"query": 3}\n')
    for args, says in ((("eval", str(bad)), f"{bad}:2:"), (("eval", str(tmp_path / "nope.jsonl")), "no such file"),
                       (("eval", str(QUERIES), "--version", "nope"), "no version or label"),
                       (("eval", str(QUERIES), "--version", "a b"), "version"),
                       (("eval", str(QUERIES), "--compare", "x", "y", "--version", "z"), "not both")):
        res = ctx_cli(*args, ok=False)
        assert res.exit_code in (2, 3), (args, res)
        assert res.stdout == "" and says in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)


def test_compare_two_versions_side_by_side_including_one_with_its_own_index(write_config: Any, docs_dir: Path,
                                                                          ctx_cli: Any) -> None:
    config = _home(write_config, docs_dir, ctx_cli)
    base = _current(config)
    # Same index, fewer candidates: recall@10 can only fall.
    write_config(LEXICAL.format(docs=docs_dir) + "\n[retrieval]\ntop_k = 2\n")
    narrow = _current(config)
    out = ctx_cli("eval", str(QUERIES), "--compare", base, narrow, "--json").json()
    assert (out["a"]["version"], out["b"]["version"]) == (base, narrow)
    rows = {r["metric"]: r for r in out["comparison"]}
    assert set(rows) == {"recall_at_k", "recall_at_100", "mrr", "ndcg_at_10", "token_efficiency"}
    recall = rows["recall_at_k"]
    assert recall["b"] < recall["a"] and recall["delta"] == pytest.approx(recall["b"] - recall["a"])
    assert recall["low"] <= recall["delta"] <= recall["high"] and recall["test"] == "paired bootstrap"
    assert all(isinstance(r["significant"], bool) for r in rows.values())
    human = ctx_cli("eval", str(QUERIES), "--compare", base, narrow)
    assert base in human.stdout and narrow in human.stdout and "95% CI" in human.stdout

    # Smaller chunks: a different index, built for the version on first use (the live one is untouched).
    write_config(LEXICAL.format(docs=docs_dir) + "\n[chunking]\nmax_tokens = 120\n")
    ctx_cli("ingest", "--quiet")
    small = _current(config)
    ws = _workspace(config)
    side = ws.index_home(ws.versions.get(base))
    ws.close()
    assert not (side / "catalog.db").exists()  # the live index now chunks small; base needs its own
    res = ctx_cli("eval", str(QUERIES), "--compare", base, small, "--json")
    assert "building its index" in res.stderr and (side / "catalog.db").exists()
    both = res.json()
    assert (both["a"]["version"], both["b"]["version"]) == (base, small)
    assert both["a"]["metrics"] == out["a"]["metrics"]  # the side index scores as the live one did
    # The same documents chunked otherwise: the same data (so comparable), another index.
    a_data, b_data = both["a"]["data"], both["b"]["data"]
    assert a_data["sha256"] == b_data["sha256"] == out["a"]["data"]["sha256"]
    assert a_data["index"] != b_data["index"] and a_data["chunks"] < b_data["chunks"]
    assert all(len(both[side]["results"]) == 16 for side in "ab")
    assert all(r["a"] is not None and r["b"] is not None for r in both["comparison"])
    assert {r["version"] for r in _runs(config)} == {base, narrow, small}
    assert ctx_cli("traces", "--json").json() == []
