"""The alert loop: the daemon evaluates the anomaly rules every ``[alerts] interval`` on its own thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ctx.daemon")


class AlertLoop:
    def __init__(self, check: Callable[[], dict[str, Any]], interval: float) -> None:
        self.check = check  # one evaluation: find, reconcile, deliver
        self.interval = interval
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ctx-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # a webhook in flight has its own timeout

    def _loop(self) -> None:
        # The first evaluation waits one interval: at start the scheduler's first syncs are still queued.
        while not self.stopping.wait(self.interval):
            try:
                changes = self.check()
            except Exception:  # boundary: the loop must outlive a bad evaluation
                log.exception("alert evaluation failed")
                continue
            if changes["opened"] or changes["resolved"]:
                log.info("alerts: %d opened, %d resolved, %d firing", len(changes["opened"]),
                         len(changes["resolved"]), changes["active"])
