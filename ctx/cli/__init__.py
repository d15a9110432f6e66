"""The ``ctx`` command line: one module per command group, heavy imports inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer

from ctx.cli._output import CtxGroup

app = typer.Typer(
    cls=CtxGroup,
    help="ctx: production context infrastructure for LLM applications.\n\n"
    "Ingest sources, assemble token-budgeted context windows, and replay any of them by trace id.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", envvar="CTX_CONFIG", help="Path to ctx.toml (default: ./ctx.toml if present)."
    ),
) -> None:
    # The CLI is a process ctx owns: every file it makes in a home (SQLite's -wal/-shm, diskcache, Chroma,
    # archives) is its user's alone. Set here rather than in main() so `python -m ctx.cli` and an in-process
    # CLI runner behave the same; the library itself never touches the umask (see ctx/store/private.py).
    from ctx.store.private import private_process  # stdlib only: the CLI's start stays light

    private_process()
    ctx.obj = {"config": config}


def _register() -> None:
    from ctx.cli import ab, admin, alerts, archive, bench, daemon, dash, demo, ingest, observe, query, traces, versions
    from ctx.cli import audit as maturity  # apart: the line above is full
    from ctx.cli import eval as evaluation  # not `eval`: that is a builtin

    for module in (admin, ingest, query, traces, observe, alerts, dash, daemon, demo, bench, versions, ab, archive,
                   evaluation, maturity):
        module.register(app)


_register()


def main() -> None:
    app()
