"""The maturity model's levels and the checks of levels 1 (Basic) and 2 (Managed)."""

from __future__ import annotations

from ctx.audit.checks import Check, Result, count, fail, names, ok, share, warn
from ctx.audit.evidence import Evidence

# level -> (name, what reaching it means)
LEVELS = {
    1: ("Basic", "ad hoc: sources ingested and contexts assembled"),
    2: ("Managed", "a dedicated context service with caching and logging"),
    3: ("Optimized", "observable: latency and cost dashboards, circuit breakers, SLOs"),
    4: ("Automated", "self-healing: automatic refresh, rerouting around failures, alerts with automated response"),
}
ASSEMBLE = "assemble through ctx (`ctx assemble QUERY`, POST /v1/assemble, or the Python API): every request is traced"


def no_traffic(e: Evidence, what: str) -> Result:
    return fail(f"no request in the last {e.window}: nothing shows {what}", ASSEMBLE, requests=0)


# --- level 1: Basic ----------------------------------------------------------------------------------


def sources_ingested(e: Evidence) -> Result:
    if not e.settings.sources:
        return fail("no sources configured", "add a [sources.NAME] table to ctx.toml (see ctx.toml.example), "
                    "then `ctx ingest`", sources=0)
    never = [s["name"] for s in e.sources if not s["last_success_at"] and s["kind"] != "events"]
    figures = {"sources": len(e.sources), "documents": e.documents, "never_synced": never}
    if not e.documents:
        return fail(f"{count(len(e.sources), 'source')} configured, 0 documents ingested", "run `ctx ingest` (and see "
                    "`ctx jobs` for what failed)", **figures)
    if never:
        return fail(f"{e.documents} documents, but never synced: {names(never)}", "run `ctx ingest "
                    f"{never[0]}` and read its error in `ctx jobs`; fix the source's settings in [sources.{never[0]}]",
                    **figures)
    erroring = [s["name"] for s in e.sources if s["last_error"]]
    idle = [s["name"] for s in e.sources if not s["last_success_at"] and s["kind"] == "events"]
    if erroring or idle:
        what = "; ".join(part for part in (erroring and f"last sync failed: {names(erroring)}",
                                           idle and f"no event pushed yet: {names(idle)}") if part)
        return warn(f"{e.documents} documents; {what}", "`ctx sources` shows each source's last error; "
                    "`ctx ingest NAME` retries it", **figures)
    return ok(f"{count(len(e.sources), 'source')}, {count(e.documents, 'document')}; every source has synced",
              **figures)


def contexts_assembled(e: Evidence) -> Result:
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "contexts being assembled")
    return ok(f"{t.requests} contexts assembled in the last {e.window} ({t.failed} failed)",
              requests=t.requests, failed=t.failed)


def quarantine_visible(e: Evidence) -> Result:
    held = {s["name"]: s["quarantined"] for s in e.sources if s["quarantined"]}
    total = sum(held.values())
    if not total:
        return ok("no record in quarantine (a rejected record would be kept there with its reason)", quarantined=0)
    first = max(held, key=lambda n: held[n])
    return warn(f"{total} records quarantined, kept with their reason: "
                + ", ".join(f"{n} {c}" for n, c in sorted(held.items())),
                f"inspect them with `ctx quarantine --source {first}`, fix them at the source, then `ctx ingest "
                f"{first}`", quarantined=total, by_source=held)


# --- level 2: Managed --------------------------------------------------------------------------------


def context_service(e: Evidence) -> Result:
    t, pid = e.traffic, e.daemon_pid
    figures = {"requests": t.requests, "daemon_requests": t.daemon, "daemon_pid": pid}
    running = f"; the daemon runs now (pid {pid})" if pid else ""
    if t.daemon:
        return ok(f"{share(t.daemon, t.requests)} requests of the last {e.window} served by the daemon{running}",
                  **figures)
    if pid:
        return warn(f"the daemon runs (pid {pid}) but served none of the {t.requests} requests of the last "
                    f"{e.window}", "send traffic through the daemon: the CLI, the dashboard and the API reach it "
                    "while it runs", **figures)
    return fail(f"no daemon runs for this home and none of the {t.requests} requests of the last {e.window} was "
                "served by one", "run the context service: `ctx daemon start` (models, caches and breakers stay "
                "warm between requests)", **figures)


