"""The ``ctx dash`` app: built by :func:`build_app`, every client call on one I/O thread, screens draw the results.

The UI thread never waits on the daemon: screens hand a function of the client to :meth:`DashApp.submit`,
the I/O thread runs it through the :class:`~ctx.tui.link.Link` (one call at a time: neither a Link nor a
workspace is thread-safe), and the result comes back to the UI as a message, with a :class:`Failure`
instead when the call raised.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import get_current_worker

from ctx.errors import CtxError, TransientError
from ctx.tui.data import TRACE_LIMIT, Board, Slow, fetch
from ctx.tui.link import ClientFactory, Link
from ctx.tui.screens.dashboard import DashboardScreen
from ctx.tui.screens.detail import TraceScreen
from ctx.tui.screens.help import HelpScreen

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]
DEFAULT_REFRESH_S = 2.0
IDLE_POLL_S = 0.2  # how often the idle I/O thread looks whether the app is shutting down


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Failure:
    """Why a call through the link gave no result."""

    message: str
    transient: bool  # the daemon is not answering (or not running): the next refresh tries again
    kind: str  # the exception's type name

    @classmethod
    def of(cls, exc: Exception) -> Failure:
        message = str(exc) if isinstance(exc, CtxError) else f"unexpected {type(exc).__name__}: {exc}"
        return cls(message, isinstance(exc, TransientError), type(exc).__name__)

    def __str__(self) -> str:
        return self.message


Callback = Callable[[Any, Failure | None], None]


class CallDone(Message):
    """A call finished on the I/O thread; its callback runs on the UI thread."""

    def __init__(self, callback: Callback, result: Any, failure: Failure | None) -> None:
        super().__init__()
        self.callback = callback
        self.result = result
        self.failure = failure


class DashApp(App[None]):
    """The dashboard over one :class:`Link`; build it with :func:`build_app`."""

    CSS_PATH = "dash.tcss"
    TITLE = "ctx dash"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("r", "refresh_now", "refresh"),
    ]

    def __init__(self, link: Link, refresh_s: float = DEFAULT_REFRESH_S, clock: Clock = utc_now,
                 trace_limit: int = TRACE_LIMIT) -> None:
        super().__init__()
        self.link = link
        self.refresh_s = refresh_s
        self.clock = clock
        self.trace_limit = trace_limit
        self.board: Board | None = None  # the last figures read
        self.down: Failure | None = None  # set while the daemon does not answer
        self.failure: Failure | None = None  # the last refresh's failure, if it failed
        self.attempts = 0  # refreshes finished, with or without figures (tests wait on these)
        self.refreshes = 0  # refreshes that brought figures
        self.dashboard = DashboardScreen()
        self._jobs: queue.SimpleQueue[tuple[Callable[[Any], Any], Callback] | None] = queue.SimpleQueue()
        self._refreshing = False
        self._slow = Slow()  # cost and SLOs: read every SLOW_S, only ever on the I/O thread

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def on_ready(self) -> None:
        # Ready, not Mount: the dashboard's widgets exist by then, so the first result has somewhere to go.
        self._io_thread()
        self._refresh()
        self.set_interval(self.refresh_s, self._refresh)

    def on_unmount(self) -> None:
        self._jobs.put(None)

    # --- the one I/O thread ------------------------------------------------------------------------

    def submit(self, fn: Callable[[Any], T], callback: Callable[[T | None, Failure | None], None]) -> None:
        """Run ``fn(client)`` on the I/O thread, then ``callback(result, failure)`` on the UI thread."""
        self._jobs.put((fn, callback))

    @work(thread=True, name="ctx-dash-io", group="io", exit_on_error=False)
    def _io_thread(self) -> None:
        worker = get_current_worker()
        try:
            while not worker.is_cancelled:
                try:
                    job = self._jobs.get(timeout=IDLE_POLL_S)
                except queue.Empty:
                    continue
                if job is None:
                    break
                fn, callback = job
                try:
                    result, failure = self.link.call(fn), None
                except Exception as exc:  # boundary: a failed call is shown by the screen that asked
                    if not isinstance(exc, CtxError):
                        log.warning("dashboard call failed", exc_info=True)
                    result, failure = None, Failure.of(exc)
                if worker.is_cancelled:
                    break
                self.post_message(CallDone(callback, result, failure))
        finally:
            try:
                self.link.close()
            except Exception:  # boundary: closing on the way out must not hide why we are leaving
                log.warning("closing the dashboard's client failed", exc_info=True)

    def on_call_done(self, message: CallDone) -> None:
        try:
            message.callback(message.result, message.failure)
        except Exception as exc:  # boundary: a screen that cannot draw a result must not take the app down
            log.warning("dashboard callback failed", exc_info=True)
            self.notify(f"{type(exc).__name__}: {exc}", title="could not show the result", severity="error")

    # --- refreshing ------------------------------------------------------------------------------

    def action_refresh_now(self) -> None:
        """Read every panel again, the slow ones (cost, SLOs) too (unless a refresh is on its way)."""
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        """Read the panels (they never pile up: a refresh on its way is not doubled)."""
        if self._refreshing:
            return
        self._refreshing = True
        clock, limit, slow = self.clock, self.trace_limit, self._slow
        self.submit(lambda client: fetch(client, clock(), limit, slow, force), self._refreshed)

    def _refreshed(self, board: Board | None, failure: Failure | None) -> None:
        self._refreshing = False
        self.attempts += 1
        self.failure = failure
        if board is not None:
            if self.down is not None:
                self.notify("the daemon answers again", title="reconnected")
            self.down = None
            self.board = board
            self.refreshes += 1
            self.dashboard.show(board)
        elif failure is not None and failure.transient:
            self.down = failure
            self.dashboard.show_down(failure.message, self.clock().isoformat())
        elif failure is not None:  # the daemon answers, but the status could not be read
            self.down = None
            self.dashboard.show_error(failure.message)

    # --- navigation ------------------------------------------------------------------------------

    def open_trace(self, trace_id: str) -> None:
        self.push_screen(TraceScreen(trace_id))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def build_app(link: Link | ClientFactory, refresh_s: float = DEFAULT_REFRESH_S, clock: Clock = utc_now,
              trace_limit: int = TRACE_LIMIT) -> DashApp:
    """The dashboard over ``link`` (or a plain client factory): how ``ctx dash`` and the tests build it.

    Args:
        link: where the figures come from: :func:`~ctx.tui.link.daemon_link`, :func:`~ctx.tui.link.local_link`,
            or any function returning a client (a test's fake).
        refresh_s: seconds between refreshes; a daemon that is down is retried as often.
        clock: the time every figure is computed against (fixed in snapshot tests).
        trace_limit: how many of the newest traces the latency, rate and table are computed from.
    """
    if refresh_s <= 0:
        raise ValueError("refresh_s must be more than 0")
    return DashApp(link if isinstance(link, Link) else Link(link), refresh_s, clock, trace_limit)
