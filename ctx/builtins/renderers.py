"""Built-in renderers, registered through the renderer hook."""

from __future__ import annotations

from typing import Any

from ctx.assemble.render import MarkdownRenderer, MessagesRenderer
from ctx.hookspecs import hookimpl


@hookimpl
def register_renderers(register: Any) -> None:
    register("markdown", MarkdownRenderer())
    register("messages", MessagesRenderer())
