"""``ctx ingest``: pull sources through validation, dedup, chunking and embedding into every tier."""

from __future__ import annotations

import sys
from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import workspace


class RichProgress:
    """A progress bar on stderr: records read per source, and what the run is doing."""

    def __init__(self, progress: Any) -> None:
        self.bar = progress
        self.task: Any = None

    def source_started(self, name: str) -> None:
        self.task = self.bar.add_task(f"  {name}", total=None, status="")

    def source_finished(self, name: str, failed: bool) -> None:
        done = self.bar.tasks[self.task].completed
        mark = "[red]✗[/]" if failed else "[green]✓[/]"
        self.bar.update(self.task, description=f"{mark} {name}", total=done, status="")
        self.bar.stop_task(self.task)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def phase(self, text: str) -> None:
        self.bar.update(self.task, status=text)


def print_summary(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest run {summary.run_id}", title_justify="left")
    for column in ("source", "new", "changed", "unchanged", "deleted", "quarantined", "chunks embedded", "seconds"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for s in summary.sources:
        table.add_row(s.source, str(s.new), str(s.changed), str(s.unchanged), str(s.deleted),
                      f"[yellow]{s.quarantined}[/]" if s.quarantined else "0", str(s.chunks_embedded),
                      f"{s.seconds:.2f}")
    t = summary.totals()
    table.add_row("[b]total[/]", str(t["new"]), str(t["changed"]), str(t["unchanged"]), str(t["deleted"]),
                  str(t["quarantined"]), str(t["chunks_embedded"]), f"{summary.seconds:.2f}")
    console = Console(stderr=True)
    console.print(table)
    console.print(f"embedding: {summary.embed_seconds:.2f}s of {summary.seconds:.2f}s · model {summary.model_id}")
    for s in summary.sources:
        if s.error:
            console.print(f"[red]source {s.source} failed:[/] {s.error} (its documents were left as they were)")
    if t["quarantined"]:
        console.print("quarantined records and reasons: `ctx quarantine`")
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def run_ingest(ws: Any, names: list[str] | None, quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return ws.ingest(names)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} records"),
               TimeElapsedColumn(), TextColumn("[dim]{task.fields[status]}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        return ws.ingest(names, RichProgress(bar))


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        ctx: typer.Context,
        sources: list[str] = typer.Argument(None, help="Source names to ingest (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Ingest sources: validate, deduplicate, chunk, embed and store.

        Example: ctx ingest docs tickets
        """
        ws = workspace(ctx)
        summary = run_ingest(ws, sources or None, quiet or as_json)
        if as_json:
            print_json(summary.to_dict())
        else:
            print_summary(summary)
        if not summary.ok:
            if not as_json:
                err("[red]some sources failed[/]")
            raise typer.Exit(1)
