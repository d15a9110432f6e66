"""Job workers: a realtime lane (pushed events, watched changes, realtime polls) and a bulk lane.

Two lanes, so a change to a realtime source is never stuck behind a long bulk ingest. Jobs of one
source never run side by side (a lock per source), and a source already waiting in a lane is not
queued twice: a burst of file events becomes one sync.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ctx.pipeline import Stopped

log = logging.getLogger("ctx.daemon")
LANES = ("realtime", "bulk")


class Lanes:
    def __init__(self, run: Callable[[str, Callable[[str], Any], Callable[[], bool]], Any],
                 on_finished: Callable[[str], None]) -> None:
        self._run = run
        self._on_finished = on_finished
        self._queues: dict[str, queue.Queue[str]] = {lane: queue.Queue() for lane in LANES}
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._waiting: dict[str, set[str]] = {lane: set() for lane in LANES}  # sources queued, not started
        self._jobs_sources: dict[str, tuple[str, list[str]]] = {}
        self._guard = threading.Lock()
        self.stopping = threading.Event()
        self.busy: dict[str, str | None] = dict.fromkeys(LANES)
        self._threads = [threading.Thread(target=self._loop, args=(lane,), name=f"ctx-{lane}", daemon=True)
                         for lane in LANES]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job_id: str, lane: str, sources: list[str]) -> None:
        with self._guard:
            self._waiting[lane].update(sources)
            self._jobs_sources[job_id] = (lane, sources)
        self._queues[lane].put(job_id)

    def waiting(self, source: str, lane: str) -> bool:
        """Whether a job for ``source`` already waits in ``lane`` (so another would add nothing)."""
        with self._guard:
            return source in self._waiting[lane]

    def depth(self) -> int:
        return sum(q.qsize() for q in self._queues.values())

    @contextmanager
    def source_lock(self, source: str) -> Iterator[None]:
        with self._locks[source]:
            yield

    def _loop(self, lane: str) -> None:
        q = self._queues[lane]
        while not self.stopping.is_set():
            try:
                job_id = q.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._guard:
                _, sources = self._jobs_sources.pop(job_id, (lane, []))
                self._waiting[lane].difference_update(sources)
            self.busy[lane] = job_id
            try:
                self._run(job_id, self.source_lock, self.stopping.is_set)
            except Stopped:
                log.info("job %s stopped at a safe point; it resumes when the daemon starts again", job_id)
                return
            except Exception:  # boundary: one failed job must not stop the lane
                log.exception("job %s failed", job_id)
            finally:
                self.busy[lane] = None
            self._on_finished(job_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a running job stops at its next batch boundary (nothing half-written)."""
        self.stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)
