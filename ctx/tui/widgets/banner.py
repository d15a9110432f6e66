"""The banner across the top of the dashboard when the daemon cannot be reached."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Banner(Static):
    """Hidden while the daemon answers; says why it does not, and when the next try is, while it does not."""

    DEFAULT_CLASSES = "hidden"

    def show_down(self, reason: str, at: str, retry_s: float) -> None:
        self.update(Text.assemble(("daemon down", "bold"), f" · retrying every {retry_s:g}s"
                                  f" (last try {at[11:19]} UTC) · the figures below are the last ones read\n",
                                  (reason, "")))
        self.remove_class("hidden")

    def show_error(self, reason: str, retry_s: float) -> None:
        self.update(Text.assemble(("could not refresh", "bold"), f" · retrying every {retry_s:g}s\n", reason))
        self.remove_class("hidden")

    def clear(self) -> None:
        self.add_class("hidden")
