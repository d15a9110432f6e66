"""``ctx bench``: a synthetic corpus in a fresh home; ingest, re-ingest, assembly latency and memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import typer

from ctx.cli._output import err, print_json


class RichReporter:
    """Progress bars and notes on stderr; silent with --json or when stderr is not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars = not quiet and sys.stderr.isatty()

    def generating(self, total: int) -> AbstractContextManager[Callable[[int], None]]:
        self.note(f"generating {total:,} markdown documents")
        return self._bar(total) if self.bars else nullcontext(lambda n: None)

    @contextmanager
    def _bar(self, total: int) -> Iterator[Callable[[int], None]]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("  corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task("corpus", total=total)
            yield lambda n: bar.advance(task, n)

    def ingest(self, ws: Any, label: str) -> Any:
        from ctx.cli.ingest import progress_bar

        self.note(label)
        with progress_bar(self.quiet) as progress:
            summary = ws.ingest(None, progress)
        self.note(f"  {summary.seconds:.2f}s (embedding {summary.embed_seconds:.2f}s)")
        return summary

    def note(self, message: str) -> None:
        if not self.quiet:
            err(f"[dim]{message}[/]")


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


_STAGES = {"retrieval_ms": "retrieval (BM25 + vectors, fused)", "providers_ms": "all providers, under the deadline",
           "pack_render_ms": "dedup + pack + render",
           "outside_assembler_ms": "request + trace write"}


def _rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    i, a, c, m, again = r["ingest"], r["assemble"], r["corpus"], r["memory"], r["reingest"]
    ratio = "" if i["non_embed_ratio"] is None else f" ({i['non_embed_ratio']:.1%} of embedding)"
    model = "" if i["embed_chunks_per_s"] is None else f" ({i['embed_chunks_per_s']:,.1f} chunks/s)"
    rows = [
        ("corpus", "documents", f"{c['docs']:,}"),
        ("corpus", "size", f"{c['mb']:.2f} MB"),
        ("corpus", "generated in", _seconds(c["generate_seconds"])),
        ("setup", "stores + model load (untimed)", _seconds(i["setup_seconds"])),
        ("first ingest", "total", _seconds(i["seconds"])),
        ("first ingest", "embedding", _seconds(i["embed_seconds"]) + model),
        ("first ingest", "everything else", _seconds(i["non_embed_seconds"]) + ratio),
        ("first ingest", "documents/s", f"{i['docs_per_s']:,.1f}"),
        ("first ingest", "chunks/s", f"{i['chunks_per_s']:,.1f}"),
        ("first ingest", "MB/s", f"{i['mb_per_s']:.3f}"),
        ("first ingest", "chunks written / embedded", f"{i['chunks']:,} / {i['chunks_embedded']:,}"),
        ("re-ingest", f"unchanged corpus ({again['unchanged']:,} docs)", _seconds(again["seconds"])),
        ("re-ingest", "faster than first ingest", _measured("reingest_speedup", again["speedup"])),
        ("assemble", f"p50 / p95 / p99 ({a['queries']} queries)",
         f"{a['p50_ms']:.1f} / {a['p95_ms']:.1f} / {a['p99_ms']:.1f} ms"),
        ("assemble", "mean / max", f"{a['mean_ms']:.1f} / {a['max_ms']:.1f} ms"),
    ]
    rows += [("assemble", f"p50 {label}", f"{a['stages_p50_ms'][key]:.1f} ms")
             for key, label in _STAGES.items() if key in a["stages_p50_ms"]]
    rows.append(("memory", "peak RSS", "–" if m["peak_rss_mb"] is None else f"{m['peak_rss_mb']:,.0f} MB"))
    if m["peak_rss_after_ingest_mb"] is not None:
        rows.append(("memory", "peak RSS after first ingest", f"{m['peak_rss_after_ingest_mb']:,.0f} MB"))
    return rows


def _measured(name: str, value: float | None) -> str:
    if value is None:
        return "–"
    if name == "daemon_added_p50":
        return f"{value:+.2f} ms"
    if name in ("assemble_p99", "daemon_p99_concurrent"):
        return f"{value:.1f} ms"
    return f"{value:.1%}" if name == "non_embedding_ratio" else f"{value:.1f}x"


def print_assembly(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    f, s, h = r["fanout"], r["stampede"], r["cache_hit"]
    table = Table(title="ctx bench --assembly · loopback upstream", title_justify="left")
    for column in ("scenario", "figure", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    par, seq = f["parallel"], f["sequential"]
    table.add_row(f"{f['providers']} providers x {f['latency_ms']:g} ms", "parallel p50 / p99",
                  f"{par['p50']:.1f} / {par['p99']:.1f} ms")
    table.add_row("", "one at a time p50 / p99", f"{seq['p50']:.1f} / {seq['p99']:.1f} ms")
    table.add_row("", "sequential / parallel", f"{f['speedup']:.2f}x")
    for label, run in (("stampede, cache on", s["protected"]), ("stampede, cache off", s["unprotected"])):
        table.add_row(label, f"upstream calls for {run['requests']} requests", f"{run['upstream_calls']}")
        table.add_row("", "answered", f"{run['answered']}")
        table.add_row("", "p50 / p99", f"{run['p50_ms']:.1f} / {run['p99_ms']:.1f} ms")
    table.add_row("cache hit (L1)", f"p50 / p99 ({h['requests']} requests)",
                  f"{h['p50_ms']:.3f} / {h['p99_ms']:.3f} ms")
    table.add_row("", "the same request, cold", f"{h['first_ms']:.1f} ms")
    console = Console()
    console.print(table)
    for t in r["targets"].values():
        mark = "[green]PASS[/]" if t["passed"] else "[red]FAIL[/]"
        console.print(f"{mark} {t['target']}: {t['value']}")


def print_report(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    mode = ("lexical only (--embedder none): no model, no vectors" if r["lexical_only"]
            else f"embedder {r['model_id']}")
    title = f"ctx bench · {r['corpus']['docs']:,} docs · {r['assemble']['chunks']:,} chunks · {mode}"
    table = Table(title=title, title_justify="left")
    for column in ("phase", "figure", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for row in _rows(r):
        table.add_row(*row)
    console = Console()
    console.print(table)
    targets = Table(title="targets", title_justify="left")
    for column in ("target", "measured", "result"):
        targets.add_column(column, justify="right" if column == "measured" else "left")
    for name, t in r["targets"].items():
        colour = {"PASS": "green", "FAIL": "red"}.get(t["status"], "dim")
        note = f"\n[dim]{t['note']}[/]" if t["note"] else ""
        targets.add_row(t["target"], _measured(name, t["value"]), f"[{colour}]{t['status']}[/]{note}")
    if r.get("daemon"):
        console.print(_daemon_table(r))
    console.print(targets)
    machine = r.get("machine", {})
    load = machine.get("load_before")
    if load is not None and machine.get("cpus") and load > 0.5 * machine["cpus"]:
        console.print(f"[yellow]warning:[/] load average {load} on {machine['cpus']} CPUs: other work was "
                      "running, so these figures (the model's above all) are pessimistic")
    if r["failed"]:
        failed = ", ".join(r["failed"])
        console.print(f"[red]targets not met:[/] {failed} (a measurement, not a test: the exit code stays 0)")
    if r["home"]:
        console.print(f"[dim]bench home kept at {r['home']}[/]")


def _daemon_table(r: dict[str, Any]) -> Any:
    """The in-process figures of the same queries, then one row per client count through the daemon."""
    from rich.table import Table

    d, a = r["daemon"], r["assemble"]
    exit_code = d["exit_code"] if not d["killed"] else f"{d['exit_code']} (killed)"
    title = f"daemon · {d['transport']} · {d['chunks']:,} chunks · {r['machine'].get('cpus') or '?'} CPUs"
    rss = "" if d["peak_rss_mb"] is None else f", peak RSS {d['peak_rss_mb']:,.0f} MB"
    caption = (f"daemon adds {d['added_p50_ms']:+.2f} ms at p50 and {d['added_p99_ms']:+.2f} ms at p99 over the "
               "in-process call (one client, the same queries); outside the assembler's own time it adds "
               f"{d['added_outside_assembler_p50_ms']:+.2f} ms at p50. GET /healthz round trip: p50 "
               f"{d['healthz_p50_ms']:.2f} ms. \"assembler\": the assembler's own time, the rest is transport, "
               "framework, JSON, trace write and waiting for a CPU. The daemon was ready in "
               f"{_seconds(d['start_seconds'])}{rss}, and exited with code {exit_code}.")
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in ("clients", "requests", "p50 ms", "p95 ms", "p99 ms", "assembler p50", "req/s"):
        table.add_column(column, justify="right")
    in_total = a["stages_p50_ms"].get("total_ms")
    table.add_row("in-process", f"{a['queries']:,}", f"{a['p50_ms']:.1f}", f"{a['p95_ms']:.1f}", f"{a['p99_ms']:.1f}",
                  "–" if in_total is None else f"{in_total:.1f}",
                  f"{1000 / a['mean_ms']:,.1f}" if a["mean_ms"] > 0 else "–")
    for level in d["levels"]:
        table.add_row(f"{level['clients']}", f"{level['requests']:,}", f"{level['p50_ms']:.1f}",
                      f"{level['p95_ms']:.1f}", f"{level['p99_ms']:.1f}", f"{level['assembler_p50_ms']:.1f}",
                      "–" if level["rps"] is None else f"{level['rps']:,.1f}")
    return table


KEEP = typer.Option(None, "--keep", help="Keep the bench home in this empty directory (default: a temp dir).")


def register(app: typer.Typer) -> None:
    @app.command()
    def bench(
        docs: int = typer.Option(2000, "--docs", "-n", min=1, help="Synthetic documents to generate."),
        large: bool = typer.Option(False, "--large", help="100,000 documents (overrides --docs)."),
        queries: int = typer.Option(200, "--queries", min=1, help="Requests to time, after 10 warm-up."),
        budget: int = typer.Option(2000, "--budget", "-b", min=0, help="Token budget of each context."),
        embedder: str = typer.Option("minilm", "--embedder", help="minilm (real model) or none (lexical)."),
        seed: int = typer.Option(7, "--seed", help="Seed of the corpus and the queries."),
        keep: Path | None = KEEP,
        chunk_tokens: int = typer.Option(256, "--chunk-tokens", min=16, max=8192, help="Chunk size."),
        as_json: bool = typer.Option(False, "--json", help="Every figure and target as JSON, nothing else."),
        daemon: bool = typer.Option(False, "--daemon", help="Then the same queries through a real daemon "
                                    "subprocess: its added latency, and latency and req/s under concurrent clients."),
        clients: str | None = typer.Option(None, "--clients", help="With --daemon: client counts, comma-separated "
                                           "(1 is sequential). Default 1,10,50."),
        assembly: bool = typer.Option(False, "--assembly", help="Instead: 5 providers x 40 ms in parallel vs one "
                                      "at a time, the 500-request stampede, and cache-hit latency (a loopback API)."),
    ) -> None:
        """Benchmark the pipeline on a synthetic corpus in a fresh, temporary home.

        Reports ingest throughput (embedding and the rest apart), re-ingest time, assemble latency
        p50/p95/p99 and peak RSS, and checks them against the targets. Exits 0 even when a target
        fails: it is a measurement, not a test. CTX_MODEL_DIR, if set, is reused for the model.

        With --daemon, the same queries then go through a daemon started on the bench home (no
        scheduler), from one client in sequence and from --clients threads at once.

        With --assembly, it measures the provider fan-out, the stampede protection and cache hits
        instead, against a loopback JSON API with 40 ms latency (no corpus).

        Example: ctx bench --docs 500 --embedder none
        """
        if assembly:
            from ctx.bench.assembly import run_assembly_bench

            outcome = run_assembly_bench(dict(os.environ), requests=min(queries, 200),
                                         note=RichReporter(as_json).note)
            if as_json:
                print_json(outcome)
            else:
                print_assembly(outcome)
            return
        from ctx.bench.daemon import DEFAULT_CLIENTS, parse_clients
        from ctx.bench.run import LARGE_DOCS, BenchOptions, run_bench
        from ctx.errors import UserError

        if clients is not None and not daemon:
            raise UserError("--clients needs --daemon")
        counts = parse_clients(clients) if clients is not None else DEFAULT_CLIENTS
        options = BenchOptions(docs=LARGE_DOCS if large else docs, queries=queries, budget=budget,
                               embedder=embedder, seed=seed, chunk_tokens=chunk_tokens, keep=keep,
                               daemon=daemon, clients=counts)
        result = run_bench(options, dict(os.environ), RichReporter(as_json))
        if as_json:
            print_json(result)
        else:
            print_report(result)
