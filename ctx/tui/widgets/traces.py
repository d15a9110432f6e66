"""The table of recent traces; Enter on a row opens it. Refreshing keeps the cursor on the same trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from ctx.tui import render

# (label, width): fixed widths keep the columns still from one refresh to the next (and DataTable's row cache
# can keep rows drawn at the old widths after an automatic re-measure). The id last: on a narrow terminal it is
# the column that scrolls out of sight; its first 13 characters are a UUIDv7's millisecond timestamp.
COLUMNS = (("time", 8), ("recipe", 8), ("query", 26), ("tokens", 11), ("kept", 5), ("cache", 9), ("USD", 8),
           ("ms", 6), ("trace", 13))
WIDTH = dict(COLUMNS)
FAILED = "failed "
TITLE = "recent traces · enter: open"


class TraceTable(DataTable[Any]):
    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.border_title = TITLE
        self._shown: list[str] = []

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.add_column(label, width=width)

    @property
    def current(self) -> str | None:
        """The trace id under the cursor."""
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def show(self, rows: Sequence[dict[str, Any]], problem: str | None = None) -> None:
        """The newest traces first; the cursor stays on the trace it was on."""
        self.border_subtitle = problem or (f"{len(rows)} newest" if rows else "no traces yet")
        if problem is not None:
            return
        ids = [r["id"] for r in rows]
        if ids == self._shown:
            return
        keep = self.current
        self.clear()
        for r in rows:
            query: str | Text = _clip(r.get("query") or "", WIDTH["query"])
            if r.get("status", "ok") != "ok":
                query = Text.assemble((FAILED, "bold red"), _clip(r.get("query") or "", WIDTH["query"] - len(FAILED)))
            self.add_row((r.get("created_at") or "")[11:19], r.get("recipe") or "", query,
                         f"{r.get('tokens', 0)}/{r.get('budget', 0)}", f"{r.get('kept', 0)}/{r.get('candidates', 0)}",
                         r.get("cache") or "", render.usd(r.get("cost") or 0.0), render.ms(r.get("total_ms")),
                         r["id"][: WIDTH["trace"]], key=r["id"])
        self._shown = ids
        if keep is not None and keep in ids:
            self.move_cursor(row=self.get_row_index(keep), animate=False)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
