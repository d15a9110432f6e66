"""``ctx bench`` end to end on a tiny corpus: every figure present, sane and consistent; no timing limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctx.bench.corpus import document, queries
from ctx.bench.vocabulary import build_vocabulary

TARGETS = {"assemble_p99", "non_embedding_ratio", "reingest_speedup"}
DAEMON_TARGETS = {"daemon_added_p50", "daemon_p99_concurrent"}


def _check_common(r: dict, docs: int, n_queries: int, targets: set[str] = TARGETS, home: str | None = None) -> None:
    assert r["corpus"]["docs"] == docs
    assert r["corpus"]["bytes"] > 0
    i = r["ingest"]
    assert i["ok"] and i["docs"] == docs and i["quarantined"] == 0
    assert i["chunks"] > docs  # the generator aims at ~3 chunks per document
    assert i["seconds"] > 0 and i["docs_per_s"] > 0 and i["chunks_per_s"] > 0 and i["mb_per_s"] > 0
    assert i["non_embed_seconds"] == pytest.approx(i["seconds"] - i["embed_seconds"], abs=0.002)
    again = r["reingest"]
    assert again["unchanged"] == docs and again["chunks_written"] == 0 and again["chunks_embedded"] == 0
    assert again["speedup"] > 1
    a = r["assemble"]
    assert a["queries"] == n_queries and a["chunks"] == i["chunks"]
    assert 0 < a["p50_ms"] <= a["p95_ms"] <= a["p99_ms"] <= a["max_ms"]
    assert r["memory"]["peak_rss_mb"] > 0
    assert set(r["targets"]) == targets
    for t in r["targets"].values():
        assert t["status"] in ("PASS", "FAIL") or t["status"].startswith("n/a")
    assert r["failed"] == [k for k, t in r["targets"].items() if t["passed"] is False]
    assert r["home"] == home


def test_bench_lexical_json(ctx_cli) -> None:
    res = ctx_cli("bench", "--docs", "40", "--queries", "20", "--embedder", "none", "--json")
    r = res.json()  # stdout is JSON and nothing else
    _check_common(r, 40, 20)
    assert r["lexical_only"] is True and r["model_id"] == "none"
    assert r["ingest"]["embed_seconds"] == 0 and r["ingest"]["chunks_embedded"] == 0
    assert r["targets"]["non_embedding_ratio"]["status"] == "n/a (no embedding)"
    assert r["targets"]["non_embedding_ratio"]["passed"] is None


@pytest.mark.model
def test_bench_with_model_measures_embedding(ctx_cli) -> None:
    r = ctx_cli("bench", "--docs", "8", "--queries", "5", "--json").json()
    _check_common(r, 8, 5)
    assert r["lexical_only"] is False
    # A fresh home: the embedding cache starts empty, so every chunk goes through the model.
    assert r["ingest"]["chunks_embedded"] == r["ingest"]["chunks"]
    assert r["ingest"]["embed_seconds"] > 0
    ratio = r["targets"]["non_embedding_ratio"]
    assert isinstance(ratio["value"], float) and ratio["value"] >= 0
    assert ratio["status"] in ("PASS", "FAIL")


def test_bench_table_and_keep(ctx_cli, tmp_path: Path) -> None:
    keep = tmp_path / "bench-home"
    res = ctx_cli("bench", "--docs", "12", "--queries", "3", "--embedder", "none", "--keep", str(keep))
    assert "targets" in res.stdout and "n/a (no embedding)" in res.stdout
    assert (keep / "catalog.db").exists() and len(list((keep / "corpus").rglob("*.md"))) == 12
    # A used home would start with a warm embedding cache: refused.
    again = ctx_cli("bench", "--docs", "12", "--keep", str(keep), "--embedder", "none", ok=False)
    assert again.exit_code == 2 and "must be an empty directory" in again.stderr


def test_bench_rejects_unknown_embedder(ctx_cli) -> None:
    res = ctx_cli("bench", "--docs", "5", "--embedder", "openai", ok=False)
    assert res.exit_code == 2 and "--embedder" in res.stderr


def test_corpus_and_queries_are_deterministic() -> None:
    vocab = build_vocabulary(7)
    assert len(vocab.terms.words) == 3000
    again = build_vocabulary(7)
    assert [document(7, i, vocab) for i in range(5)] == [document(7, i, again) for i in range(5)]
    assert document(7, 0, vocab) != document(8, 0, build_vocabulary(8))
    path, text = document(7, 3, vocab)
    assert path.endswith("-000003.md") and text.startswith("# ") and text.count("\n## ") >= 2
    assert 150 <= len(text.split()) <= 1000
    qs = queries(7, 50)
    assert qs == queries(7, 50) and all(2 <= len(q.split()) <= 6 for q in qs)


def test_bench_daemon_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--daemon: the same queries through a real daemon subprocess, 1 client then 5; it is stopped after."""
    import os

    from ctx.api import runtime as rt
    from ctx.bench.run import BenchOptions, run_bench
    from ctx.cli.bench import print_report

    keep = tmp_path / "bench-home"
    options = BenchOptions(docs=30, queries=20, embedder="none", keep=keep, daemon=True, clients=(1, 5))
    r = run_bench(options, dict(os.environ))
    _check_common(r, 30, 20, TARGETS | DAEMON_TARGETS, str(keep))
    assert "scheduler = false" in (keep / "ctx.toml").read_text()
    d = r["daemon"]
    assert d["exit_code"] == 0 and d["killed"] is False and d["transport"] == "unix socket"
    assert d["chunks"] == r["assemble"]["chunks"] and d["start_seconds"] > 0 and d["warmup"] == 10
    assert [level["clients"] for level in d["levels"]] == [1, 5]
    one, five = d["levels"]
    assert one["requests"] == 20 and five["requests"] == max(20, 5 * 4)
    for level in d["levels"]:
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"] <= level["max_ms"]
        assert level["rps"] > 0 and level["wall_seconds"] > 0 and level["assembler_p50_ms"] > 0
    assert d["inprocess_p50_ms"] == r["assemble"]["p50_ms"]
    assert d["added_p50_ms"] == pytest.approx(one["p50_ms"] - r["assemble"]["p50_ms"], abs=0.002)
    assert d["added_p99_ms"] == pytest.approx(one["p99_ms"] - r["assemble"]["p99_ms"], abs=0.002)
    assert d["healthz_p50_ms"] > 0 and isinstance(d["added_outside_assembler_p50_ms"], float)
    assert r["targets"]["daemon_added_p50"]["status"] in ("PASS", "FAIL")
    assert r["targets"]["daemon_p99_concurrent"]["passed"] is None  # no 50-client level in this run
    # The daemon is gone and cleaned up after itself: no process, no runtime file, no socket.
    assert not rt.alive(d["pid"])
    assert rt.read(keep) is None and not (keep / "daemon.json").exists() and not (keep / "daemon.sock").exists()
    assert "stopped" in (keep / "daemon.log").read_text()
    print_report(r)
    out = capsys.readouterr().out
    assert "daemon · unix socket" in out and "daemon adds" in out


def test_bench_clients_option(ctx_cli) -> None:
    assert "--clients needs --daemon" in ctx_cli("bench", "--clients", "1,5", ok=False).stderr
    res = ctx_cli("bench", "--daemon", "--clients", "0,5", ok=False)
    assert res.exit_code == 2 and "between 1 and" in res.stderr
