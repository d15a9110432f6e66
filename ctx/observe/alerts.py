"""The alert engine: every rule judged on its series, incidents opened, deduplicated, escalated and resolved.

One evaluation (``AlertEngine.check``) is three phases. **Find**: each enabled rule's series is read
(signals) and judged (anomaly). **Reconcile**, in one transaction: a sustained deviation of a (rule,
key) with no firing alert opens one (suppressed while the cooldown after its last notified incident
runs); one that is already firing updates it (count, last_at, value: dedup, nothing new is sent);
``sustain`` buckets back in band resolve it; then every firing alert whose step is due takes it,
writing the step's action or message to the outbox. **Deliver**: the outbox is worked off (notify).

Escalation, from the alert's clock (when it opened, or when its cooldown ended): step 1 at once (the
rule's ``action``), step 2 after ``escalate_after`` (its webhook), step 3 after another
``escalate_after`` (its second webhook), each only while the alert still fires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ctx.observe.alert_store import AlertStore, Writer, window_label
from ctx.observe.anomaly import Detector, Verdict, assess, detect
from ctx.observe.notify import Deliverer
from ctx.observe.series import FLOORS, bucket_end, staleness_series, trace_series
from ctx.observe.signals import Signals, epoch, iso
from ctx.observe.traces import new_trace_id
from ctx.settings import AlertRuleSettings, Settings
from ctx.store.catalog import Catalog

log = logging.getLogger("ctx.alerts")
# Records still reach the daemon's log (they propagate to its root handler); in a CLI process, which
# configures no logging, this keeps Python's last-resort handler from printing them beside the output.
log.addHandler(logging.NullHandler())
FLOOR_SHARE = 0.05  # the spread is at least 5% of the baseline
LABELS = {"latency_p95_ms": "latency p95", "latency_p99_ms": "latency p99", "tokens_per_request": "tokens per request",
          "cost_per_request": "cost per request", "cache_hit_rate": "cache hit rate", "request_rate": "request rate",
          "error_rate": "error rate", "staleness_ratio": "staleness"}


@dataclass(frozen=True)
class Finding:
    """What one rule's series says about one key right now."""

    rule: str
    key: str
    firing: bool
    clear: bool
    verdict: Verdict | None  # of the newest complete bucket
    streak: int
    bucket_at: float  # the end of that bucket
    sources: tuple[str, ...] = ()  # what a refresh action syncs


@dataclass
class Changes:
    opened: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def detector(rule: AlertRuleSettings) -> Detector:
    floor = rule.min_spread if rule.min_spread is not None else FLOORS[rule.metric]
    return Detector(threshold=rule.threshold, direction=rule.direction, warmup=rule.warmup, span=rule.span,
                    floor=floor, floor_share=FLOOR_SHARE, above=rule.above, below=rule.below)


def find(signals: Signals, settings: Settings, now: float) -> list[Finding]:
    """Every enabled rule judged on the buckets complete at ``now``."""
    watched = [name for name, s in settings.sources.items() if s.kind != "events"]  # pushed: idle is normal
    out: list[Finding] = []
    for name, rule in settings.alerts.rules.items():
        if not rule.enabled:
            continue
        width, count = rule.window, rule.history
        end = bucket_end(now, width)
        d = detector(rule)
        if rule.metric != "staleness_ratio":
            series = trace_series(signals.trace_buckets(width, end, count, now), rule.metric, width, rule.min_count)
            out.append(_finding(name, "", detect(series, d), rule.sustain, end))
            continue
        first = end - count * width
        per = {source: staleness_series(h.buckets, first, width, settings.sources[source].staleness_limit,
                                        h.prior_ok, h.first_attempt)
               for source, h in signals.sync_buckets(watched, width, end, count).items()}
        if rule.per_source:
            out += [_finding(name, source, detect(series, d), rule.sustain, end, (source,))
                    for source, series in per.items()]
            continue
        worst = [max((v for v in column if v is not None), default=None) for column in zip(*per.values(), strict=True)]
        newest = {s: series[-1] for s, series in per.items() if series and series[-1] is not None}
        top = max(newest.values(), default=None)
        blamed = tuple(s for s, v in newest.items() if v == top or (rule.above is not None and v > rule.above))
        out.append(_finding(name, "", detect(worst, d), rule.sustain, end, blamed))
    return out


