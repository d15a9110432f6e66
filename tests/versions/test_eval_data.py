"""`ctx eval` as the field's tools report it: recall@100 from a deeper run of the same search (the other
metrics untouched), per-query results, the data a run ran on, and `--compare` refusing runs on different data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ctx.errors import UserError
from ctx.versions.evalset import load
from ctx.versions.metrics import RECALL_DEPTH, score
from tests.helpers import FIXTURES
from tests.versions.test_eval import LEXICAL

QUERIES = FIXTURES / "eval" / "queries.jsonl"
SERVED_METRICS = ("recall_at_k", "mrr", "ndcg_at_10", "token_efficiency", "retrieved", "found", "first_relevant",
                  "top", "tokens")


def _row(doc: str, provider: str = "retrieval") -> dict[str, Any]:
    return {"chunk_id": f"{doc}#0", "doc_id": doc, "doc_key": f"{doc}.md", "source": "docs", "provider": provider}


def _trace(docs: list[str]) -> Any:
    return SimpleNamespace(candidates=[_row(d) for d in docs], providers={"retrieval": {"kind": "retrieval"}},
                           degradations=[], tokens=0)


# --- the metric, by hand ------------------------------------------------------------------------------


def test_recall_at_100_continues_the_served_ranking_and_leaves_the_other_metrics_alone() -> None:
    served = _trace(["d3", "d1"])  # what the version ranked (its top_k)
    # The deeper search reorders the top (more candidates change fusion) and goes on to d200.
    deeper = [_row(f"d{i}") for i in range(1, 201)]
    relevant = {"d1": 1.0, "d50": 1.0, "d150": 1.0, "never": 1.0}
    plain, deep = score(served, relevant, 10), score(served, relevant, 10, deeper)
    assert {m: deep[m] for m in SERVED_METRICS} == {m: plain[m] for m in SERVED_METRICS}
    assert deep["top"] == ["docs:d3.md", "docs:d1.md"] and deep["first_relevant"] == 2
    # The deep ranking: d3, d1 (as served), then d2, d4, d5, ... : d50 is at rank 49, d150 past 100.
    assert deep["depth"] == RECALL_DEPTH == 100
    assert deep["recall_at_100"] == 0.5 and deep["recall_at_k"] == 0.25
    # Without a deeper search, recall@100 is over what was served.
    assert plain["recall_at_100"] == plain["recall_at_k"] == 0.25 and plain["depth"] == 2


# --- end to end, on a corpus whose answer is known ------------------------------------------------------


def _corpus(root: Path) -> Path:
    """60 notes; five mention zebras (the relevant ones the query can find), one relevant note never does."""
    docs = root / "notes"
    docs.mkdir()
    for i in range(60):
        text = f"# Note {i}\n\nGardening note number {i} about soil, seeds and the weather this week.\n"
        if i % 12 == 0:
            text += "A zebra walked past the fence. " * (1 + i // 12) + "\n"
        (docs / f"note-{i:02d}.md").write_text(text)
    return docs


def test_recall_at_100_ranks_past_top_k_and_candidates_with_the_same_search(write_config: Callable[[str], Path],
                                                                           tmp_path: Path, ctx_cli: Any) -> None:
    docs = _corpus(tmp_path)
    # The version serves 2 chunks from 3 candidates per leg: recall@100 must not be bounded by either.
    write_config(LEXICAL.format(docs=docs) + "\n[retrieval]\ntop_k = 2\ncandidates = 3\n")
    ctx_cli("ingest", "--quiet")
    queries = tmp_path / "zebra.jsonl"
    relevant = [f"note-{i:02d}.md" for i in (0, 12, 24, 36, 48)] + ["note-59.md"]
    queries.write_text('{"id": "z", "query": "zebra", "relevant": %s}\n' % str(relevant).replace("'", '"'))
    out = ctx_cli("eval", str(queries), "--json").json()
    (result,) = out["results"]
    assert result["retrieved"] == 2 and result["recall_at_k"] == pytest.approx(2 / 6)
    # Every note that says "zebra" is found by the deeper search; note-59 never can be.
    assert result["depth"] == 5 and result["recall_at_100"] == pytest.approx(5 / 6)
    assert out["metrics"]["recall_at_100"] == pytest.approx(5 / 6, abs=1e-6)
    assert out["depth"] == {"cutoff": 100, "mean": 5, "min": 5}
    assert result["top"][0] == "docs:note-48.md"  # the most zebras
    assert result["first_relevant"] == 1 and result["error"] is None


def test_eval_metrics_other_than_recall_at_100_are_those_of_the_served_ranking(
        write_config: Callable[[str], Path], docs_dir: Path, ctx_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariant on fixtures/eval: the deeper search changes recall@100 and nothing else (without
    ``ranked`` the run scores as ctx eval did before recall@100 existed)."""
    from ctx.builtins.retrieval_provider import RetrievalProvider

    write_config(LEXICAL.format(docs=docs_dir))
    ctx_cli("ingest", "--quiet")
    deep = ctx_cli("eval", str(QUERIES), "--json").json()
    monkeypatch.delattr(RetrievalProvider, "ranked")
    served = ctx_cli("eval", str(QUERIES), "--json").json()
    for d, s in zip(deep["results"], served["results"], strict=True):
        assert {m: d[m] for m in SERVED_METRICS} == {m: s[m] for m in SERVED_METRICS}, d["id"]
        assert s["recall_at_100"] == s["recall_at_k"] and s["depth"] == s["retrieved"]
        assert d["recall_at_100"] >= d["recall_at_k"] and d["depth"] >= d["retrieved"]
    assert {m: v for m, v in deep["metrics"].items() if m != "recall_at_100"} == \
        {m: v for m, v in served["metrics"].items() if m != "recall_at_100"}
    assert deep["depth"]["mean"] > served["depth"]["mean"]


