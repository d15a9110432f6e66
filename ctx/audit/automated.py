"""The checks of level 4 (Automated): sources refresh themselves, failures are rerouted, alerts act, no drift."""

from __future__ import annotations

from ctx.audit.checks import Check, Result, count, fail, names, ok, warn
from ctx.audit.evidence import SCHEDULED, Evidence
from ctx.audit.optimized import objectives, recipes, slo_window


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never synced"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def automatic_refresh(e: Evidence) -> Result:
    s = e.settings
    if not s.daemon.scheduler:
        return fail("[daemon] scheduler = false: no source syncs on its own", "set [daemon] scheduler = true and "
                    "run `ctx daemon start`", scheduler=False)
    polled = e.polled
    if not polled:
        return ok("no polled source (pushed events only): nothing to refresh", scheduler=True)
    late = [f"{n} every {_age(s.sources[n].sync_interval)}, max_staleness {_age(s.sources[n].staleness_limit)}"
            for n in polled if s.sources[n].sync_interval > s.sources[n].staleness_limit]
    scheduled = {n: sum(e.syncs.get(n, {}).get(t, 0) for t in SCHEDULED) for n in polled}
    figures = {"scheduler": True, "scheduled_syncs": scheduled}
    if late:
        return fail(f"scheduled less often than they may go stale: {names(late)}", "set sources.NAME.every below "
                    "its max_staleness (or leave it out: the default is half of it)", **figures)
    unscheduled = [n for n, count in scheduled.items() if not count]
    age = {src["name"]: src["staleness_s"] for src in e.sources}
    waiting = [n for n in unscheduled if e.daemon_pid and age.get(n) is not None
               and age[n] < s.sources[n].sync_interval]
    if unscheduled and waiting == unscheduled:
        # The scheduler runs but no source is due yet: no evidence either way until one is.
        return warn(f"the daemon's scheduler runs, but no scheduled sync is due yet for: {names(waiting)}",
                    "audit again once a sync interval has passed (sources.NAME.every, default max_staleness / 2)",
                    **figures)
    if unscheduled:
        return fail(f"no scheduled sync in the last {e.window} of: {names(unscheduled)}", "keep the daemon running "
                    "(`ctx daemon start`): its scheduler syncs every source each `every` (default max_staleness / 2)",
                    **figures)
    return ok(f"every polled source synced by the scheduler in the last {e.window}: "
              + ", ".join(f"{n} {c}" for n, c in scheduled.items()), **figures)


def freshness(e: Evidence) -> Result:
    stale = [s for s in e.sources if s["kind"] != "events" and s["stale"]]
    found = objectives(e, "freshness")
    label = slo_window(e)
    figures = {"stale": [s["name"] for s in stale], "slo": found[0][2] if found else None}
    if stale:
        text = ", ".join(f"{s['name']} ({_age(s['staleness_s'])} since its last good sync, max_staleness "
                         f"{_age(s['max_staleness_s'])})" for s in stale)
        return fail(f"stale now: {text}", f"`ctx ingest {stale[0]['name']}` now; keep the daemon's scheduler "
                    "running; `ctx sources` shows each source's freshness", **figures)
    if not found:
        return warn("no source is stale now, but [slo.freshness] is disabled: freshness over time is not measured",
                    "set [slo.freshness] enabled = true", **figures)
    _, target, w = found[0]
    if w["met"] is False:
        return fail(f"freshness SLO: {w['sli']:.2%} of syncs landed within max_staleness < target {target:.2%} over "
                    f"{label}", "`ctx slo` and `ctx jobs` show the late or failed syncs; sync more often "
                    "(sources.NAME.every) or fix the failing source", **figures)
    slo = f"freshness SLO {w['sli']:.2%} >= {target:.2%} over {label}" if w["met"] else f"no sync over {label}"
    return ok(f"no source is stale now; {slo}", **figures)


