"""``ctx daemon start | stop | status | logs``: the background process that serves and refreshes a home."""

from __future__ import annotations

import os
import sys
import time

import typer

from ctx.cli._output import err, print_json
from ctx.cli._ws import workspace

daemon_app = typer.Typer(
    help="Run ctx as a local daemon: the API, job workers and the freshness scheduler.\n\n"
    "While it runs, every ctx command on this home goes through it.\n\nExample: ctx daemon start && ctx daemon status",
    no_args_is_help=True,
)


@daemon_app.command()
def start(
    ctx: typer.Context,
    foreground: bool = typer.Option(False, "--foreground", help="Stay in the foreground (for supervisors, "
                                    "containers); logs go to stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print pid, address and API version as JSON."),
) -> None:
    """Start the daemon for this home (one per home); the CLI then uses it automatically.

    Example: ctx daemon start && ctx status
    """
    from ctx.daemon import server

    ws = workspace(ctx)
    if foreground:
        raise typer.Exit(server.serve(ws.settings, dict(os.environ)))
    runtime = server.start_background(ws.settings, dict(os.environ))
    if as_json:
        print_json({"pid": runtime.pid, "address": runtime.address, "api_version": runtime.api_version,
                    "home": runtime.home})
    else:
        err(f"daemon started: pid {runtime.pid} · {runtime.address} · logs: `ctx daemon logs`")


@daemon_app.command()
def stop(
    ctx: typer.Context,
    timeout: float = typer.Option(60.0, "--timeout", min=1, help="Seconds to wait for it to drain and exit."),
) -> None:
    """Stop the daemon: in-flight requests finish, jobs pause at a safe point and resume at the next start.

    Example: ctx daemon stop
    """
    from ctx.daemon import server

    stopped = server.stop(workspace(ctx).home, timeout)
    err(f"daemon stopped (pid {stopped.pid})" if stopped else "no daemon was running for this home")


@daemon_app.command()
def status(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print as JSON.")
) -> None:
    """Whether the daemon runs, where it listens, its uptime, lanes and queue; exit 3 when it is not running.

    Example: ctx daemon status --json
    """
    from ctx.api import runtime as rt
    from ctx.api.operations import STATUS
    from ctx.client import DaemonClient

    home = workspace(ctx).home
    runtime = rt.read(home)
    if runtime is None:
        if as_json:
            print_json({"running": False, "home": str(home)})
        else:
            err(f"no daemon runs for {home} (`ctx daemon start`)")
        raise typer.Exit(3)
    info = DaemonClient(runtime, timeout=10).call(STATUS)["daemon"]
    if as_json:
        print_json({"running": True, "home": str(home), "api_version": runtime.api_version, **info})
        return
    busy = ", ".join(f"{lane}: {job or 'idle'}" for lane, job in info["lanes"].items())
    print(f"running   pid {info['pid']} · {info['address']} · API v{runtime.api_version}")
    print(f"uptime    {info['uptime_s']:.0f}s (since {info['started_at'][:19]})")
    print(f"queue     {info['queue_depth']} records pending · {info['jobs_waiting']} jobs waiting · {busy}")


@daemon_app.command()
def logs(
    ctx: typer.Context,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C stops)."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many of the last lines to print first."),
) -> None:
    """Print the daemon's log (the background daemon writes it to HOME/daemon.log).

    Example: ctx daemon logs -f
    """
    from ctx.daemon.server import LOG_NAME
    from ctx.errors import NotFound

    path = workspace(ctx).home / LOG_NAME
    if not path.exists():
        raise NotFound(f"no daemon log at {path} (the daemon has not run in the background here)")
    with open(path, encoding="utf-8", errors="replace") as handle:
        tail = handle.readlines()[-lines:] if lines else []
        sys.stdout.write("".join(tail))
        sys.stdout.flush()
        while follow:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)


def register(app: typer.Typer) -> None:
    app.add_typer(daemon_app, name="daemon")
