"""Opening the workspace a command works on, and the client that reaches it (its daemon, or this process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ctx.api.operations import Operation
    from ctx.client import Client
    from ctx.workspace import Workspace


def workspace(ctx: typer.Context) -> Workspace:
    from ctx.workspace import Workspace  # heavy (sqlite-utils, pydantic models): only when a command runs

    return Workspace.open(_config(ctx))


def _config(ctx: typer.Context) -> Any:
    return (ctx.find_root().obj or {}).get("config")


def client(ctx: typer.Context) -> Client:
    """The home's daemon when one runs, else this process: every command prints the same either way.

    The daemon is found before the workspace is opened, so a command it answers loads no settings or stores.
    """
    from ctx.client import connect

    return connect(_config(ctx))


def call(ctx: typer.Context, op: Operation[Any, Any], **fields: Any) -> Any:
    """Run one operation with the command's options as its input fields; its result as plain data.

    The input is checked before a side is chosen: a bad option is the same one-line error either way.
    """
    from ctx.client import build

    body = build(op.input, **fields) if op.input is not None else None
    return client(ctx).call(op, body)
