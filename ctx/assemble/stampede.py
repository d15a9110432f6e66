"""A stampede-proof front for a tiered cache: single-flight, XFetch early expiry, hot-entry refresh.

- Single-flight: concurrent misses of one key share one computation (on the event loop, so the
  bookkeeping needs no lock).
- XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention"): a reader recomputes
  before expiry with probability rising as expiry nears and with the cost of the value,
  ``now - delta * beta * ln(rand) >= expiry``. Here the lucky reader still gets the cached value and
  the recomputation runs in the background, so nobody waits for it.
- Hot entries (``hot_hits`` reads within their ttl) are refreshed in the background shortly before
  they expire, so a popular key never expires under load.
Stale-if-error is the caller's choice: :meth:`lookup` returns expired entries still inside their
stale window, flagged, and the caller serves them only when the fresh computation fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ctx.store.cache import Entry, TieredCache

log = logging.getLogger("ctx.cache")

Compute = Callable[[], Awaitable[Any]]
_MAX_HOT = 10_000


@dataclass(slots=True)
class Lookup:
    entry: Entry
    tier: str  # l1 | l2
    fresh: bool
    early: bool  # XFetch drew an early recomputation

    def age(self, now: float) -> float:
        return self.entry.age(now)


@dataclass(slots=True)
class _Hot:
    compute: Compute
    ttl: float
    stale_for: float
    expires_at: float
    keep: Callable[[Any], bool] | None


class CacheFront:
    def __init__(self, cache: TieredCache | None, level: str, beta: float = 1.0, hot_hits: int = 3,
                 refresh_ahead: float = 0.2, clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random) -> None:
        self.cache = cache
        self.level = level  # "provider" or "context": the label of its metrics
        self.beta = beta
        self.hot_hits = hot_hits
        self.refresh_ahead = refresh_ahead
        self.clock = clock
        self.rng = rng
        self.stats: Counter[str] = Counter()
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._hot: dict[str, _Hot] = {}
        self._hot_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return self.cache is not None

    # --- reads (any thread) ------------------------------------------------------------------------

    def lookup(self, key: str, compute: Compute | None = None,
               keep: Callable[[Any], bool] | None = None) -> Lookup | None:
        """The cached entry, fresh or still servable stale, or None. Counts the hit or the miss."""
        if self.cache is None:
            return None
        found = self.cache.get(key)
        if found is None:
            self.stats["miss"] += 1
            return None
        entry, tier = found
        now = self.clock()
        fresh = now < entry.expires_at
        if not fresh:
            self.stats["expired"] += 1
            return Lookup(entry, tier, False, False)
        self.stats[f"hit_{tier}"] += 1
        entry.hits += 1
        early = self.beta > 0 and now - entry.delta * self.beta * math.log(max(self.rng(), 1e-12)) >= entry.expires_at
        if compute is not None and entry.hits >= self.hot_hits and entry.ttl > 0:
            with self._hot_lock:
                if key in self._hot or len(self._hot) < _MAX_HOT:
                    self._hot[key] = _Hot(compute, entry.ttl, entry.stale_for, entry.expires_at, keep)
        return Lookup(entry, tier, True, early)

    # --- computing (on the loop) ------------------------------------------------------------------------

    async def flight(self, key: str, compute: Compute, ttl: float, stale_for: float,
                     keep: Callable[[Any], bool] | None = None) -> tuple[Any, bool]:
        """The value computed once for every concurrent caller of ``key``; (value, whether it was shared).

        Each caller may stop waiting (its own deadline) without cancelling the computation for the others.
        ``keep`` decides whether a value is cached (default: always).
        """
        running = self._flights.get(key)
        if running is not None:
            self.stats["coalesced"] += 1
            return await asyncio.shield(running), True
        task = asyncio.ensure_future(self._compute(key, compute, ttl, stale_for, keep))
        self._flights[key] = task
        task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(task), False

    def _landed(self, key: str, task: asyncio.Future[Any]) -> None:
        self._flights.pop(key, None)
        if not task.cancelled():
            # Marked retrieved: when every caller stopped waiting (their deadlines passed), no one else will,
            # and asyncio would log the failure as an error with a traceback ("never retrieved").
            task.exception()

    async def _compute(self, key: str, compute: Compute, ttl: float, stale_for: float,
                       keep: Callable[[Any], bool] | None) -> Any:
        started = time.perf_counter()
        value = await compute()
        if self.cache is not None and ttl > 0 and (keep is None or keep(value)):
            self.cache.set(key, Entry(value, self.clock(), ttl, stale_for, time.perf_counter() - started))
        return value

    def refresh(self, key: str, compute: Compute, ttl: float, stale_for: float, why: str,
                keep: Callable[[Any], bool] | None = None) -> None:
        """Recompute ``key`` in the background (at most one at a time); failures keep the old entry."""
        if key in self._flights:
            return
        self.stats[f"refresh_{why}"] += 1
        future = asyncio.ensure_future(self.flight(key, compute, ttl, stale_for, keep))
        future.add_done_callback(_log_failure)

    def refresh_soon(self, key: str, compute: Compute, ttl: float, stale_for: float, why: str,
                     keep: Callable[[Any], bool] | None = None) -> None:
        """:meth:`refresh` from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.refresh, key, compute, ttl, stale_for, why, keep)

    async def refresher(self, tick: float = 0.25) -> None:
        """Runs for the life of the loop: refreshes hot entries within ``refresh_ahead`` of their expiry."""
        self._loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = self.clock()
            with self._hot_lock:
                due = [(k, h) for k, h in self._hot.items() if h.expires_at - now <= h.ttl * self.refresh_ahead]
                for k, _ in due:
                    del self._hot[k]  # hot again only if it is read again after the refresh
            for k, hot in due:
                if hot.expires_at + hot.stale_for > now:
                    self.refresh(k, hot.compute, hot.ttl, hot.stale_for, "hot", hot.keep)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def describe(self) -> dict[str, Any]:
        sizes = {t.name: len(t) for t in self.cache.tiers} if self.cache is not None else {}
        return {"enabled": self.enabled, "entries": sizes, **dict(sorted(self.stats.items())),
                "hot": len(self._hot)}


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        exc = future.exception()
        log.info("background refresh failed (the cached value stays): %s: %s", type(exc).__name__, exc)