def caching_off(e: Evidence) -> Result | None:
    c = e.settings.cache
    if not c.enabled or (not c.memory_items and not c.disk):
        return fail("caching is off ([cache] enabled = false, or neither memory_items nor disk)",
                    "set [cache] enabled = true with memory_items > 0 or disk = true", enabled=False)
    return None


def caching(e: Evidence) -> Result:
    off = caching_off(e)
    if off is not None:
        return off
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "cache hits")
    figures = {"context_hits": t.context_hits, "requests": t.requests, "provider_hits": t.provider_hits,
               "provider_calls": t.provider_calls}
    seen = (f"context cache served {share(t.context_hits, t.requests)} requests, provider cache "
            f"{share(t.provider_hits, t.provider_calls)} provider calls")
    if not t.context_hits and not t.provider_hits:
        return fail(f"caching is on but no hit was seen: {seen}", "repeated requests should hit: check [cache] "
                    "context_ttl and each provider's ttl and cache; `ctx metrics` shows ctx_cache_lookups", **figures)
    return ok(seen, **figures)


def contexts_logged(e: Evidence) -> Result:
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "contexts being logged")
    if t.logged < t.requests:
        return fail(f"{t.requests - t.logged} of {t.requests} traces lack their request, exact bytes or checksum",
                    "those traces cannot be replayed: run `ctx doctor`; never edit the traces table by hand",
                    logged=t.logged, requests=t.requests)
    return ok(f"every one of the {t.requests} requests (failed ones too) is traced with its request, candidates "
              "and exact bytes", logged=t.logged, requests=t.requests)


def replay_identical(e: Evidence) -> Result:
    if not e.sample:
        return warn("the replay probe was skipped (--sample 0)", "run `ctx audit --sample 20`", replayed=0)
    if not e.replays:
        return fail(f"no trace stored in the last {e.window}: nothing to replay", ASSEMBLE, replayed=0)
    bad = [r for r in e.replays if not r["ok"]]
    figures = {"replayed": len(e.replays), "failed": len(bad), "failures": bad[:5]}
    if bad:
        first = bad[0]
        return fail(f"{len(bad)} of {len(e.replays)} replayed traces are not byte-identical; {first['trace_id']}: "
                    f"{first['problem']}", f"`ctx replay {first['trace_id']}` shows it: the stored context was "
                    "changed or damaged; restore catalog.db from a backup", **figures)
    return ok(f"the {len(e.replays)} newest traces replay byte-identical (the stored bytes hash to each trace's "
              "sha256)", **figures)


def config_versions(e: Evidence) -> Result:
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "which configuration served a request")
    figures = {"versioned": t.versioned, "requests": t.requests}
    if not t.versioned:
        return fail(f"none of the {t.requests} traces records its configuration version",
                    "upgrade ctx: every trace is stamped with its version (`ctx versions list`)", **figures)
    if t.versioned < t.requests:
        return warn(f"{share(t.versioned, t.requests)} traces record their configuration version",
                    "older traces were written before versions; they age out of the window", **figures)
    return ok(f"every one of the {t.requests} traces records its configuration version", **figures)


BASIC = [
    Check("sources_ingested", 1, "sources configured and ingested", sources_ingested),
    Check("contexts_assembled", 1, "contexts assembled", contexts_assembled),
    Check("quarantine_visible", 1, "bad records quarantined, not lost", quarantine_visible),
]
MANAGED = [
    Check("context_service", 2, "a context service serves traffic", context_service),
    Check("caching", 2, "caching on and hits observed", caching),
    Check("contexts_logged", 2, "every context logged", contexts_logged),
    Check("replay_identical", 2, "replay is byte-identical (probe)", replay_identical),
    Check("config_versions", 2, "traces record their config version", config_versions),
]
