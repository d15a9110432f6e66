"""``ctx dash``: the live dashboard (Textual) over the home's daemon, or over this home in-process."""

from __future__ import annotations

import os

import typer

from ctx.errors import UserError

MIN_REFRESH_S = 0.2


def register(app: typer.Typer) -> None:
    @app.command()
    def dash(
        ctx: typer.Context,
        local: bool = typer.Option(False, "--local", help="Read this home in this process instead of through "
                                   "its daemon (no daemon needed; live cache and breaker counters are the "
                                   "daemon's, so they show only through it)."),
        refresh: str = typer.Option("2s", "--refresh", help="How often to read everything again (and to retry a "
                                    "daemon that is down), e.g. 500ms, 2s, 1m."),
    ) -> None:
        """Watch a home live: latency p50/p95/p99, requests/s, SLOs, caches, breakers, freshness, cost, alerts, traces.

        Read-only, through the home's daemon (or this process with --local); retries a daemon that is down.

        Keys: Enter opens a trace (blocks, drops, timings, cost, replay check), d there its rerun diff.

        Escape goes back, r refreshes now, ? shows the help, q quits. The rerun is stored as a new trace.

        Example: ctx dash --refresh 5s
        """
        from ctx.settings import find_config, load_settings, parse_duration

        try:
            every = parse_duration(refresh)
        except ValueError as exc:
            raise UserError(f"--refresh: {exc}") from None
        if every < MIN_REFRESH_S:
            raise UserError(f"--refresh: {refresh!r} is too often: at least {MIN_REFRESH_S * 1000:.0f}ms")
        env = dict(os.environ)
        config = find_config((ctx.find_root().obj or {}).get("config"), env)
        settings = load_settings(config, env)  # a bad config is one line here, before the screen is taken over

        from ctx.tui.app import build_app  # textual: only when the dashboard runs
        from ctx.tui.link import daemon_link, local_link

        assert settings.home is not None
        link = local_link(config, env) if local else daemon_link(settings.home)
        build_app(link, refresh_s=every).run()
