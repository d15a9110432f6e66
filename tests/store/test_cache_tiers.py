"""The cache tiers (L1 memory, L2 disk, both behind TieredCache), the circuit breaker and the stampede front.

Every clock here is injected, so the outcomes do not depend on how busy the machine is; the disk tier
expires on the real clock (diskcache), so its expiry test sleeps a little, with a wide margin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctx.assemble.breaker import Breaker, State
from ctx.assemble.stampede import CacheFront
from ctx.store.cache import DiskTier, Entry, MemoryTier, TieredCache


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class OffsetClock:
    """The wall clock plus an offset: advancing it by sleeping moves it for diskcache too."""

    def __call__(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)


# --- the CacheTier contract, for each tier and for the tiered cache --------------------------------------


@dataclass
class Subject:
    """One cache under test, seen through the CacheTier role: ``get`` gives the entry (or None)."""

    name: str
    cache: Any
    clock: FakeClock | OffsetClock
    tiers: list[Any]

    def get(self, key: str) -> Entry | None:
        found = self.cache.get(key)
        if isinstance(self.cache, TieredCache):
            return None if found is None else found[0]
        return found  # type: ignore[no-any-return]

    def sizes(self) -> set[int]:
        """len() of every tier it is made of (one value when they agree)."""
        return {len(t) for t in self.tiers}

    def entry(self, value: Any, ttl: float = 60.0, stale_for: float = 0.0) -> Entry:
        return Entry(value, self.clock(), ttl, stale_for)


@pytest.fixture(params=["memory", "disk", "tiered"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    closers: list[Callable[[], None]] = []
    if request.param == "memory":
        clock: FakeClock | OffsetClock = FakeClock()
        tier = MemoryTier(100, clock=clock)
        out = Subject("memory", tier, clock, [tier])
    elif request.param == "disk":
        disk = DiskTier(tmp_path / "l2")
        closers.append(disk.close)
        out = Subject("disk", disk, OffsetClock(), [disk])
    else:
        clock = OffsetClock()
        l1, l2 = MemoryTier(100, clock=clock), DiskTier(tmp_path / "l2")
        tiered = TieredCache([l1, l2])
        closers.append(tiered.close)
        out = Subject("tiered", tiered, clock, [l1, l2])
    yield out
    for close in closers:
        close()


def test_set_get_round_trip(subject: Subject) -> None:
    value = {"blocks": ["a", "b"], "n": 3}
    entry = subject.entry(value, ttl=30.0, stale_for=5.0)
    subject.cache.set("k1", entry)
    got = subject.get("k1")
    assert got is not None
    assert got.value == value
    assert (got.ttl, got.stale_for) == (30.0, 5.0)
    assert got.stored_at == pytest.approx(entry.stored_at)
    assert subject.get("missing") is None


def test_set_replaces(subject: Subject) -> None:
    subject.cache.set("k", subject.entry("old"))
    subject.cache.set("k", subject.entry("new"))
    got = subject.get("k")
    assert got is not None and got.value == "new"
    assert subject.sizes() == {1}


def test_delete(subject: Subject) -> None:
    subject.cache.set("a", subject.entry(1))
    subject.cache.set("b", subject.entry(2))
    subject.cache.delete("a")
    subject.cache.delete("never-there")  # deleting a missing key is not an error
    assert subject.get("a") is None
    got = subject.get("b")
    assert got is not None and got.value == 2
    assert subject.sizes() == {1}


def test_clear_and_len(subject: Subject) -> None:
    assert subject.sizes() == {0}
    for i in range(5):
        subject.cache.set(f"k{i}", subject.entry(i))
    assert subject.sizes() == {5}
    subject.cache.clear()
    assert subject.sizes() == {0}
    assert all(subject.get(f"k{i}") is None for i in range(5))


def test_entry_is_kept_through_its_stale_window_then_gone(subject: Subject) -> None:
    # keep = ttl + stale_for = 0.3 s: past its ttl the entry must still be there (stale-if-error needs it),
    # past keep no one can use it and it must be gone.
    subject.cache.set("k", subject.entry("v", ttl=0.1, stale_for=0.2))
    subject.clock.advance(0.15)
    got = subject.get("k")
    assert got is not None and got.value == "v", "an expired entry inside its stale window was dropped"
    subject.clock.advance(0.35)
    assert subject.get("k") is None


def test_memory_entry_past_keep_is_dropped_on_read() -> None:
    clock = FakeClock()
    tier = MemoryTier(10, clock=clock)
    tier.set("k", Entry("v", clock(), ttl=10.0, stale_for=5.0))
    clock.advance(15.0)  # exactly keep: still servable
    assert tier.get("k") is not None
    clock.advance(0.001)
    assert tier.get("k") is None
    assert len(tier) == 0


def test_memory_tier_evicts_least_recently_used() -> None:
    clock = FakeClock()
    tier = MemoryTier(3, clock=clock)
    for key in ("a", "b", "c"):
        tier.set(key, Entry(key, clock(), 60.0))
    assert tier.get("a") is not None  # a is now the most recently used; b the least
    tier.set("d", Entry("d", clock(), 60.0))
    assert len(tier) == 3
    assert tier.get("b") is None
    assert [k for k in ("a", "c", "d") if tier.get(k) is not None] == ["a", "c", "d"]
    tier.set("c", Entry("c2", clock(), 60.0))  # a write is a use too: a is now the least recent
    tier.set("e", Entry("e", clock(), 60.0))
    assert tier.get("a") is None
    assert {k for k in ("c", "d", "e") if tier.get(k) is not None} == {"c", "d", "e"}


def test_memory_tier_of_size_zero_stores_nothing() -> None:
    tier = MemoryTier(0)
    tier.set("k", Entry("v", time.time(), 60.0))
    assert tier.get("k") is None and len(tier) == 0


def test_tiered_cache_promotes_an_l2_hit_into_l1(tmp_path: Path) -> None:
    l1, l2 = MemoryTier(10), DiskTier(tmp_path / "l2")
    cache = TieredCache([l1, l2])
    try:
        l2.set("k", Entry("from disk", time.time(), 60.0))  # as another process of the home would
        assert l1.get("k") is None
        found = cache.get("k")
        assert found is not None
        entry, tier = found
        assert (entry.value, tier) == ("from disk", "l2")
        assert l1.get("k") is not None, "an L2 hit was not copied into L1"
        found = cache.get("k")
        assert found is not None and found[1] == "l1"
        assert cache.get("nothing") is None
    finally:
        cache.close()


def test_disk_tier_is_shared_between_instances_of_one_directory(tmp_path: Path) -> None:
    a, b = DiskTier(tmp_path / "l2"), DiskTier(tmp_path / "l2")
    try:
        a.set("k", Entry([1, 2, 3], time.time(), 60.0))
        got = b.get("k")
        assert got is not None and got.value == [1, 2, 3]
    finally:
        a.close()
        b.close()


# --- the circuit breaker ------------------------------------------------------------------------------------


def test_breaker_opens_after_n_failures_inside_the_window() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=3, window=10.0, cooldown=5.0, clock=clock)
    assert breaker.state is State.closed and breaker.allow()
    breaker.failure()
    clock.advance(1)
    breaker.failure()
    assert breaker.state is State.closed and breaker.allow()
    clock.advance(1)
    breaker.failure()
    assert breaker.state is State.open
    assert breaker.allow() is False
    assert breaker.describe() == {"state": "open", "recent_failures": 0, "opened": 1}


def test_breaker_forgets_failures_outside_the_window() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=3, window=10.0, cooldown=5.0, clock=clock)
    breaker.failure()  # t=0
    clock.advance(5)
    breaker.failure()  # t=5
    clock.advance(6)
    breaker.failure()  # t=11: the t=0 failure is out of the window, two remain
    assert breaker.state is State.closed
    assert breaker.describe()["recent_failures"] == 2
    clock.advance(1)
    breaker.failure()  # t=12: t=5, 11, 12 are inside the window
    assert breaker.state is State.open


def test_breaker_opens_for_a_provider_that_fails_every_other_call() -> None:
    # The reason the breaker counts failures in a window instead of consecutive ones (see its docstring).
    clock = FakeClock()
    breaker = Breaker(failures=3, window=10.0, cooldown=5.0, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
        clock.advance(0.5)
        if breaker.state is State.closed:
            assert breaker.allow()
            breaker.success()
            clock.advance(0.5)
    assert breaker.state is State.open


def test_breaker_cooldown_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=1, window=10.0, cooldown=5.0, clock=clock)
    breaker.failure()
    clock.advance(4.9)
    assert breaker.state is State.open and breaker.allow() is False
    clock.advance(0.1)
    assert breaker.state is State.half_open
    assert breaker.allow() is True  # the probe
    assert [breaker.allow() for _ in range(5)] == [False] * 5  # everyone else while it runs
    assert breaker.state is State.half_open


def test_breaker_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=2, window=10.0, cooldown=5.0, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.advance(5)
    assert breaker.allow()
    breaker.success()
    assert breaker.state is State.closed
    assert all(breaker.allow() for _ in range(3))
    breaker.failure()  # the failures before it opened are forgotten: one more does not re-open it
    assert breaker.state is State.closed
    assert breaker.describe() == {"state": "closed", "recent_failures": 1, "opened": 1}


def test_breaker_probe_failure_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=2, window=10.0, cooldown=5.0, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.advance(5)
    assert breaker.allow()
    breaker.failure()  # the probe failed
    assert breaker.state is State.open
    assert breaker.allow() is False
    clock.advance(4.9)
    assert breaker.allow() is False, "the new cooldown counts from the failed probe"
    clock.advance(0.1)
    assert breaker.allow() is True
    assert breaker.describe()["opened"] == 2


def test_breaker_cancelled_probe_lets_the_next_caller_probe() -> None:
    clock = FakeClock()
    breaker = Breaker(failures=1, window=10.0, cooldown=5.0, clock=clock)
    breaker.failure()
    clock.advance(5)
    assert breaker.allow()
    breaker.release()  # the probe was cancelled (its request's deadline passed): no verdict
    assert breaker.state is State.half_open
    assert breaker.allow() is True
    assert breaker.allow() is False


# --- the stampede front -----------------------------------------------------------------------------------


def _front(clock: FakeClock, rng: Callable[[], float] = lambda: 0.5, **kw: Any) -> CacheFront:
    return CacheFront(TieredCache([MemoryTier(100, clock=clock)]), "provider", clock=clock, rng=rng, **kw)


def test_xfetch_is_not_early_far_from_expiry() -> None:
    clock = FakeClock()
    front = _front(clock, rng=lambda: 1e-9)  # even the unluckiest draw
    front.cache.set("k", Entry("v", clock(), ttl=100.0, delta=0.01))  # type: ignore[union-attr]
    clock.advance(1)
    found = front.lookup("k")
    assert found is not None and found.fresh and found.early is False
    # an ordinary draw near expiry is not early either: 99 - 0.01 * ln(0.5) < 100
    front.rng = lambda: 0.5
    clock.advance(98)
    found = front.lookup("k")
    assert found is not None and found.fresh and found.early is False


def test_xfetch_is_early_near_expiry_when_the_draw_is_tiny() -> None:
    clock = FakeClock()
    front = _front(clock, rng=lambda: 1e-6)
    front.cache.set("k", Entry("v", clock(), ttl=10.0, delta=0.5))  # type: ignore[union-attr]
    clock.advance(9.0)  # 9 - 0.5 * ln(1e-6) = 9 + 6.9 >= 10
    found = front.lookup("k")
    assert found is not None
    assert found.fresh is True and found.early is True
    assert found.entry.value == "v", "the early reader still gets the cached value"


def test_xfetch_off_with_beta_zero() -> None:
    clock = FakeClock()
    front = _front(clock, rng=lambda: 1e-12, beta=0.0)
    front.cache.set("k", Entry("v", clock(), ttl=10.0, delta=5.0))  # type: ignore[union-attr]
    clock.advance(9.99)
    found = front.lookup("k")
    assert found is not None and found.early is False


def test_lookup_reports_expired_but_servable_entries_as_not_fresh() -> None:
    clock = FakeClock()
    front = _front(clock)
    front.cache.set("k", Entry("v", clock(), ttl=1.0, stale_for=10.0))  # type: ignore[union-attr]
    clock.advance(3)
    found = front.lookup("k")
    assert found is not None and found.fresh is False and found.early is False
    assert found.age(clock()) == pytest.approx(3.0)
    assert front.stats["expired"] == 1
    clock.advance(9)  # past ttl + stale_for: gone
    assert front.lookup("k") is None
    assert front.stats["miss"] == 1


def test_hot_entry_is_registered_after_hot_hits_reads() -> None:
    clock = FakeClock()
    front = _front(clock, hot_hits=3)

    async def compute() -> str:
        return "v"

    front.cache.set("k", Entry("v", clock(), ttl=10.0))  # type: ignore[union-attr]
    front.cache.set("cold", Entry("v", clock(), ttl=10.0))  # type: ignore[union-attr]
    front.lookup("k", compute)
    front.lookup("k", compute)
    assert front.describe()["hot"] == 0
    front.lookup("k", compute)
    assert front.describe()["hot"] == 1
    for _ in range(5):  # reads without a way to recompute cannot make an entry hot
        front.lookup("cold")
    assert front.describe()["hot"] == 1
    assert front.describe()["hit_l1"] == 8


def test_flight_computes_once_for_concurrent_callers_and_caches_it() -> None:
    clock = FakeClock()
    front = _front(clock)
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "value"

    async def main() -> list[tuple[Any, bool]]:
        return await asyncio.gather(*(front.flight("k", compute, 10.0, 0.0) for _ in range(50)))

    results = asyncio.run(main())
    assert calls == 1
    assert [v for v, _ in results] == ["value"] * 50
    assert sum(1 for _, shared in results if not shared) == 1
    found = front.lookup("k")
    assert found is not None and found.entry.value == "value"


def test_flight_survives_a_caller_that_stops_waiting() -> None:
    clock = FakeClock()
    front = _front(clock)
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return "value"

    async def main() -> tuple[Any, bool]:
        first = asyncio.ensure_future(front.flight("k", compute, 10.0, 0.0))
        await asyncio.sleep(0)  # the first caller starts the computation
        second = asyncio.ensure_future(front.flight("k", compute, 10.0, 0.0))
        await asyncio.sleep(0.01)
        first.cancel()  # the caller that started it gives up (its own deadline)
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    value, shared = asyncio.run(main())
    assert (value, shared, calls) == ("value", True, 1)
