"""How an assembler is put together from a home's settings: providers, breakers, cache tiers and fronts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctx import plugins
from ctx.assemble.assembler import Assembler, AssemblyOptions
from ctx.process.tokens import canonical_encoding as get_encoding_name
from ctx.retrieve.hybrid import Retriever
from ctx.services.stores import Stores

# The shape of what L2 holds (pickled Entry, Block, Assembly), and how results are ranked: bump it when
# either changes, so a home never unpickles results written by another version of ctx, nor serves an upgrade
# the ranking of the code before it (2: titles in BM25, exact BM25, convex fusion per document).
CACHE_FORMAT = 2


def build_assembler(stores: Stores, retriever: Callable[[], Retriever]) -> Assembler:
    """The assembler of ``stores``' settings; ``retriever`` gives the retrieval provider its retriever."""
    from ctx.assemble.breaker import Breaker
    from ctx.assemble.loop import LoopThread
    from ctx.assemble.provider import Services
    from ctx.assemble.stampede import CacheFront

    settings = stores.settings
    a, c = settings.assembly, settings.cache
    loop = LoopThread()
    services = Services(stores.env, settings.base_dir, loop.run_sync, retriever, lambda: stores.catalog,
                        {name: s.criticality.value for name, s in settings.sources.items()})
    kinds = plugins.provider_kinds()
    names = {*settings.providers, *(p for r in settings.recipes.values() for p in r.providers), "retrieval"}
    providers = {}
    for name in sorted(names):
        cfg = settings.provider(name)
        providers[name] = kinds[cfg.kind].create(name, cfg, services)
    breakers = {n: Breaker(p.settings.breaker.failures, p.settings.breaker.window, p.settings.breaker.cooldown)
                for n, p in providers.items()}
    cache = cache_tiers(stores)
    fronts = [CacheFront(cache, level, c.xfetch_beta, c.hot_hits, c.refresh_ahead) for level in ("provider",
                                                                                              "context")]
    for front in fronts:
        front.bind(loop.loop)
        loop.spawn(front.refresher)
    fingerprint = settings.fingerprint("chunking", "embedding", "retrieval", "assembly", "sources", "providers",
                                       "recipes")
    # What shapes a provider's answer beyond its own table: how the index was chunked and embedded, how
    # retrieval ranks it, how assembly asks (a changed rrf_k must not be served the answer cached under the old one).
    scope = settings.fingerprint("chunking", "embedding", "enrichment", "retrieval", "assembly")
    options = AssemblyOptions(a.default_encoding, a.min_truncated_tokens, fingerprint,
                              get_encoding_name(settings.chunking.encoding), a.deadline, c.context_ttl,
                              settings.pricing, scope)
    return Assembler(providers, breakers, settings.recipe, plugins.renderers(), options, loop, fronts[0], fronts[1],
                     stores.catalog.data_versions, a.max_parallel)


def cache_tiers(stores: Stores) -> Any:
    """The result cache's tiers ([cache]): memory, then disk under HOME/cache/; None when caching is off."""
    from ctx.store.cache import CacheTier, DiskTier, MemoryTier, TieredCache

    c = stores.settings.cache
    if not c.enabled:
        return None
    tiers: list[CacheTier] = []
    if c.memory_items:
        tiers.append(MemoryTier(c.memory_items))
    if c.disk:
        tiers.append(DiskTier(stores.home / "cache" / f"results-v{CACHE_FORMAT}", c.disk_size_mb))
    return TieredCache(tiers) if tiers else None
