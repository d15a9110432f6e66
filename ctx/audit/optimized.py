"""The checks of level 3 (Optimized): latency, cost and SLOs tracked and met, breakers that work, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ctx.audit.checks import Check, Result, count, fail, names, ok, share, warn
from ctx.audit.evidence import Evidence
from ctx.audit.levels import caching_off, no_traffic
from ctx.settings import DEFAULT_RECIPE, RecipeSettings, Settings

MIN_HIT_RATE = 0.1  # below this the caches save little: worth a look, not a failure
SLO_WINDOWS = (("7d", 7 * 86400), ("1d", 86400), ("1h", 3600))  # the windows ctx.observe.slo reports


def slo_window(e: Evidence) -> str:
    """The longest SLO window that fits in the audit's window (the shortest when none does)."""
    return next((label for label, seconds in SLO_WINDOWS if seconds <= e.window_s), "1h")


def objectives(e: Evidence, *wanted: str) -> list[tuple[str, float, dict[str, Any]]]:
    label = slo_window(e)
    return [(o["name"], o["target"], o["windows"][label]) for o in e.slo["objectives"] if o["name"] in wanted]


def recipes(settings: Settings) -> Iterator[tuple[str, RecipeSettings]]:
    """Every recipe requests can name, the built-in default one included."""
    if "default" not in settings.recipes:
        yield "default", DEFAULT_RECIPE
    yield from settings.recipes.items()


def latency_tracked(e: Evidence) -> Result:
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "latency")
    figures: dict[str, Any] = {"timed": t.timed, "requests": t.requests}
    for _, _, w in objectives(e, "latency"):
        figures.update({k: w.get(k) for k in ("p50_ms", "p95_ms", "p99_ms")})
    quantiles = " / ".join(f"{figures[k]:g}" for k in ("p50_ms", "p95_ms", "p99_ms") if figures.get(k) is not None)
    if t.timed < t.requests:
        return warn(f"{share(t.timed, t.requests)} traces carry their latency", "older traces were written "
                    "before total_ms was stored; they age out of the window", **figures)
    tail = f"; p50 / p95 / p99 {quantiles} ms over {slo_window(e)}" if quantiles else ""
    return ok(f"every one of the {t.requests} traces carries its latency{tail}", **figures)


def slo_attained(e: Evidence) -> Result:
    found = objectives(e, "latency", "availability", "relevance")
    label = slo_window(e)
    if not found:
        return fail("no request objective is enabled", "enable [slo.latency] and [slo.availability] (enabled, "
                    "target, threshold)", objectives=0)
    figures = {name: {"target": target, **w} for name, target, w in found}
    missed = [(n, target, w) for n, target, w in found if w["met"] is False]
    measured = [(n, target, w) for n, target, w in found if w["met"] is not None]
    if missed:
        text = "; ".join(f"{n}: SLI {w['sli']:.2%} < target {target:.2%} over {label} (error budget left "
                         f"{w['budget_left']:.0%})" for n, target, w in missed)
        keys = ", ".join(f"[slo.{n}]" for n, _, _ in missed)
        return fail(text, f"`ctx slo` and `ctx traces` show where it goes; fix the cause, or set an objective the "
                    f"service can keep ({keys} target / threshold)", **figures)
    if not measured:
        return warn(f"no event for any objective over {label}", "send traffic, then audit again", **figures)
    text = "; ".join(f"{n} {w['sli']:.2%} >= {target:.2%} of {w['total']}" for n, target, w in measured)
    return ok(f"{text} over {label}", **figures)


def cost_tracked(e: Evidence) -> Result:
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "cost")
    if t.costed < t.requests:
        return fail(f"{t.requests - t.costed} of {t.requests} traces have no cost breakdown", "traces written "
                    "before the cost ledger have none and age out of the window; `ctx cost` reads the rest",
                    costed=t.costed, requests=t.requests)
    return ok(f"every one of the {t.requests} traces carries its cost breakdown (`ctx cost`)", costed=t.costed,
              requests=t.requests)


