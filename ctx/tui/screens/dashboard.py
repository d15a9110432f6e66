"""The dashboard: latency, rate, SLOs, cache, breakers, freshness, cost, alerts, and the recent traces."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from ctx.tui import render
from ctx.tui.data import Board
from ctx.tui.widgets.banner import Banner
from ctx.tui.widgets.latency import LatencyPanel
from ctx.tui.widgets.panel import Panel
from ctx.tui.widgets.traces import TraceTable

if TYPE_CHECKING:
    from ctx.tui.app import DashApp

log = logging.getLogger(__name__)


class DashboardScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "open_trace", "open trace", show=False)]
    # Below these sizes the panels stack in one scrolling column above the traces table (see dash.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 (declared by Textual)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]  # noqa: RUF012 (declared by Textual)

    @property
    def dash(self) -> DashApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        self.sub_title = "connecting …"
        yield Header()
        yield Banner(id="banner")
        with VerticalScroll(id="panels"):
            with Horizontal(classes="row", id="row-1"):
                yield LatencyPanel(id="latency")
                yield Panel("SLOs: SLI per window, error budget left, burn rate (1h)", id="slo")
            with Horizontal(classes="row", id="row-2"):
                yield Panel("cache hit rate", id="cache")
                yield Panel("provider breakers", id="breakers")
                yield Panel("source freshness: lag / limit", id="freshness")
            with Horizontal(classes="row", id="row-3"):
                yield Panel("cost (USD)", id="cost")
                yield Panel("active alerts", id="alerts")
        yield TraceTable(id="traces")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TraceTable).focus()

    def show(self, board: Board) -> None:
        """Every panel from one refresh; a panel that could not be read says why, the others still show."""
        self.query_one(Banner).clear()
        self.remove_class("-down")
        problems = board.problems
        latency = self.query_one(LatencyPanel)
        self._guard(latency.border_title or "latency", lambda: latency.show(board.latency, board.rps, board.requests,
                                                                             problems.get("latency")))
        self._panel("slo", problems.get("slo"), lambda: render.slo(board.objectives))
        self._panel("cache", problems.get("cache"), lambda: render.cache(board.cache))
        self._panel("breakers", problems.get("breakers"), lambda: render.breakers(board.breakers))
        self._panel("freshness", problems.get("freshness"), lambda: render.freshness(board.freshness))
        self._panel("cost", problems.get("cost"), lambda: render.cost(board.cost))
        self._panel("alerts", problems.get("alerts"), lambda: render.alerts(board.alerts))
        alerts = self.query_one("#alerts", Panel)
        alerts.border_title = f"active alerts ({len(board.alerts)})" if "alerts" not in problems else "active alerts"
        alerts.set_class(bool(board.alerts), "-firing")
        table = self.query_one(TraceTable)
        self._guard("traces", lambda: table.show(board.traces, problems.get("traces")))
        self.sub_title = f"{board.mode} · {board.home} · refreshed {board.fetched_at[11:19]} UTC"

    def show_down(self, reason: str, at: str) -> None:
        """The daemon is not answering: say so over the last figures read (dimmed), which stay until it answers."""
        self.query_one(Banner).show_down(reason, at, self.dash.refresh_s)
        self.add_class("-down")
        self.sub_title = "daemon down · retrying"

    def show_error(self, reason: str) -> None:
        self.query_one(Banner).show_error(reason, self.dash.refresh_s)

    def _panel(self, name: str, problem: str | None, content: Callable[[], RenderableType]) -> None:
        panel = self.query_one(f"#{name}", Panel)
        if problem is not None:
            panel.show(render.problem(problem))
        else:
            panel.draw(content)

    def _guard(self, name: str, show: Callable[[], None]) -> None:
        """Update a widget that is not a plain panel; if that fails, say so, and the dashboard goes on."""
        try:
            show()
        except Exception as exc:  # boundary: a bad figure must not take the dashboard down
            log.warning("could not draw the %s panel", name, exc_info=True)
            self.dash.notify(f"{type(exc).__name__}: {exc}", title=f"could not draw {name}", severity="error")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dash.open_trace(str(event.row_key.value))

    def action_open_trace(self) -> None:
        current = self.query_one(TraceTable).current
        if current:
            self.dash.open_trace(current)
