"""Cache tiers: L1 in this process (LRU), L2 on disk in the home (diskcache, shared by every process of it).

A tier stores :class:`Entry` objects and knows nothing of freshness rules: an entry carries when it
was stored, its ttl and how long it may be served stale, and the tier only has to keep it at least
that long (``Entry.keep``). A shared Redis tier can join later behind the same :class:`CacheTier` role.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(slots=True)
class Entry:
    value: Any
    stored_at: float  # wall clock, so entries from another process (L2) compare correctly
    ttl: float
    stale_for: float = 0.0
    delta: float = 0.0  # seconds the value took to compute: XFetch recomputes slow values earlier
    hits: int = field(default=0, compare=False)

    @property
    def expires_at(self) -> float:
        return self.stored_at + self.ttl

    @property
    def keep(self) -> float:
        """Seconds from storing after which no one can use the entry any more."""
        return self.ttl + self.stale_for

    def age(self, now: float) -> float:
        return max(now - self.stored_at, 0.0)


class CacheTier(Protocol):
    name: str

    def get(self, key: str) -> Entry | None: ...
    def set(self, key: str, entry: Entry) -> None: ...
    def delete(self, key: str) -> None: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...


class MemoryTier:
    """L1: a thread-safe LRU of at most ``max_items`` entries; entries past ``keep`` are dropped on read."""

    name = "l1"

    def __init__(self, max_items: int, clock: Any = time.time) -> None:
        self.max_items = max_items
        self.clock = clock
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            if self.clock() - entry.stored_at > entry.keep:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return entry

    def set(self, key: str, entry: Entry) -> None:
        if self.max_items <= 0:
            return
        with self._lock:
            self._items[key] = entry
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class DiskTier:
    """L2: diskcache in the home. Process- and thread-safe; entries expire on disk after ``keep``."""

    name = "l2"

    def __init__(self, directory: Path, size_mb: int = 256) -> None:
        import diskcache

        directory.mkdir(parents=True, exist_ok=True)
        # eviction by least-recently-stored keeps writes cheap (no access-time update on every read).
        self._cache = diskcache.Cache(str(directory), size_limit=size_mb * 1024 * 1024)

    def get(self, key: str) -> Entry | None:
        try:
            value = self._cache.get(key)
        except Exception:  # a value pickled by another ctx version, or a damaged row: a miss, never a failure
            return None
        return value if isinstance(value, Entry) else None

    def set(self, key: str, entry: Entry) -> None:
        self._cache.set(key, entry, expire=max(entry.keep, 0.001))

    def delete(self, key: str) -> None:
        self._cache.delete(key)

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()

    def __len__(self) -> int:
        return len(self._cache)


class TieredCache:
    """Reads L1 then L2 (an L2 hit is copied into L1); writes go to every tier."""

    def __init__(self, tiers: list[CacheTier]) -> None:
        self.tiers = tiers

    def get(self, key: str) -> tuple[Entry, str] | None:
        for i, tier in enumerate(self.tiers):
            entry = tier.get(key)
            if entry is not None:
                for upper in self.tiers[:i]:
                    upper.set(key, entry)
                return entry, tier.name
        return None

    def set(self, key: str, entry: Entry) -> None:
        for tier in self.tiers:
            tier.set(key, entry)

    def delete(self, key: str) -> None:
        for tier in self.tiers:
            tier.delete(key)

    def clear(self) -> None:
        for tier in self.tiers:
            tier.clear()

    def close(self) -> None:
        for tier in self.tiers:
            close = getattr(tier, "close", None)
            if close is not None:
                close()
