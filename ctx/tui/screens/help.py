"""The help screen: the keys, and what each panel shows."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("↑ ↓ pgup pgdn", "move in the traces table (or scroll what has the focus)"),
    ("tab / shift+tab", "move the focus between the traces table and the panels (which scroll on a small terminal)"),
    ("enter", "open the trace under the cursor: blocks, drops, timings, cost, providers, replay check"),
    ("d", "on a trace: rerun it on today's data and show the diff — the one action that writes (a new trace)"),
    ("r", "refresh now, cost and SLOs too (by itself: every few seconds, cost and SLOs every 30 s)"),
    ("escape", "back: close a trace, or this help"),
    ("?", "this help"),
    ("q", "quit"),
]

PANELS = [
    ("assembly latency", "p50 / p95 / p99 of total assembly time per minute, from the newest 200 traces; "
                         "requests per second over the last minute"),
    ("cache hit rate", "per tier (l1 memory, l2 disk) for contexts and provider results, live counters of the "
                       "serving process; 'traces' rows: how the recent requests were served"),
    ("provider breakers", "closed (healthy), half-open (probing), open (calls skipped); failures in the window"),
    ("source freshness", "time since each source's last successful sync against its max_staleness: green "
                         "fresh, yellow past 75% of the limit, red stale or never synced"),
    ("cost", "USD per request, today and over 7 days, split into context tokens, embeddings and provider calls"),
    ("SLOs", "each objective's SLI per window, the error budget left over its longest window with data (below "
             "0: overspent) and the 1h burn rate (1x spends exactly the budget; above it, the budget runs out early)"),
    ("active alerts", "anomaly alerts still firing, most severe first"),
    ("recent traces", "the newest requests, failed ones marked; enter opens one"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "back"), Binding("question_mark", "dismiss", "back", show=False),
        Binding("q", "dismiss", "back", show=False),
    ]

    def compose(self) -> ComposeResult:
        keys = Table(box=None, show_header=False, pad_edge=False)
        keys.add_column(style="bold cyan", no_wrap=True)
        keys.add_column()
        for key, what in KEYS:
            keys.add_row(key, what)
        panels = Table(box=None, show_header=False, pad_edge=False)
        panels.add_column(style="bold", no_wrap=True)
        panels.add_column()
        for name, what in PANELS:
            panels.add_row(name, what)
        with VerticalScroll(id="help"):
            yield Static(Text("ctx dash — keys", style="bold"))
            yield Static(keys)
            yield Static(Text("\npanels", style="bold"))
            yield Static(panels)
            yield Static(Text("\nRead-only: everything here is read through the daemon (or this process with "
                              "--local), except d, which assembles the trace's request again and stores the "
                              "rerun as a new trace.", style="dim"))
