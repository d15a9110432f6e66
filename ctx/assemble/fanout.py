"""Ask every provider of a recipe at once, under one deadline, through breakers and the provider cache.

Each provider gets ``min(its timeout, what is left of the deadline)``. A provider that fails, times
out or is skipped by its open breaker is answered from a stale cache entry if one is still servable
(marked stale, with its age), else by its fallback provider, else not at all; the outcome records
which, so the trace and ``degradations`` can say what happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ctx.assemble.breaker import Breaker
from ctx.assemble.provider import ContextRequest, Deadline, Provider, ProviderError
from ctx.assemble.stampede import CacheFront, Compute, Lookup
from ctx.models import Block
from ctx.settings import RecipeProvider, RecipeSettings

DELIVERED = ("ok", "cached", "coalesced", "stale", "fallback")


@dataclass
class Outcome:
    provider: str
    kind: str
    criticality: str
    status: str  # ok | cached | coalesced | stale | fallback | late | timeout | failed | skipped | not_applicable
    blocks: list[Block] = field(default_factory=list)
    ms: float = 0.0
    cache: str = "off"  # off | miss | l1 | l2 | coalesced
    breaker: str = "closed"
    cost: float = 0.0
    age_s: float | None = None
    error: str | None = None
    via: str | None = None  # the fallback provider that answered instead

    @property
    def delivered(self) -> bool:
        return self.status in DELIVERED

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "criticality": self.criticality, "status": self.status, "blocks": len(self.blocks),
                "ms": round(self.ms, 3), "cache": self.cache, "breaker": self.breaker, "cost": self.cost,
                "age_s": None if self.age_s is None else round(self.age_s, 3), "error": self.error, "via": self.via}


class Fanout:
    def __init__(self, providers: Mapping[str, Provider], breakers: Mapping[str, Breaker], front: CacheFront,
                 max_parallel: int = 16, scope: str = "") -> None:
        self.providers = providers
        self.breakers = breakers
        self.front = front
        self.max_parallel = max_parallel
        # The settings beyond a provider's own table that shape its result (a retrieval provider's ranking reads
        # [retrieval], [chunking], [embedding]): part of every key, or a changed knob is served the old answer.
        self.scope = scope

    async def run(self, recipe: RecipeSettings, request: ContextRequest, deadline: Deadline,
                  versions: Mapping[str, int]) -> dict[str, Outcome]:
        limit = asyncio.Semaphore(self.max_parallel)
        tasks = {name: asyncio.ensure_future(self._answer(name, part, request, deadline, versions, limit))
                 for name, part in recipe.providers.items()}
        # Each provider stops itself at the deadline; this wait is the net under that.
        done, late = await asyncio.wait(tasks.values(), timeout=deadline.remaining() + 0.005)
        for task in late:
            task.cancel()
        out: dict[str, Outcome] = {}
        for name, task in tasks.items():
            if task in done and not task.cancelled():
                out[name] = task.result()
            else:
                part = recipe.providers[name]
                out[name] = Outcome(name, self.providers[name].settings.kind, part.criticality.value, "late",
                                    ms=0.0, breaker=self.breakers[name].state.value,
                                    error="still running at the deadline: cancelled")
        return out

    async def _answer(self, name: str, part: RecipeProvider, request: ContextRequest, deadline: Deadline,
                      versions: Mapping[str, int], limit: asyncio.Semaphore) -> Outcome:
        outcome = await self._one(name, part.criticality.value, request, deadline, versions, limit)
        if not outcome.delivered and part.fallback is not None and outcome.status != "not_applicable":
            backup = await self._one(part.fallback, part.criticality.value, request, deadline, versions, limit)
            if backup.delivered:
                outcome.status, outcome.via, outcome.blocks = "fallback", part.fallback, backup.blocks
                outcome.cost += backup.cost
        return outcome

    async def _one(self, name: str, criticality: str, request: ContextRequest, deadline: Deadline,
                   versions: Mapping[str, int], limit: asyncio.Semaphore) -> Outcome:
        provider = self.providers[name]
        settings = provider.settings
        breaker = self.breakers[name]
        started = time.perf_counter()
        out = Outcome(name, settings.kind, criticality, "ok", breaker=breaker.state.value)
        missing = [n for n in provider.needs() if not request.value(n)]
        if missing:
            out.status, out.error = "not_applicable", f"needs a {missing[0]} (--{missing[0]})"
            return out

        def caller(dl: Deadline) -> Compute:
            async def call() -> list[Block]:
                # Only the call that really reaches the provider tells its breaker how it went.
                try:
                    blocks = await asyncio.wait_for(provider.fetch(request, dl), min(settings.timeout, dl.remaining()))
                except asyncio.CancelledError:
                    breaker.release()
                    raise
                except BaseException:
                    breaker.failure()
                    raise
                breaker.success()
                return blocks

            return call

        async def refresh() -> list[Block]:
            # A background refresh has no request waiting: its own timeout, and never through an open breaker.
            if not breaker.allow():
                raise ProviderError("circuit open")
            return await caller(Deadline.after(settings.timeout))()

        call = caller(deadline)
        key = self._key(provider, request, versions) if settings.cache and self.front.enabled else None
        ttl, stale_for = settings.cache_ttl, settings.stale_limit
        found = self.front.lookup(key, refresh) if key is not None else None
        if found is not None and found.fresh:
            if found.early:
                self.front.refresh(key, refresh, ttl, stale_for, "early")  # type: ignore[arg-type]
            out.status, out.cache, out.age_s = "cached", found.tier, found.age(self.front.clock())
            return self._finish(out, found.entry.value, criticality, started)
        out.cache = "miss" if key is not None else "off"
        if not breaker.allow():
            out.breaker = breaker.state.value
            return self._failed(out, "skipped", "circuit open: not called", found, criticality, started)
        try:
            async with limit:
                if key is None:
                    blocks, shared = await asyncio.wait_for(call(), deadline.remaining()), False
                else:
                    blocks, shared = await asyncio.wait_for(self.front.flight(key, call, ttl, stale_for),
                                                            deadline.remaining())
        except TimeoutError:
            out.breaker = breaker.state.value
            late = deadline.remaining() <= 0.0005
            what = "the deadline passed" if late else f"timed out after {settings.timeout * 1000:.0f} ms"
            return self._failed(out, "late" if late else "timeout", what, found, criticality, started)
        except Exception as exc:  # boundary: a plugin's code; its failure degrades the request, never breaks it
            out.breaker = breaker.state.value
            return self._failed(out, "failed", _one_line(exc), found, criticality, started)
        out.breaker = breaker.state.value
        if shared:
            out.status, out.cache = "coalesced", "coalesced"
        else:
            out.cost = settings.cost
        return self._finish(out, blocks, criticality, started)

    def _failed(self, out: Outcome, status: str, error: str, found: Lookup | None, criticality: str,
                started: float) -> Outcome:
        out.error = error
        if found is not None:  # stale-if-error: the expired entry, marked with its age
            age = found.age(self.front.clock())
            self.front.stats["stale_served"] += 1
            out.status, out.age_s = "stale", age
            blocks = [replace(b, stale=True, age_s=round(age, 3)) for b in found.entry.value]
            return self._finish(out, blocks, criticality, started)
        out.status = status
        out.ms = (time.perf_counter() - started) * 1000
        return out

    @staticmethod
    def _finish(out: Outcome, blocks: list[Block], criticality: str, started: float) -> Outcome:
        # Copies: cached lists are shared between requests and must never change under them.
        out.blocks = [replace(b, criticality=b.criticality or criticality, provider=b.provider or out.provider)
                      for b in blocks]
        out.ms = (time.perf_counter() - started) * 1000
        return out

    def _key(self, provider: Provider, request: ContextRequest, versions: Mapping[str, int]) -> str:
        reads = provider.reads()
        data = {s: v for s, v in versions.items() if reads is None or s in reads}
        raw = json.dumps([provider.name, provider.settings.fingerprint(), self.scope, provider.key(request), data],
                         default=str, sort_keys=True)
        return "p:" + hashlib.sha256(raw.encode()).hexdigest()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
