"""A/B experiment reports: per-variant figures from the traces, their intervals, and a verdict on the metric.

A request counts towards an experiment when its trace says so (``experiment = NAME``): the assignment
stamped it when the context was assembled. Reruns (``replay_of``) are an operator's checks, not traffic,
and are left out. Per variant:

- latency: total assembly time of every request, ms;
- tokens and cost: of every answered request (a failed one sent no context to the model);
- drop rate: the share of requests that lost a block: the request failed, or any block was dropped over
  budget or a provider gave nothing in time (failed, timed out, late, skipped by its breaker). A provider
  that does not apply to the request (no --user for a session provider) is not a loss;
- relevance: mean query similarity of the kept vector blocks, of requests that have one.

Means get a Student-t interval, the drop rate a Wilson score interval, at the experiment's confidence.
Each variant is compared with the first one (the control) on the experiment's metric, by Welch's t-test
(the drop rate: a two-proportion z-test).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ctx.errors import NotFound
from ctx.observe.cost import window
from ctx.observe.stats import percentile
from ctx.settings import ExperimentSettings
from ctx.store.catalog import Catalog
from ctx.versions import stats

DROPS = ("dropped", "late", "timeout", "failed", "skipped")
# metric → (figure in the report, which way is better)
METRICS = {"latency": ("latency_ms", "lower"), "tokens": ("tokens", "lower"), "cost": ("cost_usd", "lower"),
           "drop_rate": ("drop_rate", "lower"), "relevance": ("relevance", "higher")}
_KEYS = {"user": "json_extract(request, '$.user')", "session": "json_extract(request, '$.session')",
         "tenant": "coalesce(tenant, json_extract(request, '$.filters.tenant'))"}
_KINDS = ",".join(f"'{k}'" for k in DROPS)
_ROWS = f"""select variant, version, coalesce(total_ms, json_extract(timings, '$.total_ms'), 0), tokens,
    coalesce(json_extract(costs, '$.total_usd'), cost, 0), coalesce(status, 'ok'), relevance,
    coalesce(status, 'ok') = 'failed' or exists (select 1 from json_each(traces.degradations) d
        where json_extract(d.value, '$.kind') in ({_KINDS})), {{key}}
    from traces where experiment = ? and replay_of is null and created_at >= ? and created_at <= ?"""

# (version ref, recipe) → the version id it names today, or None when it names none (a label not set yet)
Resolve = Callable[[str, str], str | None]


@dataclass
class Samples:
    """What the traces of one variant hold, as the lists the figures and tests are computed from."""

    latency: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    relevance: list[float] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)  # 1.0 for a request that lost a block, else 0.0
    keys: set[str] = field(default_factory=set)
    versions: Counter[str] = field(default_factory=Counter)

    def of(self, metric: str) -> list[float]:
        return {"latency": self.latency, "tokens": self.tokens, "cost": self.cost, "drop_rate": self.drops,
                "relevance": self.relevance}[metric]


def find(experiments: Mapping[str, ExperimentSettings], name: str) -> ExperimentSettings:
    if name not in experiments:
        known = ", ".join(experiments) or "none; see [experiments.NAME] in ctx.toml.example"
        raise NotFound(f"unknown experiment {name!r} (configured: {known})")
    return experiments[name]


def samples(catalog: Catalog, name: str, cfg: ExperimentSettings, start: str, end: str) -> dict[str, Samples]:
    """Per configured variant (and any other variant its traces name), the window's samples."""
    out = {v: Samples() for v in cfg.variants}
    for variant, version, ms, tokens, cost, status, relevance, dropped, key in catalog.db.execute(
            _ROWS.format(key=_KEYS[cfg.key]), [name, start, end]):
        s = out.setdefault(variant or "?", Samples())
        s.latency.append(float(ms))
        if status == "ok":
            s.tokens.append(float(tokens or 0))
            s.cost.append(float(cost))
        if relevance is not None:
            s.relevance.append(float(relevance))
        s.drops.append(1.0 if dropped else 0.0)
        if key:
            s.keys.add(str(key))
        s.versions[version or "?"] += 1
    return out


