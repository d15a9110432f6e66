"""The assembly event loop: one background thread runs every provider coroutine of the process.

Callers are synchronous (CLI commands, the daemon's worker threads), so they hand a coroutine to this
loop and wait for its result. One loop per process is what makes single-flight coalescing work across
concurrent requests, and lets late providers be cancelled. Blocking work (SQLite, the embedder) runs
on the loop's own thread pool, sized for requests that wait on slow providers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, workers: int = 32) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ctx-provider")
        self.loop.set_default_executor(self.pool)
        self._thread = threading.Thread(target=self._run, name="ctx-assembly-loop", daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (the coroutine keeps its own deadline)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def spawn(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start a long-running task on the loop (e.g. the hot-entry refresher)."""
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(factory()))

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def close(self, cleanup: Callable[[], Coroutine[Any, Any, Any]] | None = None) -> None:
        if not self._thread.is_alive():
            return
        if cleanup is not None:
            try:
                asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(timeout=5)
            except Exception:  # boundary: closing; a provider that fails to close must not block shutdown
                pass

        async def stop() -> None:
            for task in asyncio.all_tasks(self.loop):
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)
