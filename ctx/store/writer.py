"""The single writer: every SQLite write of a home runs on one thread, one short transaction at a time.

SQLite allows one writer at a time anyway; funnelling writes through one thread turns lock waits
(``database is locked`` under load) into an orderly queue, and keeps long work (fetching, chunking,
embedding) off the write path. In-process commands have one thread, so their writer runs inline.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class InlineWriter:
    """The writer of a one-thread process (the CLI without a daemon): writes run where they are asked for."""

    thread_id: int | None = None

    def __call__(self, fn: Callable[[], T]) -> T:
        return fn()

    def close(self) -> None:
        pass


class ThreadWriter:
    """Runs each submitted write on one dedicated thread and hands back its result (or its exception)."""

    def __init__(self, name: str = "ctx-writer") -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.thread_id: int | None = self._thread.ident

    def __call__(self, fn: Callable[[], T]) -> T:
        if threading.get_ident() == self.thread_id:
            return fn()  # a write that calls another write: already on the writer
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # boundary: the caller re-raises it on its own thread
                future.set_exception(exc)

    def close(self) -> None:
        """Finish the writes already queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=30)
