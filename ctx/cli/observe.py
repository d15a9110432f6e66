"""``ctx cost`` and ``ctx slo``: where the money went, and whether the objectives hold."""

from __future__ import annotations

from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call

COST_GROUPS = (("day", "day"), ("recipe", "recipe"), ("tenant", "tenant"))


def register(app: typer.Typer) -> None:
    @app.command()
    def cost(
        ctx: typer.Context,
        since: str = typer.Option("7d", "--since", help="How far back: a duration such as 1h, 24h, 7d or 30d."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """Report what context cost by day, recipe, source, provider and tenant, and what to cut first.

        Costs come from the traces (context tokens at the model's price, query embeddings, provider calls)
        and the ingest runs (embeddings), priced by \\[pricing] in ctx.toml.

        Example: ctx cost --since 30d
        """
        from ctx.api import operations as ops

        report = call(ctx, ops.COST, since=since)
        if as_json:
            print_json(report)
            return
        _print_cost(report)

    @app.command()
    def slo(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")
    ) -> None:
        """Show each service level objective over 1h, 1d and 7d: SLI, error budget left, burn rate.

        Objectives are set in \\[slo] of ctx.toml (latency, availability, freshness, relevance).

        Example: ctx slo --json
        """
        from ctx.api import operations as ops

        report = call(ctx, ops.SLO)
        if as_json:
            print_json(report)
            return
        _print_slo(report)


def _usd(value: float) -> str:
    return f"${value:,.4f}"


def _print_cost(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    b = report["breakdown"]
    console.print(f"{report['requests']} requests since {report['since'][:19]}: {_usd(report['total_usd'])} "
                  f"({_usd(report['per_request_usd'])} per request) · context {_usd(b['context_usd'])} · "
                  f"query embeddings {_usd(b['embedding_usd'])} · provider calls {_usd(b['providers_usd'])}")
    ingest = report["ingest"]
    console.print(f"ingest: {ingest['runs']} runs embedded {ingest['tokens_embedded']:,} tokens for "
                  f"{_usd(ingest['embedding_usd'])}")
    for key, title in COST_GROUPS:
        rows = report["by"][key]
        if not rows:
            continue
        table = Table(title=f"by {title}", title_justify="left")
        for column in (title, "requests", "USD", "per request", "context", "providers", "tokens"):
            table.add_column(column, justify="left" if column == title else "right")
        for r in rows:
            table.add_row(r["key"], str(r["requests"]), _usd(r["total_usd"]), _usd(r["per_request_usd"]),
                          _usd(r["context_usd"]), _usd(r["providers_usd"]), f"{r['tokens']:,}")
        console.print(table)
    if report["by"]["source"]:
        table = Table(title="by source (context cost split by the tokens of kept blocks)", title_justify="left")
        for column in ("source", "requests", "USD", "tokens kept", "share"):
            table.add_column(column, justify="left" if column == "source" else "right")
        for r in report["by"]["source"]:
            table.add_row(r["key"], str(r["requests"]), _usd(r["total_usd"]), f"{r['tokens']:,}", f"{r['share']:.0%}")
        console.print(table)
    if report["by"]["provider"]:
        table = Table(title="by provider", title_justify="left")
        for column in ("provider", "requests", "calls", "USD", "per call", "failures", "kept", "mean score"):
            table.add_column(column, justify="left" if column == "provider" else "right")
        for r in report["by"]["provider"]:
            score = "-" if r["mean_score"] is None else f"{r['mean_score']:.3f}"
            table.add_row(r["key"], str(r["requests"]), str(r["calls"]), _usd(r["total_usd"]),
                          _usd(r["per_call_usd"]), str(r["failures"]), f"{r['kept']}/{r['blocks']}", score)
        console.print(table)
    for d in report["drivers"]:
        console.print(f"driver    {d['kind']} {d['key']}: {_usd(d['total_usd'])} ({d['share']:.0%}) · {d['why']}")
    for c in report["cut_first"]:
        console.print(f"cut first {c['provider']}: {c['why']}")
    if not report["requests"] and not ingest["runs"]:
        err("nothing spent in this window")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _print_slo(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table()
    table.add_column("objective")
    table.add_column("target", justify="right")
    for label in ("1h", "1d", "7d"):
        table.add_column(f"{label}: SLI, budget left, burn", justify="right")
    for o in report["objectives"]:
        cells = [o["name"], _pct(o["target"])]
        for label in ("1h", "1d", "7d"):
            w = o["windows"][label]
            if not w["total"]:
                cells.append("[dim]no data[/]")
                continue
            colour = "green" if w["met"] else "red"
            cells.append(f"[{colour}]{_pct(w['sli'])}[/] of {w['total']}\n"
                         f"{_pct(w['budget_left'])} · {w['burn_rate']:.2f}x")
        table.add_row(*cells)
    console.print(table)
    for o in report["objectives"]:
        console.print(f"[dim]{o['name']}: {o['description']}[/]")
    if not report["objectives"]:
        err("no objectives enabled: see \\[slo] in ctx.toml.example")
