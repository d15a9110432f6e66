"""Assemble one request: run the recipe's providers under a deadline, pack their blocks to the budget
by criticality and token share, render, and trace it. Whole results are cached per
(recipe version, request, data version), with the same stampede protection as provider results."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ctx.assemble.breaker import Breaker
from ctx.assemble.budget import deduplicate, pack
from ctx.assemble.context import AssembledContext, AssembleRequest, Assembly
from ctx.assemble.fanout import Fanout, Outcome
from ctx.assemble.loop import LoopThread
from ctx.assemble.provider import Deadline, Provider
from ctx.assemble.render import Renderer, age_text
from ctx.assemble.stampede import CacheFront
from ctx.errors import TransientError, UserError
from ctx.models import Block, Degradation
from ctx.observe.traces import TraceRecord, created_now, new_trace_id
from ctx.process.tokens import encoding_for_model, get_encoding
from ctx.settings import Criticality, PricingSettings, RecipeSettings

__all__ = ["AssembleRequest", "AssembledContext", "Assembler", "AssemblyOptions", "CriticalMissing"]


class CriticalMissing(TransientError):
    """A critical provider gave nothing and nothing could stand in for it. ``trace`` records the failure."""

    def __init__(self, message: str, outcomes: Mapping[str, Outcome], trace: TraceRecord | None = None) -> None:
        super().__init__(message)
        self.outcomes = outcomes
        self.trace = trace


@dataclass(frozen=True)
class AssemblyOptions:
    default_encoding: str
    min_truncated_tokens: int
    fingerprint: str  # the configuration the result depends on (chunking, retrieval, assembly, providers...)
    chunk_encoding: str
    deadline: float
    context_ttl: float
    pricing: PricingSettings = field(default_factory=PricingSettings)
    scope: str = ""  # the settings every provider's result depends on beyond its own table (see Fanout)


class Assembler:
    def __init__(self, providers: Mapping[str, Provider], breakers: Mapping[str, Breaker],
                 recipes: Callable[[str | None], tuple[str, RecipeSettings]], renderers: Mapping[str, Renderer],
                 options: AssemblyOptions, loop: LoopThread, provider_cache: CacheFront, context_cache: CacheFront,
                 data_versions: Callable[[], dict[str, int]], max_parallel: int = 16) -> None:
        self.providers = providers
        self.breakers = breakers
        self.recipes = recipes
        self.renderers = renderers
        self.options = options
        self.fingerprint = options.fingerprint
        self.loop = loop
        self.provider_cache = provider_cache
        self.context_cache = context_cache
        self.data_versions = data_versions
        self.fanout = Fanout(providers, breakers, provider_cache, max_parallel, options.scope)
        self._prepared: set[str] = set()

    def assemble(self, request: AssembleRequest, replay_of: str | None = None) -> tuple[AssembledContext, TraceRecord]:
        name, recipe = self.recipes(request.recipe)
        self.prepare(recipe.providers)  # once per process, and not part of this request's timings
        started = time.perf_counter()
        seconds = request.deadline or recipe.deadline or self.options.deadline
        deadline = Deadline.after(seconds)
        versions = self.data_versions()
        ttl = self._context_ttl(recipe)
        key = self._key(name, recipe, request, versions) if ttl > 0 and self.context_cache.enabled else None

        async def compute() -> Assembly:
            return await self._build(request, recipe, deadline, versions)

        async def refresh() -> Assembly:  # a background refresh gets a deadline of its own
            return await self._build(request, recipe, Deadline.after(seconds), versions)

        found = self.context_cache.lookup(key, refresh, _complete) if key is not None else None
        try:
            if found is not None and found.fresh:
                if found.early:
                    self.context_cache.refresh_soon(key, refresh, ttl, 0.0, "early", _complete)  # type: ignore[arg-type]
                result, cache = found.entry.value, found.tier
            elif key is not None:
                result, shared = self.loop.run(self.context_cache.flight(key, compute, ttl, 0.0, keep=_complete))
                cache = "coalesced" if shared else "miss"
            else:
                result, cache = self.loop.run(compute()), "off"
        except CriticalMissing as exc:
            # Coalesced requests share one exception: each raises its own, with its own trace of the failure.
            trace = self._failed_trace(request, exc, (time.perf_counter() - started) * 1000, replay_of)
            raise CriticalMissing(f"{exc} (trace {trace.id})", exc.outcomes, trace) from None
        total = (time.perf_counter() - started) * 1000
        timings = {**result.timings, "total_ms": total} if cache in ("miss", "off") else {"total_ms": total}
        return self._finish(request, result, cache, timings, replay_of)

    async def _build(self, request: AssembleRequest, recipe: RecipeSettings, deadline: Deadline,
                     versions: Mapping[str, int]) -> Assembly:
        t0 = time.perf_counter()
        outcomes = await self.fanout.run(recipe, request.for_providers(), deadline, versions)
        _check_critical(request.recipe, outcomes)
        t1 = time.perf_counter()
        # Packing counts tokens (CPU work): off the loop, so other requests' providers keep moving.
        assembly = await self.loop.run_sync(self._pack, request, recipe, outcomes)
        assembly.timings = {**{f"{n}_ms": o.ms for n, o in outcomes.items()}, "providers_ms": (t1 - t0) * 1000,
                            "pack_render_ms": (time.perf_counter() - t1) * 1000}
        return assembly

    def _pack(self, request: AssembleRequest, recipe: RecipeSettings, outcomes: Mapping[str, Outcome]) -> Assembly:
        encoding, warning = encoding_for_model(request.model, self.options.default_encoding)
        enc = get_encoding(encoding)

        def count(text: str) -> int:
            return len(enc.encode(text, disallowed_special=()))

        found = [b for o in outcomes.values() for b in o.blocks]
        by_id = {b.hit.chunk_id: b for b in found}
        unique, dedup = deduplicate([b.hit for b in found])
        same_encoding = encoding == self.options.chunk_encoding
        blocks: list[Block] = []
        for hit in unique:
            block = by_id[hit.chunk_id]
            # Stored chunks carry their token count from ingest (same encoding); other text is counted in pack.
            tokens = hit.token_count if same_encoding and hit.version > 0 else 0
            blocks.append(Block(hit, block.criticality, block.text, tokens=tokens, provider=block.provider,
                                as_of=block.as_of, stale=block.stale, age_s=block.age_s))
        shares = recipe.shares()
        caps = {n: int(request.budget * shares[n]) for n in outcomes} if len(outcomes) > 1 else None
        packed = pack(blocks, request.budget, self.renderers[request.format], request.query, count,
                      self.options.min_truncated_tokens, caps)
        degradations = [*_provider_degradations(outcomes), *dedup, *packed.degradations]
        return Assembly(
            packed.rendered, packed.blocks, degradations, packed.tokens, encoding, [warning] if warning else [],
            {n: o.to_dict() for n, o in outcomes.items()}, _candidates(found, packed.blocks, degradations), {},
            round(sum(o.cost for o in outcomes.values()), 6),
            all(o.status in ("ok", "cached", "coalesced") for o in outcomes.values() if o.status != "not_applicable"),
            # The query is embedded when a retrieval provider really ran (not from a cache).
            count(request.query) if any(o.kind == "retrieval" and o.status == "ok" for o in outcomes.values()) else 0,
        )

    def _costs(self, request: AssembleRequest, tokens: int, providers_usd: float, embedded: int) -> dict[str, float]:
        """USD of one request: its context sent to the model, the query embedding, and the provider calls."""
        prices = self.options.pricing
        costs = {"context_usd": tokens / 1000 * prices.input_price(request.model),
                 "embedding_usd": embedded / 1000 * prices.embedding, "providers_usd": providers_usd}
        costs["total_usd"] = sum(costs.values())
        return {k: round(v, 8) for k, v in costs.items()}

    def _failed_trace(self, request: AssembleRequest, exc: CriticalMissing, total_ms: float,
                      replay_of: str | None) -> TraceRecord:
        outcomes = {n: o.to_dict() for n, o in exc.outcomes.items()}
        calls = sum(o.cost for o in exc.outcomes.values())
        encoding, _ = encoding_for_model(request.model, self.options.default_encoding)
        return TraceRecord(
            id=new_trace_id(), created_at=created_now(), request=request.to_dict(),
            config_fingerprint=self.fingerprint, candidates=[], timings={"total_ms": total_ms}, tokens=0,
            budget=request.budget, model=request.model, format=request.format, encoding=encoding, rendered=b"",
            degradations=[d.to_dict() for d in _provider_degradations(exc.outcomes)], replay_of=replay_of,
            recipe=request.recipe, providers=outcomes, cache="miss", cost=calls,
            costs=self._costs(request, 0, calls, 0), status="failed", error=str(exc),
        )

    def _finish(self, request: AssembleRequest, result: Assembly, cache: str, timings: dict[str, float],
                replay_of: str | None) -> tuple[AssembledContext, TraceRecord]:
        trace_id = new_trace_id()
        fresh = cache in ("miss", "off")  # a cached context made no upstream calls and embedded nothing
        costs = self._costs(request, result.tokens, result.cost if fresh else 0.0,
                            result.embedded_tokens if fresh else 0)
        cost = costs["total_usd"]
        context = AssembledContext(trace_id, request, result.rendered, result.blocks, result.degradations,
                                   result.tokens, result.encoding, result.warnings, timings, result.providers,
                                   cache, cost, costs)
        trace = TraceRecord(
            id=trace_id, created_at=created_now(), request=request.to_dict(), config_fingerprint=self.fingerprint,
            candidates=result.candidates, timings=timings, tokens=result.tokens, budget=request.budget,
            model=request.model, format=request.format, encoding=result.encoding,
            rendered=result.rendered.encode("utf-8"), degradations=[d.to_dict() for d in result.degradations],
            replay_of=replay_of, recipe=request.recipe, providers=result.providers, cache=cache, cost=cost,
            costs=costs,
        )
        return context, trace

    def _context_ttl(self, recipe: RecipeSettings) -> float:
        ttls = [self.providers[n].settings.cache_ttl for n in recipe.providers]
        return min([self.options.context_ttl, *ttls])

    def _key(self, name: str, recipe: RecipeSettings, request: AssembleRequest, versions: Mapping[str, int]) -> str:
        # Each provider's own key too: what its result depends on besides the request and ctx's data
        # versions (a static file's mtime), so an edited policy file is not served from an older context.
        ask = request.for_providers()
        names = sorted({*recipe.providers, *(p.fallback for p in recipe.providers.values() if p.fallback)})
        parts = {n: self.providers[n].key(ask) for n in names}
        raw = json.dumps([self.fingerprint, name, request.cache_part(), dict(versions), parts], sort_keys=True,
                         default=str)
        return "c:" + hashlib.sha256(raw.encode()).hexdigest()

    def prepare(self, names: Iterable[str] | None = None) -> None:
        """One-time set-up of providers (open stores, load a model; default: all), outside any deadline."""
        if not self._prepared:
            get_encoding(self.options.default_encoding)  # the tokenizer loads once, not in the first request
        for name in self.providers if names is None else names:
            if name not in self._prepared:
                prepare = getattr(self.providers[name], "prepare", None)
                if prepare is not None:
                    prepare()
                self._prepared.add(name)

    def close(self) -> None:
        async def close_providers() -> None:
            for provider in self.providers.values():
                await provider.aclose()

        self.loop.close(close_providers)
        if self.provider_cache.cache is not None:
            self.provider_cache.cache.close()

    def describe(self) -> dict[str, Any]:
        return {
            "breakers": {n: b.describe() for n, b in sorted(self.breakers.items())},
            "cache": {"provider": self.provider_cache.describe(), "context": self.context_cache.describe()},
        }


def _complete(result: Assembly) -> bool:
    # A context assembled while a provider was down or late must not outlive the outage in the cache.
    return result.complete


def _check_critical(recipe: str, outcomes: Mapping[str, Outcome]) -> None:
    for name, out in outcomes.items():
        if out.criticality != Criticality.critical.value or out.delivered:
            continue
        if out.status == "not_applicable":
            raise UserError(f"recipe {recipe!r}: critical provider {name!r} {out.error}")
        raise CriticalMissing(f"recipe {recipe!r}: critical provider {name!r} gave nothing ({out.status}: "
                              f"{out.error}) and has no fallback or cached copy", outcomes)


def _provider_degradations(outcomes: Mapping[str, Outcome]) -> list[Degradation]:
    out = []
    for name, o in outcomes.items():
        if o.status in ("ok", "cached", "coalesced"):
            continue
        reason = o.error or o.status
        if o.status == "stale":
            reason = f"{reason}; served a cached copy {age_text(o.age_s or 0.0)} old"
        elif o.status == "fallback":
            reason = f"{reason}; answered by {o.via}"
        out.append(Degradation(o.status, "", name, o.criticality, reason))
    return out


def _candidates(found: list[Block], kept: list[Block], degradations: list[Degradation]) -> list[dict[str, Any]]:
    kept_ids = {b.hit.chunk_id: b for b in kept}
    why = {d.chunk_id: f"{d.kind}: {d.reason}" for d in degradations if d.chunk_id}
    counted = {d.chunk_id: d.tokens_before for d in degradations if d.chunk_id and d.kind == "dropped"}
    out = []
    for block in found:
        hit = block.hit
        row = asdict(hit)
        row.pop("text")
        row["provider"] = block.provider
        row["kept"] = hit.chunk_id in kept_ids
        row["truncated"] = bool(kept_ids.get(hit.chunk_id) and kept_ids[hit.chunk_id].truncated)
        row["reason"] = why.get(hit.chunk_id, "kept" if row["kept"] else "not selected")
        # What the block took in the context, counted in the request's encoding, for every kind of block:
        # ``token_count`` is a stored chunk's count from ingest and 0 for a policy, a profile or an API answer.
        row["tokens"] = kept_ids[hit.chunk_id].tokens if row["kept"] else counted.get(hit.chunk_id)
        out.append(row)
    return out
