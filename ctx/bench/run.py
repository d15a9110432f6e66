"""One bench run: a fresh home, the corpus, first ingest, re-ingest, assemble latency and peak memory.

With ``daemon``, the same queries then go through a real daemon subprocess as well (ctx.bench.daemon).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ctx.bench.corpus import queries, write_corpus
from ctx.bench.figures import current_rss_mb, judge_targets, load_average, peak_rss_mb, percentiles
from ctx.errors import UserError

LARGE_DOCS = 100_000
WARMUP_QUERIES = 10
EMBEDDERS = ("minilm", "none")
SOURCE = "bench"


@dataclass(frozen=True)
class BenchOptions:
    docs: int = 2000
    queries: int = 200
    budget: int = 2000
    embedder: str = "minilm"
    seed: int = 7
    chunk_tokens: int = 256
    keep: Path | None = None
    daemon: bool = False  # also measure through a real daemon subprocess (ctx.bench.daemon)
    clients: tuple[int, ...] = (1, 10, 50)  # the daemon's client counts; 1 is sequential


class Reporter(Protocol):
    """How a run shows progress; the CLI draws bars, tests and --json stay silent."""

    def generating(self, total: int) -> AbstractContextManager[Callable[[int], None]]: ...
    def ingest(self, ws: Any, label: str) -> Any: ...
    def note(self, message: str) -> None: ...


class QuietReporter:
    def generating(self, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda n: None)

    def ingest(self, ws: Any, label: str) -> Any:
        return ws.ingest()

    def note(self, message: str) -> None:
        pass


def run_bench(options: BenchOptions, environ: Mapping[str, str],
              reporter: Reporter | None = None) -> dict[str, Any]:
    """Measure one run end to end and return every figure and target as a JSON-ready dict."""
    if options.embedder not in EMBEDDERS:
        raise UserError(f"--embedder must be one of {', '.join(EMBEDDERS)}")
    if options.docs < 1 or options.queries < 1:
        raise UserError("--docs and --queries must be at least 1")
    if options.daemon and (not options.clients or min(options.clients) < 1):
        raise UserError("--clients must be client counts of at least 1")
    home = _prepare_home(options.keep)
    try:
        result = _measure(options, home, environ, reporter or QuietReporter())
        result["home"] = str(home) if options.keep else None
        return result
    finally:
        if options.keep is None:
            shutil.rmtree(home, ignore_errors=True)


def _prepare_home(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="ctx-bench-"))
    keep = keep.expanduser().resolve()
    # A used home would hold a warm embedding cache, and the first ingest would embed nothing.
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise UserError(f"--keep {keep}: must be an empty directory or not exist yet")
    keep.mkdir(parents=True, exist_ok=True)
    return keep


def write_config(home: Path, options: BenchOptions) -> Path:
    overlap = min(32, options.chunk_tokens // 4)  # settings require overlap < max_tokens / 2
    path = home / "ctx.toml"
    path.write_text(
        "# Written by `ctx bench`: one files source over the synthetic corpus.\n"
        f"[chunking]\nmax_tokens = {options.chunk_tokens}\noverlap_tokens = {overlap}\n\n"
        f'[embedding]\nembedder = "{options.embedder}"\n\n'
        # The pipeline's own latency is measured: a repeated query must not be answered from the cache
        # (`ctx bench --assembly` measures the caches).
        "[cache]\nenabled = false\n\n"
        f'[sources.{SOURCE}]\nkind = "files"\npath = "corpus"\ninclude = ["**/*.md"]\n'
        # No scheduled (or watched) sync may run in the daemon while it is being measured.
        + ("\n[daemon]\nscheduler = false\n" if options.daemon else ""),
        encoding="utf-8",
    )
    return path


def bench_env(home: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus its ctx settings: the bench home is the only home in play."""
    env = {k: v for k, v in environ.items() if not k.startswith("CTX_")}
    env["CTX_HOME"] = str(home)
    if environ.get("CTX_MODEL_DIR"):  # an already unpacked model saves seconds and disk per run
        env["CTX_MODEL_DIR"] = environ["CTX_MODEL_DIR"]
    return env


def _measure(options: BenchOptions, home: Path, environ: Mapping[str, str],
             reporter: Reporter) -> dict[str, Any]:
    from ctx.settings import load_settings
    from ctx.workspace import Workspace

    load_before = load_average()  # before our own work adds to it
    started = time.perf_counter()
    with reporter.generating(options.docs) as advance:
        corpus = write_corpus(home / "corpus", options.docs, options.seed, advance)
    generate_s = time.perf_counter() - started
    env = bench_env(home, environ)
    config = write_config(home, options)
    ws = Workspace(load_settings(config, env), env)
    try:
        setup_s = _open_stores(ws)
        first = reporter.ingest(ws, "first ingest")
        peak_after_ingest = peak_rss_mb()
        again = reporter.ingest(ws, "re-ingest (unchanged)")
        all_queries = queries(options.seed, WARMUP_QUERIES + options.queries)
        warmup, measured = all_queries[:WARMUP_QUERIES], all_queries[WARMUP_QUERIES:]
        reporter.note(f"assembling {WARMUP_QUERIES} warm-up + {options.queries} measured queries "
                      f"(budget {options.budget} tokens)")
        latencies, stages = _assemble(ws, warmup, measured, options.budget)
        chunks = ws.catalog.chunk_count()
        model_id = first.model_id
        cache_key_model = ws.embedder.model_id if ws.embedder is not None else None
    finally:
        ws.close()  # the daemon opens the same stores: this process lets go of them first
    daemon = None
    if options.daemon:
        from ctx.bench.daemon import measure_daemon

        forget = None if cache_key_model is None else _query_cache_forgetter(home, cache_key_model)
        inprocess = {**percentiles(latencies),
                     "outside_assembler_p50": percentiles(stages.get("outside_assembler_ms", []))["p50"]}
        daemon = measure_daemon(home, config, env, warmup, measured, options.budget, options.clients, inprocess,
                                reporter.note, forget)
    result = _figures(options, corpus, generate_s, setup_s, first, again, latencies, stages, chunks, model_id,
                      peak_after_ingest, daemon)
    result["machine"] = {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_average()}
    return result


