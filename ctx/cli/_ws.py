"""Opening the workspace a command works on, and the client that reaches it (its daemon, or this process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ctx.client import Client
    from ctx.workspace import Workspace


def workspace(ctx: typer.Context) -> Workspace:
    from ctx.workspace import Workspace  # heavy (sqlite-utils, pydantic models): only when a command runs

    root = ctx.find_root()
    return Workspace.open((root.obj or {}).get("config"))


def client(ctx: typer.Context) -> Client:
    """The home's daemon when one runs, else this process: every command prints the same either way."""
    from ctx.client import connect

    return connect(workspace(ctx))
