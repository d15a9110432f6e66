"""A cached provider result is keyed by every setting that shapes it, not only by the provider's own table: a
changed [retrieval] knob is never served the answer cached under the old one (the disk tier outlives the
process, so the next command, the daemon after a restart, or `ctx eval` would get it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctx.api.inputs import AssembleIn, IngestIn

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BASE = """
[embedding]
embedder = "none"

[cache]
context_ttl = 0  # no assembled-context cache: each request asks its providers, whose results are what is tested

[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
"""
# Each knob of [retrieval] that the request does not carry, with a new value. The key must see every one, even
# where it changes nothing here: max_term_share is deprecated (BM25 is exact whatever it says), and by_document
# acts only with both legs (lexical only, a document's best chunk scores the same either way).
KNOBS = {"candidates": "2", "rrf_k": "1", "max_term_share": "0.01", "fusion": '"rrf"', "lexical_weight": "0.2",
         "by_document": "false"}
CHANGES_HERE = set(KNOBS) - {"max_term_share", "by_document"}
# What a knob needs around it to act at all: rrf_k is read only by reciprocal rank fusion.
CONTEXT = {"rrf_k": 'fusion = "rrf"\n'}


def _retrieval(config: Path, query: str) -> dict[str, Any]:
    from ctx.api import operations as ops
    from ctx.client import connect

    client = connect(config)
    try:
        out = client.call(ops.ASSEMBLE, AssembleIn(query=query, budget=3000))
    finally:
        client.close()
    return {"status": out["providers"]["retrieval"]["status"], "blocks": [b["chunk_id"] for b in out["blocks"]],
            "scores": [b["score"] for b in out["blocks"]]}


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_a_changed_retrieval_knob_is_not_served_the_old_cached_result(
        knob: str, docs_dir: Path, write_config: Callable[[str], Path]) -> None:
    from ctx.client import connect

    query = "how do I rotate an API key without downtime?"
    retrieval = "\n[retrieval]\n" + CONTEXT.get(knob, "")
    config = write_config(BASE + retrieval)
    client = connect(config)
    client.ingest(IngestIn(trigger="cli"))
    client.close()
    before = _retrieval(config, query)
    assert before["status"] == "ok" and before["blocks"]  # computed, and now in the disk tier
    assert _retrieval(config, query)["status"] == "cached"  # the cache is on and keeps it across processes

    config.write_text(BASE + retrieval + f"{knob} = {KNOBS[knob]}\n")
    after = _retrieval(config, query)
    assert after["status"] == "ok", f"[retrieval] {knob} changed, yet the result came from the cache"
    if knob in CHANGES_HERE:
        assert (after["blocks"], after["scores"]) != (before["blocks"], before["scores"])  # the knob did change it


def test_eval_reflects_a_retrieval_knob_with_the_cache_on(docs_dir: Path, write_config: Callable[[str], Path],
                                                           ctx_cli: Callable[..., Any]) -> None:
    """`ctx eval` on a changed config scores that config: what a cold run of it scores, not the old one."""
    queries = str(FIXTURES / "eval" / "queries.jsonl")
    config = write_config(BASE)
    ctx_cli("--config", str(config), "ingest", "--json")
    first = ctx_cli("--config", str(config), "eval", queries, "--json").json()["metrics"]

    config.write_text(BASE + "\n[retrieval]\ncandidates = 2\n")
    cached = ctx_cli("--config", str(config), "eval", queries, "--json").json()["metrics"]
    config.write_text(BASE.replace("[cache]", "[cache]\nenabled = false") + "\n[retrieval]\ncandidates = 2\n")
    cold = ctx_cli("--config", str(config), "eval", queries, "--json").json()["metrics"]
    assert cached == cold, json.dumps({"with the cache": cached, "without": cold})
    assert cached != first  # two candidates per leg do score lower than fifty


def test_eval_compare_of_versions_apart_by_one_retrieval_knob_shows_the_difference(
        docs_dir: Path, write_config: Callable[[str], Path], ctx_cli: Callable[..., Any]) -> None:
    """Both versions run in one process with the cache on: each must score what it ranks, not the other's."""
    queries = str(FIXTURES / "eval" / "queries.jsonl")
    config = write_config(BASE)
    ctx_cli("--config", str(config), "ingest", "--json")
    ctx_cli("--config", str(config), "eval", queries, "--json")  # stores the version in force, warms the cache
    first = ctx_cli("--config", str(config), "versions", "show", "--json").json()["id"]
    config.write_text(BASE + "\n[retrieval]\ncandidates = 2\n")
    second = ctx_cli("--config", str(config), "versions", "show", "--json").json()["id"]
    assert first != second
    out = ctx_cli("--config", str(config), "eval", queries, "--compare", first, second, "--json").json()
    deltas = {row["metric"]: row["delta"] for row in out["comparison"]}
    assert any(delta != 0 for delta in deltas.values()), deltas
