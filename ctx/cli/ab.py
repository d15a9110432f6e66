"""``ctx ab``: A/B experiments of versions, their per-variant figures and the verdict."""

from __future__ import annotations

from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call

ab_app = typer.Typer(
    help="A/B experiments: \\[experiments.NAME] in ctx.toml splits a recipe's traffic between versions by a "
    "hash of the user (or session, or tenant).\n\nExample: ctx ab report prod_vs_candidate --since 7d",
    no_args_is_help=True,
)


@ab_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the configured experiments: variants, their shares, the version each names today, traffic so far.

    Example: ctx ab list --json
    """
    from ctx.api import operations as ops

    experiments = call(ctx, ops.EXPERIMENTS)
    if as_json:
        print_json(experiments)
        return
    if not experiments:
        err("no experiments configured: add an \\[experiments.NAME] table to ctx.toml (see ctx.toml.example)")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for e in experiments:
        state = "" if e["enabled"] else " [yellow](disabled)[/]"
        table = Table(title=f"{e['name']}{state} · recipe {e['recipe']} · key {e['key']} · metric {e['metric']}",
                      title_justify="left")
        for column in ("variant", "version", "share", "requests", "keys"):
            table.add_column(column, justify="left" if column in ("variant", "version") else "right")
        for v in e["variants"]:
            table.add_row(v["name"], _version(v), f"{v['share']:.0%}", str(v["requests"]), str(v["keys"]))
        console.print(table)


@ab_app.command()
def report(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The experiment: NAME of \\[experiments.NAME] in ctx.toml."),
    since: str = typer.Option("30d", "--since", help="How far back: a duration such as 1h, 24h, 7d or 30d."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Report an experiment: per-variant latency, tokens, cost, drop rate, relevance and eval scores with
    confidence intervals, and a verdict on its metric (a winner, or not significant yet).

    Figures come from the traces the experiment assigned (reruns left out). Means carry a Student-t
    interval, the drop rate a Wilson interval, at the experiment's confidence. The drop rate is the share
    of requests that lost a block: the request failed, a block was dropped over budget, or a provider
    gave nothing in time. Tokens and cost are of answered requests. Each variant is compared with the
    first (the control) by Welch's t-test (the drop rate: a two-proportion z-test); a winner needs a
    significant difference and min_samples on every variant.

    Example: ctx ab report prod_vs_candidate --since 7d
    """
    from ctx.api import operations as ops

    data = call(ctx, ops.AB_REPORT, name=name, since=since)
    if as_json:
        print_json(data)
        return
    _print_report(data)


def register(app: typer.Typer) -> None:
    app.add_typer(ab_app, name="ab")


def _version(v: dict[str, Any]) -> str:
    from rich.markup import escape

    ref = escape(v["ref"])  # free text in ctx.toml
    if v["version"] is None:
        return f"{ref} [yellow](not set)[/]"
    return v["version"] if v["ref"] == v["version"] else f"{ref} = {v['version']}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _mean(figure: dict[str, Any], digits: int, scale: float = 1.0) -> str:
    if figure["mean"] is None:
        return "-"
    text = _num(figure["mean"] * scale, digits)
    if figure["low"] is not None:
        text += f" [dim]\\[{_num(figure['low'] * scale, digits)}, {_num(figure['high'] * scale, digits)}][/]"
    return text


def _p(value: float) -> str:
    return "p < 0.0001" if value < 0.0001 else f"p = {value:.2g}"


def _print_report(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    state = "" if data["enabled"] else " (disabled)"
    console.print(f"experiment {data['experiment']}{state} · recipe {data['recipe']} · key {data['key']} · "
                  f"metric {data['metric']} ({data['better']} is better) · {data['confidence']:.0%} intervals · "
                  f"{data['requests']} requests in the last {data['window']}")
    # One column per variant, one row per figure: variants side by side are what an A/B reader compares.
    variants = data["variants"]
    table = Table()
    table.add_column("")
    for v in variants:
        table.add_column(v["name"] if v["ref"] is not None else f"{v['name']} (not configured)", justify="right")
    metric_row = {"latency": "latency ms", "tokens": "tokens", "cost": "cost USD", "drop_rate": "drop rate %",
                  "relevance": "relevance"}[data["metric"]]
    rows: list[tuple[str, list[str]]] = [
        ("version", [_version(v) if v["ref"] is not None else "-" for v in variants]),
        ("share (observed)", [f"{'-' if v['share'] is None else format(v['share'], '.0%')} "
                              f"({'-' if v['observed_share'] is None else format(v['observed_share'], '.1%')})"
                              for v in variants]),
        ("requests (keys)", [f"{v['requests']} ({v['keys']})" for v in variants]),
        ("latency ms", [_mean(v["latency_ms"], 1) for v in variants]),
        ("p50 / p95 ms", [f"{_num(v['latency_ms']['p50'], 1)} / {_num(v['latency_ms']['p95'], 1)}" for v in variants]),
        ("tokens", [_mean(v["tokens"], 1) for v in variants]),
        ("cost USD", [_mean(v["cost_usd"], 6) for v in variants]),
        ("drop rate %", [_mean(v["drop_rate"], 1, 100.0) for v in variants]),
        ("relevance", [_mean(v["relevance"], 3) for v in variants]),
    ]
    for label, cells in rows:
        table.add_row(f"[bold]{label}[/]" if label == metric_row else label, *cells)
    console.print(table)
    for v in data["variants"]:
        if v["eval"]:
            run = v["eval"]
            scores = " · ".join(f"{k} {val:.4g}" if isinstance(val, int | float) else f"{k} {val}"
                                for k, val in sorted(run["metrics"].items()))
            on = f", data {run['data'][:12]}" if run.get("data") else ""
            console.print(f"eval {v['name']}: {scores} [dim]({run['count']} queries of {run['queries']}{on}, "
                          f"{run['created_at'][:19]})[/]")
    if len({v["eval"].get("data") for v in data["variants"] if v["eval"]}) > 1:
        # Scores measured on different documents differ by the data as much as by the version.
        console.print("[yellow]the variants' eval runs ran on different data: their scores are not comparable "
                      "(ctx eval --compare runs both on the same data)[/]")
    verdict = data["verdict"]
    for c in verdict["comparisons"]:
        if c["difference"] is None:
            continue
        relative = "" if c["relative"] is None else f" ({c['relative'] * 100:+.1f}%)"
        console.print(f"{c['variant']} vs {verdict['control']}: {verdict['metric']} {c['difference']:+.6g}{relative}"
                      f" [{c['low']:.6g}, {c['high']:.6g}], {_p(c['p_value'])}"
                      f"{' (significant)' if c['significant'] else ''}")
    colour = "green" if verdict["status"] == "winner" else "yellow"
    console.print(f"[bold {colour}]{verdict['message']}[/]", highlight=False)
