"""The freshness scheduler: every source synced often enough to stay inside its staleness threshold.

``near_realtime`` and ``batch`` sources are synced every ``every`` (default: half their
``max_staleness``); ``realtime`` sources with a path (files, jsonl) are also watched with
watchfiles, so an edit is synced within milliseconds rather than at the next poll. Pushed
(``events``) sources have nothing to fetch: their freshness is the time since their last push.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctx.settings import Freshness, Settings

log = logging.getLogger("ctx.daemon")
TICK = 0.25


def lane_for(settings: Any) -> str:
    return "realtime" if settings.freshness == Freshness.realtime else "bulk"


class Scheduler:
    def __init__(self, settings: Settings, last_syncs: Callable[[], dict[str, str | None]],
                 submit: Callable[[str, str], None], watch: bool = True) -> None:
        self.settings = settings
        self.last_syncs = last_syncs
        self.submit = submit  # (source, trigger)
        self.watch = watch
        self.stopping = threading.Event()
        self._submitted: dict[str, float] = {}
        self._threads: list[threading.Thread] = []

    def polled(self) -> dict[str, Any]:
        return {name: cfg for name, cfg in self.settings.sources.items() if cfg.kind != "events"}

    def watched(self) -> dict[str, Path]:
        out = {}
        for name, cfg in self.polled().items():
            path = getattr(cfg, "path", None)
            if cfg.freshness == Freshness.realtime and isinstance(path, Path):
                out[name] = path
        return out

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._poll_loop, name="ctx-scheduler", daemon=True))
        if self.watch and self.watched():
            self._threads.append(threading.Thread(target=self._watch_loop, name="ctx-watcher", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def due(self, now: float) -> list[str]:
        """Sources whose last sync is older than their interval, and not already asked for recently."""
        wall = datetime.now(UTC)
        syncs = self.last_syncs()
        out = []
        for name, cfg in self.polled().items():
            interval = cfg.sync_interval
            last = syncs.get(name)
            age = (wall - datetime.fromisoformat(last)).total_seconds() if last else None
            if age is not None and age < interval:
                continue
            if now - self._submitted.get(name, -1e18) < interval:
                continue
            out.append(name)
        return out

    def _poll_loop(self) -> None:
        while not self.stopping.wait(TICK):
            try:
                for name in self.due(time.monotonic()):
                    self._submitted[name] = time.monotonic()
                    self.submit(name, "schedule")
            except Exception:  # boundary: the scheduler must outlive a bad tick
                log.exception("scheduler tick failed")

    def _watch_loop(self) -> None:
        import watchfiles

        watched = self.watched()
        # A file is watched through its folder: editors replace files, which ends a watch on the file itself.
        roots = sorted({str(p if p.is_dir() else p.parent) for p in watched.values()})
        log.info("watching %s for %s", ", ".join(roots), ", ".join(watched))
        try:
            for changes in watchfiles.watch(*roots, stop_event=self.stopping, debounce=50, step=20,
                                            raise_interrupt=False):
                touched = {Path(path) for _, path in changes}
                for name, path in watched.items():
                    if any(t == path or path in t.parents for t in touched):
                        self.submit(name, "watch")
        except Exception:  # boundary: polling still keeps the source inside its threshold
            log.exception("file watcher stopped; realtime sources fall back to polling")