def report(catalog: Catalog, experiments: Mapping[str, ExperimentSettings], name: str, resolve: Resolve,
           since: str = "30d", now: datetime | None = None) -> dict[str, Any]:
    """The report of experiment ``name`` over the last ``since``: per-variant figures and the verdict.

    Raises:
        NotFound: no such experiment is configured.
        UserError: ``since`` is not a duration.
    """
    cfg = find(experiments, name)
    start, end = window(since, now)
    found = samples(catalog, name, cfg, start, end)
    total_share = sum(v.share for v in cfg.variants.values())
    total_keys = sum(len(s.keys) for s in found.values())
    total_requests = sum(len(s.latency) for s in found.values())
    variants = []
    for variant, s in found.items():
        configured = cfg.variants.get(variant)
        version = resolve(configured.version, cfg.recipe) if configured else None
        seen = s.versions.most_common(1)[0][0] if s.versions else None
        variants.append({
            "name": variant, "ref": configured.version if configured else None, "version": version,
            "versions_seen": dict(sorted(s.versions.items())),
            "share": configured.share if configured else None,
            "expected_share": round(configured.share / total_share, 4) if configured else None,
            "requests": len(s.latency), "keys": len(s.keys),
            "observed_share": round(len(s.keys) / total_keys, 4) if total_keys else None,
            "requests_share": round(len(s.latency) / total_requests, 4) if total_requests else None,
            **figures(s, cfg.confidence),
            "eval": latest_eval(catalog, version or seen),
        })
    return {"experiment": name, "recipe": cfg.recipe, "key": cfg.key, "enabled": cfg.enabled, "metric": cfg.metric,
            "better": METRICS[cfg.metric][1], "confidence": cfg.confidence, "min_samples": cfg.min_samples,
            "window": since, "since": start, "until": end, "requests": total_requests, "variants": variants,
            "verdict": verdict(cfg, found)}


def figures(s: Samples, confidence: float) -> dict[str, Any]:
    latency = _mean(s.latency, confidence, 2)
    if s.latency:
        latency.update(p50=round(percentile(s.latency, 50), 2), p95=round(percentile(s.latency, 95), 2))
    else:
        latency.update(p50=None, p95=None)
    drops, n = int(sum(s.drops)), len(s.drops)
    interval = stats.wilson_interval(drops, n, confidence)
    return {
        "latency_ms": latency, "tokens": _mean(s.tokens, confidence, 2), "cost_usd": _mean(s.cost, confidence, 8),
        "drop_rate": {"n": n, "drops": drops, "mean": round(drops / n, 4) if n else None,
                      "low": round(interval[0], 4) if interval else None,
                      "high": round(interval[1], 4) if interval else None},
        "relevance": _mean(s.relevance, confidence, 4),
    }


def _mean(values: list[float], confidence: float, digits: int) -> dict[str, Any]:
    e = stats.mean_interval(values, confidence)
    return {"n": e.n, "mean": _round(e.mean, digits), "low": _round(e.low, digits), "high": _round(e.high, digits)}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def verdict(cfg: ExperimentSettings, found: Mapping[str, Samples]) -> dict[str, Any]:
    """Each variant against the control (the first) on the metric, and what that allows saying."""
    metric, (_, better) = cfg.metric, METRICS[cfg.metric]
    names = list(cfg.variants)
    control = names[0]
    alpha = 1.0 - cfg.confidence
    base = found[control].of(metric)
    comparisons = []
    for variant in names[1:]:
        values = found[variant].of(metric)
        entry: dict[str, Any] = {"variant": variant, "n": len(values), "control_n": len(base), "difference": None,
                                 "relative": None, "low": None, "high": None, "p_value": None,
                                 "significant": False, "improved": None, "needed": None}
        if len(base) >= 2 and len(values) >= 2:
            c = (stats.two_proportions(int(sum(base)), len(base), int(sum(values)), len(values), cfg.confidence)
                 if metric == "drop_rate" else stats.welch(base, values, cfg.confidence))
            control_mean = sum(base) / len(base)
            entry.update(difference=round(c.difference, 8), low=round(c.low, 8), high=round(c.high, 8),
                         relative=round(c.difference / control_mean, 4) if control_mean else None,
                         p_value=round(c.p_value, 6), significant=c.p_value < alpha, needed=c.needed,
                         improved=(c.difference < 0) if better == "lower" else (c.difference > 0))
            if not c.difference:
                entry["improved"] = None
        comparisons.append(entry)
    out = {"metric": metric, "better": better, "control": control, "alpha": round(alpha, 6),
           "comparisons": comparisons, "winner": None}
    short = [f"{v} has {len(found[v].of(metric))}" for v in names if len(found[v].of(metric)) < cfg.min_samples]
    if short:
        return {**out, "status": "too_few_samples",
                "message": f"not significant yet: {', '.join(short)} of the {cfg.min_samples} samples needed "
                           f"(min_samples) for {metric}"}
    wins = [c for c in comparisons if c["significant"] and c["improved"]]
    if wins:
        best = max(wins, key=lambda c: abs(c["difference"]))
        return {**out, "status": "winner", "winner": best["variant"],
                "message": f"winner: {best['variant']} ({_change(best, metric)} vs {control}, "
                           f"{p_text(best['p_value'])})"}
    if comparisons and all(c["significant"] and c["improved"] is False for c in comparisons):
        return {**out, "status": "winner", "winner": control,
                "message": f"winner: {control} (every other variant is significantly worse on {metric})"}
    have = min(len(found[v].of(metric)) for v in names)
    return {**out, "status": "not_significant", "message": "not significant yet: " + _more(comparisons, have, metric)}


