"""One circuit breaker per provider: closed → open after N failures in a window → half-open probe → closed.

Written here rather than taken from a library, on purpose: the maintained asyncio breakers
(aiobreaker, aiocircuitbreaker, pybreaker's async path) count *consecutive* failures, while a
provider that fails every other call must open too, so failures are counted in a sliding time
window. The state must also be readable (traces, ``ctx status``, metrics), the clock injectable so
tests are deterministic, and only one probe may pass while half-open. That is ~60 lines.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum


class State(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"

    @property
    def gauge(self) -> int:
        """0 closed, 1 half-open, 2 open: the value the ``ctx_breaker_state`` metric shows."""
        return {State.closed: 0, State.half_open: 1, State.open: 2}[self]


class Breaker:
    def __init__(self, failures: int = 5, window: float = 30.0, cooldown: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        self._recent: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()
        self.opened = 0  # times it opened, for status and metrics

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return State.closed
        if self.clock() - self._opened_at >= self.cooldown:
            return State.half_open
        return State.open

    def allow(self) -> bool:
        """May a call go through now? In half-open exactly one caller (the probe) gets True."""
        with self._lock:
            state = self._state()
            if state is State.closed:
                return True
            if state is State.half_open and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:  # the probe succeeded: closed, with a clean slate
                self._opened_at = None
                self._recent.clear()
            # While closed a success forgets nothing: failures count in the window, not in a row.
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            now = self.clock()
            if self._opened_at is not None:  # the probe failed: open for another cooldown
                self._opened_at = now
                self._probing = False
                self.opened += 1
                return
            self._recent.append(now)
            while self._recent and now - self._recent[0] > self.window:
                self._recent.popleft()
            if len(self._recent) >= self.failures:
                self._opened_at = now
                self._recent.clear()
                self.opened += 1

    def release(self) -> None:
        """A probe that ended without a verdict (cancelled): let the next caller probe."""
        with self._lock:
            self._probing = False

    def describe(self) -> dict[str, object]:
        with self._lock:
            state = self._state()
            return {"state": state.value, "recent_failures": len(self._recent), "opened": self.opened}
