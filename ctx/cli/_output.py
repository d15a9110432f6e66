"""Output helpers shared by every command: JSON to stdout, messages to stderr, errors as one line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer

# typer vendors its own click: its exceptions are the ones raised here, not the click package's.
from typer._click import exceptions as cli_errors
from typer._click.utils import echo
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

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except cli_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except cli_errors.UsageError as exc:
            # Click's default is usage + hint + error over several lines; one line is easier to act on.
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except cli_errors.ClickException as exc:
            echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CtxError as exc:
            if os.environ.get("CTX_DEBUG") == "1":
                raise
            echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, cli_errors.ClickException):
            raise
        except KeyboardInterrupt:
            echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # boundary: anything unexpected is still one line, unless debugging
            if os.environ.get("CTX_DEBUG") == "1":
                raise
            echo(f"error: unexpected {type(exc).__name__}: {exc} (set CTX_DEBUG=1 for a traceback)", err=True)
            raise typer.Exit(1) from None
