"""The embedding model's gate: one call at a time, and a waiting query goes before the next bulk slice."""

from __future__ import annotations

import threading
import time

from ctx.builtins.embedders import _ModelGate


def test_a_waiting_query_goes_before_the_next_bulk_slice() -> None:
    gate = _ModelGate()
    order: list[str] = []
    first_slice = threading.Event()
    release = threading.Event()

    def bulk_slice(name: str, hold: threading.Event | None = None) -> None:
        with gate.hold(query=False):
            order.append(name)
            if hold is not None:
                first_slice.set()
                hold.wait(5)

    def query() -> None:
        with gate.hold(query=True):
            order.append("query")

    running = threading.Thread(target=bulk_slice, args=("slice-1", release))
    running.start()
    assert first_slice.wait(5)
    waiting_query = threading.Thread(target=query)
    waiting_query.start()
    next_slice = threading.Thread(target=bulk_slice, args=("slice-2",))
    next_slice.start()
    deadline = time.monotonic() + 5
    while gate._queries == 0 and time.monotonic() < deadline:  # the query is queued behind slice-1
        time.sleep(0.001)
    release.set()
    for t in (running, waiting_query, next_slice):
        t.join(5)
    assert order == ["slice-1", "query", "slice-2"]


def test_the_gate_admits_one_holder_at_a_time() -> None:
    gate = _ModelGate()
    inside = 0
    most = 0
    lock = threading.Lock()

    def work(query: bool) -> None:
        nonlocal inside, most
        for _ in range(50):
            with gate.hold(query):
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0002)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 1
