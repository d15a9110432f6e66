"""``ctx audit``: where the context system stands on the maturity model, as a table, JSON or JUnit XML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import call

COLOURS = {"pass": "green", "warn": "yellow", "fail": "red"}


def register(app: typer.Typer) -> None:
    @app.command()
    def audit(
        ctx: typer.Context,
        window: str = typer.Option("7d", "--window", "-w", help="How far back the evidence goes: 1h, 24h, 7d, 30d."),
        sample: int = typer.Option(20, "--sample", "-n", min=0, max=1000,
                                   help="Recent traces the replay probe replays (0 skips it)."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
        junit: Path | None = typer.Option(None, "--junit", dir_okay=False,
                                          help="Also write the checks as JUnit XML to this file (for CI)."),
        min_level: int = typer.Option(0, "--min-level", min=0, max=4,
                                      help="Exit 1 when the level reached is below this (after printing)."),
    ) -> None:
        """Score this home against the maturity model: Basic, Managed, Optimized, Automated.

        Each check is decided from evidence (what is configured, what the traces, syncs and alerts of the
        window show) and two live probes: a sample of recent traces is replayed and must be byte-identical,
        and doctor (no repair) must find no drift. The level reached is the highest one whose checks, and
        those of every level below, all pass or warn.

        Example: ctx audit --min-level 2 --junit audit.xml
        """
        from ctx.api import operations as ops

        report = call(ctx, ops.AUDIT, window=window, sample=sample)
        if junit is not None:
            from ctx.audit.junit import to_junit
            from ctx.errors import UserError

            try:
                junit.write_text(to_junit(report), encoding="utf-8")
            except OSError as exc:
                raise UserError(f"cannot write --junit {junit}: {exc.strerror or exc}") from None
        if as_json:
            print_json(report)
        else:
            _print(report)
        if junit is not None:
            err(f"wrote {len(report['checks'])} checks as JUnit XML to {junit}")
        if report["level"] < min_level:
            err(f"level {report['level']} is below --min-level {min_level}")
            raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # CI logs are no terminal: rich would wrap the evidence into an 80-column table there.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    table = Table(title=f"ctx audit · evidence of the last {report['window']} · {report['sample']} traces replayed",
                  title_justify="left")
    for column in ("level", "check", "status", "evidence", "remediation"):
        table.add_column(column, overflow="fold")
    for c in report["checks"]:
        colour = COLOURS[c["status"]]
        # Escaped: evidence and remediation name settings such as [alerts.webhooks.NAME], not markup.
        table.add_row(f"L{c['level']} {c['level_name']}", escape(c["title"]), f"[{colour}]{c['status']}[/]",
                      escape(c["evidence"]), escape(c["remediation"]) or "-")
    console.print(table)
    level = report["level"]
    console.print(f"level reached: [b]{level}[/] ({report['level_name']})")
    gaps = report["next_gaps"]
    if report["next_level"] is None:
        console.print("every level reached: no gap left")
    elif gaps:
        name = next(lv["name"] for lv in report["levels"] if lv["level"] == report["next_level"])
        console.print(f"next gaps, to reach level {report['next_level']} ({name}):")
        for g in gaps:
            console.print(f"  - {escape(g['title'])}: {escape(g['remediation'])}")