def _query_cache_forgetter(home: Path, model_id: str) -> Callable[[Sequence[str]], None]:
    """Drops queries' vectors from the embedding cache, so the daemon embeds each query as this run did.

    Opening the cache without settings keeps the ones stored with it.
    """
    def forget(texts: Sequence[str]) -> None:
        import diskcache

        from ctx.process.embedding import cache_dir, cache_key, text_hash

        with diskcache.Cache(str(cache_dir(home))) as cache:
            for text in texts:
                cache.delete(cache_key(model_id, text_hash(text)))

    return forget


def _open_stores(ws: Any) -> float:
    """Open the catalog and Chroma and load the model before timing: a warm process, as in production.

    Otherwise the first ingest would count the model load as embedding time (and Chroma start-up as
    pipeline time), which flatters both the non-embedding ratio and the re-ingest speed-up.
    """
    started = time.perf_counter()
    _ = ws.catalog
    if ws.embedder is not None:
        ws.embedder.inner.embed(["warm-up"])  # the inner model: the embedding cache stays empty
        _ = ws.vectors
    return time.perf_counter() - started


def _assemble(ws: Any, warmup: list[str], measured: list[str], budget: int
              ) -> tuple[list[float], dict[str, list[float]]]:
    """Wall time of each assemble (trace write included), and the assembler's own stage timings."""
    for query in warmup:
        ws.assemble(ws.request(query, budget, None, None, ws.filters()))
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    for query in measured:
        t0 = time.perf_counter()
        context = ws.assemble(ws.request(query, budget, None, None, ws.filters()))
        elapsed = (time.perf_counter() - t0) * 1000
        latencies.append(elapsed)
        for name, ms in context.timings.items():
            stages.setdefault(name, []).append(ms)
        # What the assembler does not time itself: building the request and writing the trace.
        stages.setdefault("outside_assembler_ms", []).append(elapsed - context.timings.get("total_ms", 0.0))
    return latencies, stages


def _figures(options: BenchOptions, corpus: Any, generate_s: float, setup_s: float, first: Any, again: Any,
             latencies: list[float], stages: dict[str, list[float]], chunks: int, model_id: str,
             peak_after_ingest: float | None, daemon: dict[str, Any] | None = None) -> dict[str, Any]:
    totals, again_totals = first.totals(), again.totals()
    seconds = max(first.seconds, 1e-9)
    embedding = options.embedder != "none" and first.embed_seconds > 0
    non_embed_s = first.seconds - first.embed_seconds
    non_embed_ratio = non_embed_s / first.embed_seconds if embedding else None
    model_rate = totals["chunks_embedded"] / first.embed_seconds if embedding else None
    speedup = first.seconds / again.seconds if again.seconds > 0 else None
    lat = percentiles(latencies)
    mb = corpus.bytes / 1e6
    targets = judge_targets(lat["p99"], chunks, non_embed_ratio, speedup, options.embedder == "none", daemon,
                            os.cpu_count())
    return {
        "embedder": options.embedder, "model_id": model_id, "lexical_only": options.embedder == "none",
        "seed": options.seed, "chunk_tokens": options.chunk_tokens,
        "corpus": {"docs": corpus.documents, "bytes": corpus.bytes, "mb": round(mb, 3), "words": corpus.words,
                   "generate_seconds": round(generate_s, 3)},
        "ingest": {
            "seconds": round(first.seconds, 3), "embed_seconds": round(first.embed_seconds, 3),
            "non_embed_seconds": round(non_embed_s, 3),
            "non_embed_ratio": None if non_embed_ratio is None else round(non_embed_ratio, 4),
            "setup_seconds": round(setup_s, 3), "docs": totals["new"], "chunks": totals["chunks_written"],
            "chunks_embedded": totals["chunks_embedded"], "quarantined": totals["quarantined"],
            "docs_per_s": round(totals["new"] / seconds, 2),
            "chunks_per_s": round(totals["chunks_written"] / seconds, 2),
            "mb_per_s": round(mb / seconds, 4),
            "embed_chunks_per_s": None if model_rate is None else round(model_rate, 2),
            "ok": first.ok, "warnings": first.warnings,
        },
        "reingest": {
            "seconds": round(again.seconds, 4), "unchanged": again_totals["unchanged"],
            "chunks_written": again_totals["chunks_written"],
            "chunks_embedded": again_totals["chunks_embedded"],
            "speedup": None if speedup is None else round(speedup, 2),
        },
        "assemble": {
            "queries": len(latencies), "warmup": WARMUP_QUERIES, "budget": options.budget, "chunks": chunks,
            **{f"{k}_ms": round(v, 3) for k, v in lat.items()},
            "stages_p50_ms": {k: round(percentiles(v)["p50"], 3) for k, v in stages.items()},
            "stages_p99_ms": {k: round(percentiles(v)["p99"], 3) for k, v in stages.items()},
        },
        "memory": {
            "peak_rss_mb": _round(peak_rss_mb()), "peak_rss_after_ingest_mb": _round(peak_after_ingest),
            "rss_mb": _round(current_rss_mb()),
        },
        **({"daemon": {**daemon, "chunks": chunks}} if daemon is not None else {}),
        "targets": targets,
        "failed": [name for name, t in targets.items() if t["passed"] is False],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
