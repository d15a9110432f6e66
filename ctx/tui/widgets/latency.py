"""Assembly latency p50 / p95 / p99 per minute as sparklines, the request rate, and the latest minutes."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from ctx.tui import render
from ctx.tui.data import MINUTES, Minute

SERIES = ("p50", "p95", "p99")


class LatencyPanel(Vertical):
    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = f"assembly latency, ms per minute ({MINUTES} min)"

    def compose(self) -> ComposeResult:
        for name in SERIES:
            with Horizontal(classes="series"):
                yield Label(name, classes="series-name")
                yield Sparkline([], id=f"spark-{name}")
                yield Label("—", id=f"now-{name}", classes="series-value")
        yield Static("", id="rate")
        yield Static("", id="minutes")

    def show(self, minutes: Sequence[Minute], rps: float, requests: int, problem: str | None = None) -> None:
        if problem is not None:
            self.query_one("#minutes", Static).update(render.problem(problem))
            return
        busy = [m for m in minutes if m.count]
        for name in SERIES:
            values = [getattr(m, name) or 0.0 for m in minutes]
            self.query_one(f"#spark-{name}", Sparkline).data = values
            latest = getattr(busy[-1], name) if busy else None
            self.query_one(f"#now-{name}", Label).update(render.ms(latest))
        self.query_one("#rate", Static).update(Text.assemble(
            (f"{rps:.2f}", "bold"), (" req/s (last minute) · ", "dim"), str(requests),
            (f" req in {MINUTES} min", "dim")))
        self.query_one("#minutes", Static).update(render.latency_table(minutes))
