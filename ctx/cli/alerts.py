"""``ctx alerts``: anomaly alerts, firing and resolved, and what was done about each."""

from __future__ import annotations

from typing import Any

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import client

SEVERITY_STYLE = {"critical": "bold white on red", "error": "bold red", "warning": "yellow"}


def register(app: typer.Typer) -> None:
    @app.command()
    def alerts(
        ctx: typer.Context,
        show_all: bool = typer.Option(False, "--all", help="Resolved alerts too (default: firing ones only)."),
        limit: int = typer.Option(50, "--limit", "-n", min=1, max=10000, help="How many: firing first, newest first."),
        check: bool = typer.Option(False, "--check", help="Evaluate the rules now, first: steps that are due are "
                                   "taken (refresh actions, webhooks)."),
        as_json: bool = typer.Option(False, "--json", help="Print as JSON; with --check, {\"check\": what changed, "
                                     "\"alerts\": [...]}."),
    ) -> None:
        """List anomaly alerts: severity, rule, what it is about, since when, escalation step, who was told.

        Rules, windows, escalation and cooldowns are set in the alerts section of ctx.toml (ctx.toml.example).
        Example: ctx alerts --all -n 20
        """
        from ctx.api import operations as ops
        from ctx.api.inputs import AlertsIn
        from ctx.client import build

        backend = client(ctx)
        result = backend.call(ops.CHECK_ALERTS) if check else None
        rows = backend.call(ops.ALERTS, build(AlertsIn, limit=limit, active=not show_all))
        if as_json:
            print_json({"check": result, "alerts": rows} if result is not None else rows)
            return
        if result is not None:
            err(_summary(result))
        if not rows:
            err("no alerts" if show_all else "no firing alerts")
            return
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("severity", "rule", "key", "state", "since", "×", "step", "message", "notified"):
            table.add_column(column, overflow="fold")
        for a in rows:
            style = SEVERITY_STYLE.get(a["severity"], "")
            resolved = (a["resolved_at"] or "")[11:19]
            state = "[bold]firing[/]" if a["state"] == "firing" else f"[green]resolved[/] {resolved}"
            if a["suppressed_until"] and a["state"] == "firing":
                state += f" [dim](cooldown until {a['suppressed_until'][11:19]})[/]"
            table.add_row(f"[{style}]{a['severity']}[/]", a["rule"], a["key"], state, a["first_at"][:19],
                          str(a["count"]), f"{a['step']}/3", a["message"], _notified(a["notifications"]))
        Console().print(table)


def _notified(notes: list[dict[str, Any]]) -> str:
    parts = []
    for n in notes:
        if n["kind"] == "note":
            continue
        colour = {"sent": "green", "done": "green", "failed": "red", "gave_up": "red"}.get(n["status"], "dim")
        tries = f" ×{n['attempts']}" if n["attempts"] > 1 else ""
        parts.append(f"{n['target']} {n['event']} [{colour}]{n['status']}[/]{tries}")
    return ", ".join(parts) or "-"


def _summary(r: dict[str, Any]) -> str:
    delivered = [d for d in r["deliveries"] if d["status"] in ("sent", "done")]
    failed = [d for d in r["deliveries"] if d["status"] in ("failed", "gave_up")]
    return (f"evaluated {r['rules']} rules: {len(r['opened'])} opened, {len(r['updated'])} updated, "
            f"{len(r['resolved'])} resolved, {len(r['suppressed'])} suppressed (cooldown), "
            f"{len(r['steps'])} steps taken, {len(delivered)} delivered, {len(failed)} failed; {r['active']} firing")