# --- the data a run ran on ------------------------------------------------------------------------------


def test_the_data_fingerprint_follows_the_documents_not_the_ingests(write_config: Callable[[str], Path],
                                                                    docs_dir: Path, open_workspace: Any) -> None:
    ws = open_workspace(write_config(LEXICAL.format(docs=docs_dir)))
    ws.ingest()
    first = ws.catalog.data_fingerprint()
    assert first[1] == sum(1 for p in docs_dir.rglob("*") if p.is_file())
    ws.ingest()  # nothing changed
    assert ws.catalog.data_fingerprint() == first
    page = docs_dir / "billing" / "refunds-and-disputes.md"
    original = page.read_text()
    page.write_text(original)  # a new mtime, the same content
    ws.ingest()
    assert ws.catalog.data_fingerprint() == first
    page.write_text(original + "\nRefunds now take five days.\n")
    ws.ingest()
    changed = ws.catalog.data_fingerprint()
    assert changed[0] != first[0] and changed[1] == first[1]
    page.write_text(original)  # back as it was: the same data again
    ws.ingest()
    assert ws.catalog.data_fingerprint() == first
    page.unlink()
    ws.ingest()
    assert ws.catalog.data_fingerprint()[1] == first[1] - 1


def _two_versions(write_config: Callable[[str], Path], docs_dir: Path, open_workspace: Any) -> tuple[Any, str, str]:
    """A workspace whose settings are version B (top_k = 2); A is the same index with the defaults."""
    config = write_config(LEXICAL.format(docs=docs_dir))
    ws = open_workspace(config)
    ws.ingest()
    base = ws.current_version().id
    write_config(LEXICAL.format(docs=docs_dir) + "\n[retrieval]\ntop_k = 2\n")
    ws = open_workspace(config)
    return ws, base, ws.current_version().id


def _stored(ws: Any) -> int:
    return int(ws.catalog.db.execute("select count(*) from eval_runs").fetchone()[0])


def test_compare_refuses_an_ingest_between_its_two_runs_and_stores_neither(
        write_config: Callable[[str], Path], docs_dir: Path, open_workspace: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ctx.versions.eval as evaluation

    ws, a, b = _two_versions(write_config, docs_dir, open_workspace)
    queries = load(QUERIES)
    real_run = evaluation.run
    halves: list[str] = []

    def run_then_ingest(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = real_run(*args, **kwargs)
        halves.append(out["version"])
        if len(halves) == 1:  # between the halves, someone ingests a change
            page = docs_dir / "billing" / "refunds-and-disputes.md"
            page.write_text(page.read_text() + "\nRefunds now take five days.\n")
            ws.ingest()
        return out

    monkeypatch.setattr(evaluation, "run", run_then_ingest)
    with pytest.raises(UserError) as caught:
        ws.evaluate(queries, compare=[a, b])
    message = str(caught.value)
    assert halves == [a, b] and "\n" not in message
    assert f"versions {a} and {b} ran on different data" in message and "an ingest ran between" in message
    assert _stored(ws) == 0
    monkeypatch.setattr(evaluation, "run", real_run)
    both = ws.evaluate(queries, compare=[a, b])  # on the same data now
    assert both["a"]["data"] == both["b"]["data"] and _stored(ws) == 2


def test_a_run_during_which_the_data_changed_is_refused(write_config: Callable[[str], Path], docs_dir: Path,
                                                        open_workspace: Any) -> None:
    ws = open_workspace(write_config(LEXICAL.format(docs=docs_dir)))
    ws.ingest()

    def ingest_midway(done: int, _total: int) -> None:
        if done == 3:
            (docs_dir / "new-page.md").write_text("# New\n\nA page that arrives mid-run.\n")
            ws.ingest()

    with pytest.raises(UserError, match=r"the data changed while version \S+ was evaluated"):
        ws.evaluate(load(QUERIES), progress=ingest_midway)
    assert _stored(ws) == 0


def test_compare_refuses_a_stale_side_index_until_it_is_rebuilt(write_config: Callable[[str], Path],
                                                                docs_dir: Path, ctx_cli: Any) -> None:
    write_config(LEXICAL.format(docs=docs_dir))
    ctx_cli("ingest", "--quiet")
    base = ctx_cli("eval", str(QUERIES), "--json").json()["version"]
    write_config(LEXICAL.format(docs=docs_dir) + "\n[chunking]\nmax_tokens = 120\n")
    ctx_cli("ingest", "--quiet")
    small_id = ctx_cli("eval", str(QUERIES), "--json").json()["version"]
    both = ctx_cli("eval", str(QUERIES), "--compare", base, small_id, "--json").json()  # builds base's side index
    assert both["a"]["data"]["sha256"] == both["b"]["data"]["sha256"]
    # The live index moves on; base's side index still holds the old page.
    page = docs_dir / "billing" / "refunds-and-disputes.md"
    page.write_text(page.read_text() + "\nRefunds now take five days.\n")
    ctx_cli("ingest", "--quiet")
    refused = ctx_cli("eval", str(QUERIES), "--compare", base, small_id, ok=False)
    assert refused.exit_code == 2 and refused.stdout == "" and refused.stderr.count("\n") == 1, refused
    assert "ran on different data" in refused.stderr and f"ctx versions build {base}" in refused.stderr
    ctx_cli("versions", "build", base, "--json")
    again = ctx_cli("eval", str(QUERIES), "--compare", base, small_id)
    assert f"data {both['a']['data']['sha256'][:12]}" not in again.stdout  # the new data, the same for both
    assert "recall@100" in again.stdout and "A's index" in again.stdout  # the same documents, chunked otherwise
