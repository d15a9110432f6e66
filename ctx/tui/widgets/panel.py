"""A bordered, titled panel holding one Rich renderable (a small table or a few lines)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import Static

log = logging.getLogger(__name__)


class Panel(Static):
    def __init__(self, title: str, *, id: str) -> None:
        super().__init__("…", id=id, classes="panel")
        self.border_title = title

    def show(self, content: RenderableType) -> None:
        self.update(content)

    def draw(self, make: Callable[[], RenderableType]) -> None:
        """Show what ``make`` returns; if it raises, the panel says so and the rest of the screen goes on."""
        try:
            content = make()
        except Exception as exc:  # boundary: one bad figure must not take the screen down
            log.warning("could not draw the %s panel", self.id, exc_info=True)
            content = Text(f"could not draw this panel: {type(exc).__name__}: {exc}", style="red")
        self.update(content)