def p_text(value: float) -> str:
    return "p < 0.0001" if value < 0.0001 else f"p = {value:.2g}"


def _change(c: dict[str, Any], metric: str) -> str:
    if c["relative"] is not None:
        return f"{metric} {c['relative'] * 100:+.1f}%"
    return f"{metric} {c['difference']:+.4g}"


def _more(comparisons: list[dict[str, Any]], have: int, metric: str) -> str:
    needed = [c["needed"] for c in comparisons if not c["significant"] and c["needed"] is not None]
    if not needed:
        return f"no difference in {metric} between the variants so far"
    more = max(needed) - have
    if more <= 0:  # the estimate says the samples suffice: the difference is at the edge of the noise
        return f"the {metric} difference seen so far is within the noise at {have} samples per variant; keep collecting"
    return f"about {more} more samples per variant to tell the {metric} difference seen so far (rough)"


def latest_eval(catalog: Catalog, version: str | None) -> dict[str, Any] | None:
    """The newest ``ctx eval`` run of ``version``: its metrics, and what they were measured on."""
    if not version:
        return None
    row = catalog.db.execute("select id, created_at, queries, k, count, metrics, data_sha256 from eval_runs "
                             "where version = ? order by created_at desc limit 1", [version]).fetchone()
    if row is None:
        return None
    try:
        metrics = json.loads(row[5] or "{}")
    except ValueError:
        metrics = {}
    # data: the fingerprint of the documents it ran on (None for a run from before it was recorded).
    return {"run": row[0], "created_at": row[1], "queries": row[2], "k": row[3], "count": row[4], "metrics": metrics,
            "data": row[6]}


def overview(catalog: Catalog, experiments: Mapping[str, ExperimentSettings], resolve: Resolve) -> list[dict[str, Any]]:
    """Every configured experiment, its variants with the version each names today, and its traffic so far."""
    out = []
    for name, cfg in experiments.items():
        traffic = {r[0]: (r[1], r[2]) for r in catalog.db.execute(
            f"select variant, count(*), count(distinct {_KEYS[cfg.key]}) from traces "
            "where experiment = ? and replay_of is null group by variant", [name])}
        variants = [{"name": v, "ref": c.version, "version": resolve(c.version, cfg.recipe), "share": c.share,
                     "requests": traffic.get(v, (0, 0))[0], "keys": traffic.get(v, (0, 0))[1]}
                    for v, c in cfg.variants.items()]
        out.append({"name": name, "recipe": cfg.recipe, "key": cfg.key, "enabled": cfg.enabled, "metric": cfg.metric,
                    "confidence": cfg.confidence, "min_samples": cfg.min_samples,
                    "requests": sum(n for n, _ in traffic.values()), "variants": variants})
    return out
