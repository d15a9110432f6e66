"""Output helpers shared by every command: JSON to stdout, messages to stderr, errors as one line."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from ctx.errors import CtxError


def err(message: str) -> None:
    """A message for people, on stderr, so stdout stays clean for data."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(message)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_exact(text: str) -> None:
    """The bytes of a context, unchanged: what assemble prints, replay prints identically."""
    data = text.encode("utf-8")
    sys.stdout.buffer.write(data)
    if sys.stdout.isatty() and data and not data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


class CtxGroup(TyperGroup):
    """The one boundary where typed errors become one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CtxError as exc:
            if os.environ.get("CTX_DEBUG") == "1":
                raise
            click.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # boundary: anything unexpected is still one line, unless debugging
            if os.environ.get("CTX_DEBUG") == "1":
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc} (set CTX_DEBUG=1 for a traceback)", err=True)
            raise typer.Exit(1) from None
