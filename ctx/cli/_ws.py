"""Opening the workspace a command works on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ctx.workspace import Workspace


def workspace(ctx: typer.Context) -> Workspace:
    from ctx.workspace import Workspace  # heavy (sqlite-utils, pydantic models): only when a command runs

    root = ctx.find_root()
    return Workspace.open((root.obj or {}).get("config"))
