"""``ctx eval``: offline evaluation of labeled queries, one version or two side by side."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import client

LABELS = {"recall_at_k": "recall@{k}", "recall_at_100": "recall@100", "mrr": "MRR", "ndcg_at_10": "nDCG@10",
          "token_efficiency": "token efficiency"}
BAR_FROM = 20  # queries: below this a run is over before a bar is worth drawing


@contextmanager
def _bar(total: int, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on an interactive stderr for runs of many queries; nothing otherwise."""
    if quiet or total < BAR_FROM or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("  queries"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("queries", total=total)
        yield lambda done, _total: bar.update(task, completed=done)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        ctx: typer.Context,
        queries_file: Path = typer.Argument(..., help="Labeled queries: JSONL lines with query and relevant (and "
                                                      "an optional id), or BEIR queries.jsonl with --qrels."),
        qrels: Path | None = typer.Option(None, "--qrels", help="BEIR/TREC judgements: query-id, corpus-id, score."),
        version: str | None = typer.Option(None, "--version",
                                           help="A stored version: id, id prefix or label (default: in force)."),
        compare: tuple[str, str] | None = typer.Option(None, "--compare", metavar="V1 V2",
                                                       help="Run two versions on the same queries, side by side."),
        k: int = typer.Option(10, "--k", min=1, max=1000, help="The cutoff of recall@k."),
        recipe: str | None = typer.Option(None, "--recipe", "-r",
                                          help="A recipe of ctx.toml (default: the assembly recipe)."),
        as_json: bool = typer.Option(False, "--json",
                                     help="Print the run (or the comparison) as JSON, with per-query results."),
    ) -> None:
        """Score retrieval and context on labeled queries: recall@k, recall@100, MRR, nDCG@10, token efficiency.

        Each query is assembled with the version as a real request is, but no trace is stored (evaluation
        counts toward no SLO, cost or experiment); the run is kept, with the version and a fingerprint of
        the data it ran on, for `ctx ab report` and `ctx audit`. recall@100 ranks deeper with the same
        search; the other metrics score the ranking and context the version serves. A version that chunks
        or embeds differently gets its side index built first; --compare refuses runs on different data.

        Example: ctx eval fixtures/eval/queries.jsonl --compare prod candidate
        """
        from ctx.api.schemas import EvalIn
        from ctx.client import build
        from ctx.versions.evalset import load

        queries = load(queries_file, qrels)
        name = str(queries_file) if qrels is None else f"{queries_file} (qrels {qrels})"
        pair = list(compare) if compare else []
        body = build(EvalIn, queries=[q.to_dict() for q in queries], name=name, version=version,
                     compare=pair or None, k=k, recipe=recipe)
        backend = client(ctx)
        total = len(queries) * (2 if pair else 1)
        if backend.mode == "daemon" and not as_json:
            err(f"[dim]evaluating {len(queries)} queries in the daemon[/]")
        with _bar(total, as_json) as progress:
            result = backend.eval(body, progress, lambda message: err(f"[dim]{message}[/]"))
        if as_json:
            print_json(result)
        elif "comparison" in result:
            _print_comparison(result)
        else:
            _print_run(result)


def _label(metric: str, k: int) -> str:
    return LABELS.get(metric, metric).format(k=k)


def _data(run: dict[str, Any]) -> str:
    data = run["data"]
    return f"data {data['sha256'][:12]} ({data['documents']:,} documents, {data['chunks']:,} chunks)"


def _depth(run: dict[str, Any]) -> str:
    # Said, not hidden: with few candidates (or few matching documents) a "recall@100" ranks fewer than 100.
    depth = run["depth"]
    return (f"recall@{depth['cutoff']} over rankings of {depth['mean']:g} documents on average "
            f"(fewest {depth['min']}); the other metrics over the ranking the version serves")


def _print_run(run: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    print(f"version {run['version']} · recipe {run['recipe']} · {run['count']} queries · {run['queries']}")
    print(_data(run))
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for metric, value in run["metrics"].items():
        table.add_row(_label(metric, run["k"]), f"{value:.4f}")
    Console().print(table)
    print(_depth(run))
    _misses(run)


def _misses(run: dict[str, Any]) -> None:
    missed = [r["id"] for r in run["results"] if r["first_relevant"] is None]
    if missed:
        err(f"no relevant document retrieved for {len(missed)} of {run['count']}: {', '.join(missed[:20])}"
            + (" ..." if len(missed) > 20 else ""))
    failed = [r for r in run["results"] if r["error"]]
    for r in failed[:5]:
        err(f"[yellow]query {r['id']} got no context:[/] {r['error']}")
    err(f"[dim]eval run {run['id']} stored (queries sha256 {run['queries_sha256'][:12]})[/]")


def _print_comparison(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    a, b = result["a"], result["b"]
    print(f"A {a['version']} · B {b['version']} · recipe {a['recipe']} · {result['count']} queries · {a['queries']}")
    print(_data(a) if b["data"]["index"] == a["data"]["index"] else  # the same documents, chunked otherwise:
          f"data {a['data']['sha256'][:12]} ({a['data']['documents']:,} documents; A's index "
          f"{a['data']['chunks']:,} chunks, B's {b['data']['chunks']:,})")
    table = Table(caption="Δ = B - A; 95% interval and p from a paired bootstrap over the queries",
                  caption_justify="left")
    for column in ("metric", "A", "B", "Δ", "95% CI", "p", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for row in result["comparison"]:
        if row["significant"]:
            verdict = "[green]B better[/]" if row["delta"] > 0 else "[red]B worse[/]"
        else:
            verdict = "[dim]not significant[/]"
        table.add_row(_label(row["metric"], result["k"]), f"{row['a']:.4f}", f"{row['b']:.4f}",
                      f"{row['delta']:+.4f}", f"[{row['low']:+.3f}, {row['high']:+.3f}]", f"{row['p_value']:.3f}",
                      verdict)
    Console().print(table)
    print(f"A: {_depth(a)}\nB: {_depth(b)}")
    err(f"[dim]eval runs {a['id']} (A) and {b['id']} (B) stored[/]")
