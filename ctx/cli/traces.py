"""``ctx replay`` and ``ctx traces``: every assembled context, exactly as it was sent."""

from __future__ import annotations

import typer

from ctx.cli._output import err, print_json, write_exact
from ctx.cli._ws import workspace


def register(app: typer.Typer) -> None:
    @app.command()
    def replay(
        ctx: typer.Context,
        trace_id: str = typer.Argument(..., help="Trace id (or a unique prefix of 8+ characters)."),
        rerun: bool = typer.Option(False, "--rerun", help="Assemble the same request on today's data and diff."),
        as_json: bool = typer.Option(False, "--json", help="The whole trace (or the rerun report) as JSON."),
    ) -> None:
        """Print exactly the context a past request got, or re-run it and show what changed.

        Example: ctx replay 0193a1b2-... --rerun
        """
        ws = workspace(ctx)
        if not rerun:
            trace = ws.replay(trace_id)
            if as_json:
                print_json(trace.to_dict())
            else:
                write_exact(trace.rendered.decode("utf-8"))
            return
        context, report = ws.rerun(trace_id)
        if as_json:
            print_json(report.to_dict())
            return
        if report.identical:
            err(f"identical: rerun {context.trace_id} produced the same bytes")
        else:
            write_exact(report.diff)
        for label, ids in (("appeared", report.appeared), ("vanished", report.vanished)):
            for chunk_id in ids:
                err(f"{label}: chunk {chunk_id}")
        for change in report.changed:
            err(f"changed: {change['document']} v{change['from_version']} → v{change['to_version']}")
        err(f"[dim]rerun trace {context.trace_id}[/]")

    @app.command()
    def traces(
        ctx: typer.Context,
        limit: int = typer.Option(20, "--limit", "-n", min=1, max=10000, help="How many, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """List recent traces.

        Example: ctx traces -n 5
        """
        ws = workspace(ctx)
        rows = [t.summary() for t in ws.traces.recent(limit)]
        if as_json:
            print_json(rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("trace id", "created", "query", "tokens", "kept", "degr.", "ms"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(r["id"], r["created_at"][:19], r["query"][:60], f"{r['tokens']}/{r['budget']}",
                          f"{r['kept']}/{r['candidates']}", str(r["degradations"]), f"{r['total_ms']:.1f}")
        Console().print(table)
