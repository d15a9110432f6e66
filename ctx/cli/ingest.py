"""``ctx ingest``, ``ctx jobs`` and ``ctx push``: sources and pushed events into every tier, as jobs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call, client

STATUS_COLOURS = {"ok": "green", "partial": "yellow", "failed": "red", "interrupted": "red"}


class RichProgress:
    """A progress bar on stderr: records read per source, and what the run is doing."""

    def __init__(self, progress: Any) -> None:
        self.bar = progress
        self.tasks: dict[str, Any] = {}
        self.task: Any = None

    def source_started(self, name: str) -> None:
        self.task = self.tasks[name] = self.bar.add_task(f"  {name}", total=None, status="")

    def source_finished(self, name: str, failed: bool) -> None:
        task = self.tasks.get(name, self.task)
        done = self.bar.tasks[task].completed
        mark = "[red]✗[/]" if failed else "[green]✓[/]"
        self.bar.update(task, description=f"{mark} {name}", total=done, status="")
        self.bar.stop_task(task)

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def phase(self, text: str) -> None:
        self.bar.update(self.task, status=text)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest run {summary['run_id']}", title_justify="left")
    for column in ("source", "new", "changed", "unchanged", "deleted", "quarantined", "chunks embedded", "seconds"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for s in summary["sources"]:
        table.add_row(s["source"], str(s["new"]), str(s["changed"]), str(s["unchanged"]), str(s["deleted"]),
                      f"[yellow]{s['quarantined']}[/]" if s["quarantined"] else "0", str(s["chunks_embedded"]),
                      f"{s['seconds']:.2f}")
    t = summary["totals"]
    table.add_row("[b]total[/]", str(t["new"]), str(t["changed"]), str(t["unchanged"]), str(t["deleted"]),
                  str(t["quarantined"]), str(t["chunks_embedded"]), f"{summary['seconds']:.2f}")
    console = Console(stderr=True)
    console.print(table)
    console.print(f"embedding: {summary['embed_seconds']:.2f}s of {summary['seconds']:.2f}s · "
                  f"model {summary['model_id']} · {t.get('tokens_embedded', 0):,} tokens embedded "
                  f"(${t.get('embedding_usd', 0.0):.4f})")
    for s in summary["sources"]:
        if s["error"]:
            console.print(f"[red]source {s['source']} failed:[/] {s['error']} (its documents were left as they were)")
    if t["quarantined"]:
        console.print("quarantined records and reasons: `ctx quarantine`")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")


@contextmanager
def progress_bar(quiet: bool) -> Iterator[RichProgress | None]:
    """A progress bar on an interactive stderr; nothing when quiet or piped."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed} records"), TimeElapsedColumn(), TextColumn("[dim]{task.fields[status]}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield RichProgress(bar)


def run_ingest(backend: Any, names: list[str] | None, quiet: bool) -> dict[str, Any]:
    """Run an ingest job to the end (here, or in the daemon) and return its summary."""
    from ctx.api.schemas import IngestIn

    with progress_bar(quiet) as progress:
        job = backend.ingest(IngestIn(sources=names, trigger="cli"), progress)
    if job["summary"] is None:
        from ctx.errors import CtxError

        raise CtxError(f"ingest job {job['id']} ended {job['status']}: {job['error'] or 'no summary'}")
    return job["summary"]  # type: ignore[no-any-return]


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        ctx: typer.Context,
        sources: list[str] = typer.Argument(None, help="Source names to ingest (default: all)."),
        as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        detach: bool = typer.Option(False, "--detach", "-d",
                                    help="With a daemon: queue the job, print its id and return."),
    ) -> None:
        """Ingest sources: validate, deduplicate, chunk, embed and store (in the daemon when one runs).

        Example: ctx ingest docs tickets
        """
        backend = client(ctx)
        if detach:
            from ctx.api.schemas import IngestIn

            job = backend.submit(IngestIn(sources=sources or None, trigger="cli"))
            print_json(job) if as_json else err(f"queued job {job['id']}: `ctx jobs {job['id']}` follows it")
            return
        summary = run_ingest(backend, sources or None, quiet or as_json)
        if as_json:
            print_json(summary)
        else:
            print_summary(summary)
        if not summary["ok"]:
            if not as_json:
                err("[red]some sources failed[/]")
            raise typer.Exit(1)

    @app.command()
    def jobs(
        ctx: typer.Context,
        job_id: str = typer.Argument(None, help="Show this job (default: list recent jobs)."),
        limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    ) -> None:
        """List ingest jobs (CLI runs, API calls, scheduled and watched syncs, pushed events), or show one.

        Example: ctx jobs --limit 5
        """
        from ctx.api import operations as ops

        rows = [call(ctx, ops.JOB, job_id=job_id)] if job_id else call(ctx, ops.JOBS, limit=limit)
        if as_json:
            print_json(rows[0] if job_id else rows)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("job", "kind", "trigger", "status", "sources", "created", "pending", "error"):
            table.add_column(column, overflow="fold")
        for r in rows:
            colour = STATUS_COLOURS.get(r["status"], "cyan")
            table.add_row(r["id"], r["kind"], r["trigger"], f"[{colour}]{r['status']}[/]", ", ".join(r["sources"]),
                          (r["created_at"] or "")[:19], str(r["pending"]), r["error"] or "")
        Console().print(table)

    @app.command()
    def push(
        ctx: typer.Context,
        source: str = typer.Argument(..., help="An append source that takes events (kind events or jsonl)."),
        file: Path = typer.Argument(Path("-"), help="A JSON Lines file of events, or - for stdin."),
        as_json: bool = typer.Option(False, "--json", help="Print the accepted job as JSON."),
    ) -> None:
        """Push events (one JSON object per line) into an append source, e.g. user session events.

        Example: echo '{"id": "e1", "text": "user opened billing"}' | ctx push sessions
        """
        from ctx.api import operations as ops
        from ctx.errors import UserError

        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {file}: {exc}") from None
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"line {number} of {file} is not JSON: {exc.msg}") from None
                except (ValueError, RecursionError) as exc:  # an integer of 4,300+ digits, nesting too deep
                    raise UserError(f"line {number} of {file} is not JSON: {exc}") from None
        result = call(ctx, ops.PUSH, source=source, events=events)
        if as_json:
            print_json(result)
        else:
            bad = f", {result['quarantined']} of them quarantined (`ctx quarantine`)" if result["quarantined"] else ""
            err(f"accepted {result['accepted']} events into {source}{bad} (job {result['job_id']})")