def _finding(rule: str, key: str, verdicts: list[Verdict], sustain: int, end: float,
             sources: tuple[str, ...] = ()) -> Finding:
    a = assess(verdicts, sustain)
    return Finding(rule, key, a.firing, a.clear, a.last, a.streak, end, sources)


def describe(metric: str, rule: AlertRuleSettings, key: str, v: Verdict, streak: int) -> str:
    """One line for people: what, how far off, against what, for how long."""
    subject = f"source {key}: " if key else ""
    if v.by_bound:
        bound = rule.above if v.state == "high" else rule.below
        against = f"{'above' if v.state == 'high' else 'below'} {_fmt(metric, bound)}"
    else:
        against = f"baseline {_fmt(metric, v.baseline)}, z {v.z:+.1f}" if v.z is not None else "no baseline yet"
    buckets = "bucket" if streak == 1 else "buckets"
    value = _fmt(metric, v.value) + (" its max_staleness" if metric == "staleness_ratio" else "")
    return f"{subject}{LABELS[metric]} {value} ({against}) for {streak} {buckets} of {window_label(rule.window)}"


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric.startswith("latency"):
        return f"{value:,.0f} ms"
    if metric == "tokens_per_request":
        return f"{value:,.0f} tokens"
    if metric == "cost_per_request":
        return f"${value:.6f}"
    if metric in ("cache_hit_rate", "error_rate"):
        return f"{value:.1%}"
    if metric == "request_rate":
        return f"{value * 60:,.1f}/min"
    return f"{value:.2f}x"


def reconcile(store: AlertStore, settings: Settings, findings: list[Finding], now: float) -> Changes:
    """Open, update, resolve and escalate alerts for ``findings``, in one transaction."""
    stamp, rules, changes = iso(now), settings.alerts.rules, Changes()
    with store.db.atomic():
        firing = store.firing()
        seen = set()
        for f in findings:
            seen.add((f.rule, f.key))
            rule, row, v = rules[f.rule], firing.get((f.rule, f.key)), f.verdict
            if row is None and f.firing and v is not None:
                row = _open(store, f, rule, v, now, new_trace_id())
                (changes.suppressed if row["suppressed_until"] else changes.opened).append(_ref(row))
            elif row is not None and f.clear:
                _resolve(store, row, stamp)
                changes.resolved.append(_ref(row))
            elif row is not None and v is not None and v.deviating:
                # Dedup: the one firing alert is updated. Its count is of deviating buckets, so evaluating
                # twice within a bucket counts it once.
                advanced = max(round((f.bucket_at - epoch(row["bucket_at"])) / rule.window), 0)
                store.update(row["id"], {
                    "last_at": stamp, "value": v.value, "baseline": v.baseline, "z": v.z, "severity": rule.severity,
                    "count": row["count"] + min(advanced, f.streak), "bucket_at": iso(f.bucket_at),
                    "message": describe(rule.metric, rule, f.key, v, f.streak), "sources": json.dumps(list(f.sources))})
                if advanced:
                    changes.updated.append(_ref(row))
        for key, row in firing.items():
            if key not in seen:  # its rule was removed or disabled, or its source is no longer configured
                _resolve(store, row, stamp)
                changes.resolved.append(_ref(row))
        for row in store.firing().values():
            changes.steps += _escalate(store, settings, row, now)
        store.prune(iso(now - settings.alerts.retention))
    return changes


