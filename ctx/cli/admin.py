"""``ctx init``, ``ctx sources``, ``ctx status``, ``ctx metrics``, ``ctx quarantine`` and ``ctx doctor``."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        ctx: typer.Context,
        directory: Path = typer.Argument(Path("."), help="Where to write ctx.toml."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing ctx.toml."),
    ) -> None:
        """Write a starter ctx.toml and create the home directory.

        Example: ctx init && ctx ingest
        """
        target = directory / "ctx.toml"
        if target.exists() and not force:
            from ctx.errors import UserError

            raise UserError(f"{target} exists (use --force to overwrite)")
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(resources.files("ctx").joinpath("starter.toml").read_text(encoding="utf-8"))
        (directory / "docs").mkdir(exist_ok=True)
        err(f"wrote {target}; put documents in {directory / 'docs'} and run `ctx ingest`")

    @app.command()
    def sources(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")
    ) -> None:
        """List configured sources with their tier, criticality, counts and freshness.

        Example: ctx sources --json
        """
        from ctx.api import operations as ops

        rows = call(ctx, ops.SOURCES)
        if as_json:
            print_json(rows)
        else:
            _sources_table(rows)
        if not rows:  # a listing: empty is no error (exit 0), but say what would fill it, on stderr
            from rich.markup import escape

            from ctx.services.stores import NO_SOURCES

            err(escape(NO_SOURCES))

    @app.command()
    def status(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")
    ) -> None:
        """Show the home, store sizes, each source's freshness against its threshold, providers and breakers.

        Example: ctx status
        """
        from ctx.api import operations as ops

        data = call(ctx, ops.STATUS)
        if as_json:
            print_json(data)
            return
        from rich.console import Console

        console = Console()
        console.print(f"home      {data['home']}")
        console.print(f"config    {data['config'] or '(defaults)'}")
        console.print(f"embedder  {data['embedder']}")
        console.print(
            f"stored    {data['documents']} documents · {data['chunks']} chunks · "
            f"{data['vectors'] if data['vectors'] is not None else '-'} vectors · {data['versions']} versions · "
            f"{data['quarantined']} quarantined · {data['traces']} traces"
        )
        for s in data["sources"]:
            state = "never synced" if s["staleness_s"] is None else f"{s['staleness_s']:.0f}s old"
            flag = "[red]stale[/]" if s["stale"] else "[green]fresh[/]"
            err_line = f" · last error: {s['last_error']}" if s["last_error"] else ""
            console.print(f"source    {s['name']}: {flag} ({state}, limit {s['max_staleness_s']:.0f}s){err_line}")
        live = (data.get("assembly") or {}).get("breakers", {})
        for p in data["providers"]:
            b = live.get(p["name"], {}).get("state", "closed")  # a process that has not assembled yet: closed
            breaker = {"closed": "[green]closed[/]", "half_open": "[yellow]half-open[/]", "open": "[red]open[/]"}[b]
            console.print(f"provider  {p['name']} ({p['kind']}, ttl {p['ttl_s']:g}s, timeout {p['timeout_s']:g}s): "
                          f"breaker {breaker}")
        for name, members in data["recipes"].items():
            console.print(f"recipe    {name}: {', '.join(members)}")

    @app.command()
    def metrics(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Metric families and samples as JSON.")
    ) -> None:
        """Print the Prometheus metrics: the daemon's /metrics, or this home's state metrics without one.

        Example: ctx metrics | grep ctx_source_staleness_seconds
        """
        from ctx.api import operations as ops

        text = call(ctx, ops.METRICS)
        if not as_json:
            sys.stdout.write(text)
            return
        from prometheus_client.parser import text_string_to_metric_families

        print_json([
            {"name": f.name, "type": f.type, "help": f.documentation,
             "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
            for f in text_string_to_metric_families(text)
        ])

    @app.command()
    def quarantine(
        ctx: typer.Context,
        source: str = typer.Option(None, "--source", "-s", help="Only this source."),
        limit: int = typer.Option(50, "--limit", "-n", min=1, max=100000, help="How many, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """List quarantined records: which source, which record, why, and when.

        Example: ctx quarantine --source tickets
        """
        from ctx.api import operations as ops

        rows = call(ctx, ops.QUARANTINE, source=source, limit=limit)
        if as_json:
            print_json(rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("last seen", "source", "record", "reason", "times"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(r["last_seen_at"][:19], r["source"], r["record_id"], r["reason"], str(r["seen"]))
        Console().print(table)
        if not rows:
            err("nothing quarantined")

    @app.command()
    def doctor(
        ctx: typer.Context,
        repair: bool = typer.Option(
            False, "--repair", help="Fix what it finds: re-embed missing vectors, drop orphans, make the home private."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """Check the tiers against SQLite (the source of truth) and the home's permissions; optionally repair them.

        Example: ctx doctor --repair
        """
        from ctx.api import operations as ops


        report = call(ctx, ops.DOCTOR, repair=repair)
        if as_json:
            print_json(report)
        else:
            for check in report["checks"]:
                mark = "[green]ok[/]  " if check["ok"] else "[red]FAIL[/]"
                err(f"{mark} {check['check']}: {check['detail']}")
            for what, n in report["repaired"].items():
                err(f"[green]repaired[/] {what}: {n}")
        if not report["ok"] and not report["repaired"]:
            raise typer.Exit(1)


def _sources_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("source", "kind", "mode", "freshness", "criticality", "docs", "chunks", "quarantined",
                   "staleness"):
        table.add_column(column)
    for r in rows:
        if r["staleness_s"] is None:
            fresh = "[red]never synced[/]"
        else:
            colour = "red" if r["stale"] else "green"
            fresh = f"[{colour}]{r['staleness_s']:.0f}s / {r['max_staleness_s']:.0f}s[/]"
        table.add_row(r["name"], r["kind"], r["mode"], r["freshness"], r["criticality"], str(r["documents"]),
                      str(r["chunks"]), str(r["quarantined"]), fresh)
    Console().print(table)
