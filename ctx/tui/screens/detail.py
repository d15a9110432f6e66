"""One trace: its blocks, drops and degradations, timings, cost, providers, the replay check, and the rerun diff."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header

from ctx.api.inputs import ReplayIn
from ctx.api.operations import REPLAY
from ctx.tui import render
from ctx.tui.data import TraceDetail, trace_detail
from ctx.tui.widgets.panel import Panel

if TYPE_CHECKING:
    from ctx.client import Client
    from ctx.tui.app import DashApp, Failure


class TraceScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("d", "rerun", "rerun diff (writes a new trace)"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # noqa: RUF012 (declared by Textual)

    def __init__(self, trace_id: str) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.detail: TraceDetail | None = None  # the trace, once it has been read
        self.report: dict[str, Any] | None = None  # the last rerun report
        self.failure: Failure | None = None
        self.rerunning = False

    @property
    def dash(self) -> DashApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield Panel("trace", id="detail-summary")
            yield Panel("replay check", id="detail-replay")
            with Horizontal(classes="row"):
                yield Panel("timings and cost", id="detail-costs")
                yield Panel("providers", id="detail-providers")
            yield Panel("blocks kept", id="detail-blocks")
            yield Panel("drops and degradations", id="detail-degradations")
            yield Panel("rerun diff (d)", id="detail-diff")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"trace {self.trace_id}"
        self.query_one("#detail-summary", Panel).show(Text(f"loading trace {self.trace_id} …", style="dim"))
        self.query_one("#detail-diff", Panel).show(Text(
            "press d to assemble this request again on today's data and diff the result against the stored "
            "bytes; the rerun is stored as a new trace", style="dim"))
        self.query_one(VerticalScroll).focus()
        trace_id = self.trace_id
        self.dash.submit(lambda c: c.call(REPLAY, ReplayIn(trace_id=trace_id)), self._loaded)

    def _loaded(self, trace: dict[str, Any] | None, failure: Failure | None) -> None:
        if not self.is_attached:  # closed before the trace arrived
            return
        self.failure = failure
        if trace is None:
            self._panel("summary").show(render.problem(f"could not read the trace: {failure}"))
            return
        d = self.detail = trace_detail(trace)
        self._panel("summary").draw(lambda: render.trace_summary(d))
        self._panel("replay").draw(lambda: render.replay_check(d))
        self._panel("costs").draw(lambda: render.timings_and_cost(d))
        self._panel("providers").draw(lambda: render.providers(d))
        self._panel("blocks").draw(lambda: render.blocks(d))
        self._panel("degradations").draw(lambda: render.degradations(d))

    def _panel(self, name: str) -> Panel:
        return self.query_one(f"#detail-{name}", Panel)

    def action_rerun(self) -> None:
        if self.rerunning:
            return
        self.rerunning = True
        self._panel("diff").show(Text("rerunning …", style="dim"))
        trace_id = self.trace_id

        def rerun(client: Client) -> dict[str, Any]:
            return client.call(REPLAY, ReplayIn(trace_id=trace_id, rerun=True))  # type: ignore[no-any-return]

        self.dash.submit(rerun, self._reran)

    def _reran(self, report: dict[str, Any] | None, failure: Failure | None) -> None:
        self.rerunning = False
        if not self.is_attached:
            return
        self.failure = failure
        panel = self._panel("diff")
        if report is None:
            panel.show(render.problem(f"rerun failed: {failure}"))
            return
        self.report = report
        panel.draw(lambda: render.rerun(report))
        panel.scroll_visible(animate=False)
        self.dash.notify(f"rerun stored as trace {report.get('rerun')}", title="rerun diff")