def breakers_configured(e: Evidence) -> Result:
    s = e.settings
    stuck, seen = [], {}
    for recipe_name, recipe in recipes(s):
        deadline = recipe.deadline or s.assembly.deadline
        for name in {*recipe.providers, *(p.fallback for p in recipe.providers.values() if p.fallback)}:
            cfg = s.provider(name)
            b, timeout = cfg.breaker, min(cfg.timeout, deadline)
            seen[name] = {"failures": b.failures, "window_s": b.window, "cooldown_s": b.cooldown}
            # Calls of one request at a time fail at most one per timeout: past this the breaker never opens
            # for a provider that hangs, only for one that fails fast.
            if (b.failures - 1) * timeout > b.window:
                stuck.append(f"{recipe_name}/{name} ({b.failures} failures within {b.window:g}s, but a call may "
                             f"take {timeout:g}s)")
    if stuck:
        return fail(f"breakers that cannot open for a hanging provider: {names(stuck)}", "lower "
                    "providers.NAME.breaker.failures or raise providers.NAME.breaker.window so that "
                    "(failures - 1) x timeout <= window", providers=seen)
    return ok(f"{count(len(seen), 'provider')} of {count(len(list(recipes(s))), 'recipe')}, each with a breaker "
              "that opens: "
              + ", ".join(f"{n} {b['failures']} in {b['window_s']:g}s" for n, b in sorted(seen.items())),
              providers=seen)


def breaker_handled(e: Evidence) -> Result:
    t = e.traffic
    figures = {"events": t.breaker_events, "served": t.breaker_served, "failed_requests": t.breaker_failed}
    if not t.breaker_events:
        return ok(f"no breaker opened over the last {e.window} ({t.provider_calls} provider calls)", **figures)
    if t.breaker_failed:
        return fail(f"{t.breaker_failed} requests failed while a breaker was open ({t.breaker_events} calls met an "
                    f"open breaker, {t.breaker_served} served stale or by a fallback)", "give the critical providers "
                    "a fallback (recipes.R.providers.P.fallback) or a max_stale (stale-if-error)"
                    + (f": {names(t.failed_critical)}" if t.failed_critical else ""), **figures)
    return ok(f"{t.breaker_events} calls met an open breaker, {t.breaker_served} served stale or by a fallback; "
              "every request still completed", **figures)


def metrics_exposed(e: Evidence) -> Result:
    t, pid = e.traffic, e.daemon_pid
    figures = {"daemon_pid": pid, "daemon_requests": t.daemon}
    if pid:
        return ok(f"the daemon (pid {pid}) serves /metrics (Prometheus text) for dashboards and `ctx dash`",
                  **figures)
    if t.daemon:
        return warn(f"a daemon served {t.daemon} requests of the last {e.window} but none runs now: /metrics is "
                    "not served", "keep the daemon running (`ctx daemon start`) and scrape its /metrics", **figures)
    return fail("no daemon, so no /metrics: only this home's state metrics (`ctx metrics`)", "run `ctx daemon "
                "start` and scrape /metrics (or watch `ctx dash`)", **figures)


def cache_hit_rate(e: Evidence) -> Result:
    off = caching_off(e)
    if off is not None:
        return off
    t = e.traffic
    if not t.requests:
        return no_traffic(e, "a cache hit rate")
    context = t.context_hits / t.requests
    provider = t.provider_hits / t.provider_calls if t.provider_calls else 0.0
    figures = {"context_hit_rate": round(context, 4), "provider_hit_rate": round(provider, 4),
               "min_hit_rate": MIN_HIT_RATE}
    text = f"context cache hit rate {context:.1%}, provider cache {provider:.1%} over the last {e.window}"
    if max(context, provider) < MIN_HIT_RATE:
        return warn(f"{text}: below {MIN_HIT_RATE:.0%}", "raise [cache] context_ttl or the providers' ttl if "
                    "requests repeat; `ctx dash` shows the rates live", **figures)
    return ok(text, **figures)


OPTIMIZED = [
    Check("latency_tracked", 3, "latency tracked on every trace", latency_tracked),
    Check("slo_attained", 3, "SLOs configured and attained", slo_attained),
    Check("cost_tracked", 3, "cost tracked on every trace", cost_tracked),
    Check("breakers_configured", 3, "circuit breakers for every provider", breakers_configured),
    Check("breaker_handled", 3, "breaker activity handled", breaker_handled),
    Check("metrics_exposed", 3, "metrics exposed (/metrics)", metrics_exposed),
    Check("cache_hit_rate", 3, "cache hit rate", cache_hit_rate),
]