def _open(store: AlertStore, f: Finding, rule: AlertRuleSettings, v: Verdict, now: float,
          alert_id: str) -> dict[str, Any]:
    stamp = iso(now)
    last = store.last_notified_resolution(f.rule, f.key)
    until = iso(epoch(last) + rule.cooldown) if last and now < epoch(last) + rule.cooldown else None
    row = {"id": alert_id, "rule": f.rule, "key": f.key, "severity": rule.severity, "metric": rule.metric,
           "window_s": rule.window, "state": "firing", "message": describe(rule.metric, rule, f.key, v, f.streak),
           "value": v.value, "baseline": v.baseline, "z": v.z, "count": f.streak, "step": 0, "first_at": stamp,
           "last_at": stamp, "resolved_at": None, "bucket_at": iso(f.bucket_at), "clock_at": until or stamp,
           "step_at": None, "suppressed_until": until, "sources": json.dumps(list(f.sources))}
    store.insert(row)
    if until:
        store.add_notification(alert_id, 0, "suppressed", "note", "cooldown", stamp, status="skipped",
                               detail=f"re-fired inside the cooldown: nothing is sent before {until}")
    log.warning("alert %s %s%s (%s): %s%s", rule.severity, f.rule, f"[{f.key}]" if f.key else "", alert_id,
                row["message"], f"; suppressed until {until}" if until else "")
    return row


def _resolve(store: AlertStore, row: dict[str, Any], stamp: str) -> None:
    store.update(row["id"], {"state": "resolved", "resolved_at": stamp})
    store.cancel_undelivered(row["id"], stamp)
    for target in store.notified_targets(row["id"]):
        store.add_notification(row["id"], row["step"], "resolved", "webhook", target, stamp)
    log.info("alert %s%s (%s) resolved", row["rule"], f"[{row['key']}]" if row["key"] else "", row["id"])


def _escalate(store: AlertStore, settings: Settings, row: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Take every step of a firing alert that is due; the step's work goes to the outbox."""
    rule = settings.alerts.rules.get(row["rule"])
    if rule is None or now < epoch(row["clock_at"]):
        return []
    webhook, escalation = settings.alerts.targets(rule)
    stamp, clock, step, taken = iso(now), epoch(row["clock_at"]), row["step"], []
    while step < 3 and now >= clock + step * rule.step_after:
        step += 1
        if step == 1 and rule.action != "none":
            store.add_notification(row["id"], 1, "action", "action", rule.action, stamp)
        elif step == 2 and webhook:
            store.add_notification(row["id"], 2, "firing", "webhook", webhook, stamp)
        elif step == 3 and escalation:
            store.add_notification(row["id"], 3, "escalation", "webhook", escalation, stamp)
        taken.append({**_ref(row), "step": step})
    if step != row["step"]:
        store.update(row["id"], {"step": step, "step_at": stamp})
    return taken


def _ref(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "rule": row["rule"], "key": row["key"], "severity": row["severity"]}


class AlertEngine:
    """Evaluations of one home's rules; one at a time per process (the daemon's loop and its API share it)."""

    def __init__(self, catalog: Catalog, settings: Settings, env: Mapping[str, str],
                 write: Writer) -> None:
        self.settings = settings
        self.signals = Signals(catalog)  # keeps complete buckets between evaluations
        self.store = AlertStore(catalog)
        self.write = write
        self.deliverer = Deliverer(self.store, settings.alerts, env, write)
        self._lock = threading.Lock()

    def check(self, refresh: Callable[[str], str] | None, now: datetime | None = None) -> dict[str, Any]:
        """Evaluate every rule now, take the steps that are due and deliver the outbox; what changed.

        ``refresh(source)`` carries out the refresh_sources action (a sync in the daemon's lanes, or an
        ingest in this process) and says what it did.
        """
        with self._lock:
            moment = (now or datetime.now(UTC)).timestamp()
            findings = find(self.signals, self.settings, moment)
            changes = self.write(lambda: reconcile(self.store, self.settings, findings, moment))
            deliveries = self.deliverer.run(moment, refresh)
            active = self.store.active_counts()
        return {"evaluated_at": iso(moment), "rules": sum(r.enabled for r in self.settings.alerts.rules.values()),
                "opened": changes.opened, "updated": changes.updated, "resolved": changes.resolved,
                "suppressed": changes.suppressed, "steps": changes.steps, "deliveries": deliveries,
                "active": sum(active.values())}