def rerouting(e: Evidence) -> Result:
    s, t = e.settings, e.traffic
    bare, critical = [], 0
    for recipe_name, recipe in recipes(s):
        for name, part in recipe.providers.items():
            if part.criticality.value != "critical":
                continue
            critical += 1
            cfg = s.provider(name)
            if part.fallback is None and not (cfg.cache and s.cache.enabled and cfg.stale_limit > 0):
                bare.append(f"{recipe_name}/{name}")
    figures = {"critical": critical, "unprotected": bare, "rerouted": t.rerouted, "failed_critical": t.failed_critical}
    if bare:
        return fail(f"critical providers with no fallback and no stale copy to serve: {names(bare)}", "set "
                    "recipes.R.providers.P.fallback = \"OTHER\", or keep providers.P.cache = true with max_stale > 0 "
                    "(stale-if-error)", **figures)
    if t.failed_critical:
        return fail(f"requests of the last {e.window} failed because a critical provider gave nothing: "
                    f"{names(t.failed_critical)}", "give it a fallback (recipes.R.providers.P.fallback) or a longer "
                    "max_stale; `ctx traces` shows the failed requests", **figures)
    return ok(f"{count(critical, 'critical provider')} can be rerouted (fallback or stale-if-error); in the last "
              f"{e.window} "
              f"{t.rerouted.get('stale', 0)} blocks were served stale and {t.rerouted.get('fallback', 0)} by a "
              "fallback, and no request failed for a missing critical block", **figures)


def alerts_automated(e: Evidence) -> Result:
    a, seen = e.settings.alerts, e.alerting
    if not a.enabled:
        return fail("[alerts] enabled = false", "set [alerts] enabled = true", enabled=False)
    rules = {n: r for n, r in a.rules.items() if r.enabled}
    acting = sorted(n for n, r in rules.items() if r.action == "refresh_sources")
    hooked = sorted(n for n, r in rules.items() if a.targets(r)[0])
    figures = {"rules": len(rules), "refresh_rules": acting, "webhook_rules": hooked, "fired": seen.fired,
               "delivered": seen.delivered, "stuck": seen.stuck, "gave_up": seen.gave_up, "actions": seen.actions}
    if not acting:
        return fail("no enabled alert rule refreshes sources", "enable the built-in source_stale rule, or set "
                    "[alerts.rules.NAME] action = \"refresh_sources\" on a staleness_ratio rule", **figures)
    if not hooked:
        return fail("no alert rule notifies anyone (no webhook for step 2)", "add [alerts.webhooks.NAME] url = "
                    "\"${ONCALL_URL}\" and set [alerts] webhook = \"NAME\"", **figures)
    if seen.stuck or seen.gave_up:
        return fail(f"of the alerts fired in the last {e.window}, {seen.stuck} steps are stuck in the outbox and "
                    f"{seen.gave_up} were given up", "`ctx alerts --all` shows each step's error; check the webhook "
                    "and that the daemon runs (it delivers the outbox every [alerts] interval)", **figures)
    return ok(f"{len(acting)} rules refresh stale sources, {len(hooked)} notify a webhook; in the last {e.window} "
              f"{seen.fired} alerts fired, {seen.delivered} steps delivered ({seen.actions} refreshes), none stuck",
              **figures)


def drift_free(e: Evidence) -> Result:
    checks = e.doctor["checks"]
    bad = [c for c in checks if not c["ok"]]
    if bad:
        return fail("doctor found drift: " + "; ".join(f"{c['check']}: {c['detail']}" for c in bad),
                    "`ctx doctor --repair` (SQLite is the truth: Chroma and FTS are repaired from it)", checks=checks)
    return ok("doctor (no repair): " + "; ".join(f"{c['check']}: {c['detail']}" for c in checks), checks=checks)


AUTOMATED = [
    Check("automatic_refresh", 4, "sources refreshed automatically", automatic_refresh),
    Check("freshness", 4, "freshness within thresholds", freshness),
    Check("rerouting", 4, "rerouting around failures", rerouting),
    Check("alerts_automated", 4, "alerts with automated response", alerts_automated),
    Check("drift_free", 4, "no drift between SQLite and Chroma (probe)", drift_free),
]
