"""``ctx replay`` and ``ctx traces``: every assembled context, exactly as it was sent."""

from __future__ import annotations

import typer

from ctx.cli._output import err, print_json, write_exact
from ctx.cli._ws import call


def register(app: typer.Typer) -> None:
    @app.command()
    def replay(
        ctx: typer.Context,
        trace_id: str = typer.Argument(..., help="Trace id (or a unique prefix of 8+ characters)."),
        rerun: bool = typer.Option(False, "--rerun", help="Assemble the same request on today's data and diff."),
        version: str = typer.Option(None, "--version", help="With --rerun: re-assemble with this version (id, id "
                                    "prefix or label; see ctx versions list)."),
        as_json: bool = typer.Option(False, "--json", help="The whole trace (or the rerun report) as JSON."),
    ) -> None:
        """Print exactly the context a past request got, or re-run it and show what changed.

        Example: ctx replay 0193a1b2-... --rerun --version candidate
        """
        from ctx.api import operations as ops
        from ctx.errors import UserError

        if version is not None and not rerun:
            raise UserError("--version needs --rerun: a replay prints the stored bytes, a rerun re-assembles")
        result = call(ctx, ops.REPLAY, trace_id=trace_id, rerun=rerun, version=version)
        if as_json:
            print_json(result)
            return
        if not rerun:
            write_exact(result["context"])
            return
        if result["identical"]:
            err(f"identical: rerun {result['rerun']} produced the same bytes")
        else:
            write_exact(result["diff"])
        for label, ids in (("appeared", result["appeared"]), ("vanished", result["vanished"])):
            for chunk_id in ids:
                err(f"{label}: chunk {chunk_id}")
        for change in result["changed"]:
            err(f"changed: {change['document']} v{change['from_version']} → v{change['to_version']}")
        err(f"[dim]rerun trace {result['rerun']}[/]")

    @app.command()
    def traces(
        ctx: typer.Context,
        limit: int = typer.Option(20, "--limit", "-n", min=1, max=10000, help="How many, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """List recent traces.

        Example: ctx traces -n 5
        """
        from ctx.api import operations as ops

        rows = call(ctx, ops.TRACES, limit=limit)
        if as_json:
            print_json(rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("trace id", "created", "recipe", "query", "tokens", "kept", "degr.", "cache", "USD", "ms"):
            table.add_column(column, overflow="fold")
        for r in rows:
            query = (r["query"] or "")[:60] if r["status"] == "ok" else f"[red]failed[/] {(r['query'] or '')[:53]}"
            table.add_row(r["id"], r["created_at"][:19], r["recipe"], query, f"{r['tokens']}/{r['budget']}",
                          f"{r['kept']}/{r['candidates']}", str(r["degradations"]), r["cache"], f"{r['cost']:.4f}",
                          f"{r['total_ms']:.1f}")
        Console().print(table)
