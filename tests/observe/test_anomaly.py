"""The anomaly detector on its own (pure, seeded): it flags injected spikes in latency and cost per request
and a drop of the cache hit rate, sustained ones only, and stays quiet on hours of noise."""

from __future__ import annotations

import math
import random

import pytest

from ctx.observe.alerts import detector
from ctx.observe.anomaly import Detector, Verdict, assess, detect
from ctx.observe.series import (
    SyncBucket,
    TraceSample,
    bucket_end,
    bucket_traces,
    staleness_series,
    trace_series,
)
from ctx.settings import AlertRuleSettings, Settings

RULES = Settings().alerts.rules
TRACE_RULES = [name for name, r in RULES.items() if r.metric != "staleness_ratio"]


def traffic(seed: int, hours: float, rps: float, spike: tuple[float, float, str, float] | None = None,
            start: float = 0.0) -> list[TraceSample]:
    """Seeded requests: lognormal latency around 20 ms, ~1500 tokens, ~$0.002, 60% cache hits.

    ``spike`` = (from, to, what, factor) in seconds: latency or cost multiplied, or hits made rarer.
    """
    rnd = random.Random(seed)
    out, t = [], start
    while t < start + hours * 3600:
        t += rnd.expovariate(rps)
        ms = rnd.lognormvariate(math.log(20), 0.35)
        cost = 0.002 * rnd.lognormvariate(0, 0.2)
        hit_rate = 0.6
        if spike and spike[0] <= t < spike[1]:
            what, factor = spike[2], spike[3]
            ms *= factor if what == "latency" else 1
            cost *= factor if what == "cost" else 1
            hit_rate *= factor if what == "cache" else 1
        cache = "l1" if rnd.random() < hit_rate else "miss"
        out.append(TraceSample(t, ms, max(int(rnd.gauss(1500, 200)), 1), cost, cache, True))
    return out


def verdicts(samples: list[TraceSample], rule: AlertRuleSettings, hours: float, start: float = 0.0) -> list[Verdict]:
    count = int(hours * 3600 // rule.window)
    buckets = bucket_traces(samples, start, rule.window, count)
    return detect(trace_series(buckets, rule.metric, rule.window, rule.min_count), detector(rule))


def fired_at(vs: list[Verdict], sustain: int) -> list[int]:
    """Bucket indexes after which the rule fires (the alert opens at the first one)."""
    return [i for i in range(1, len(vs) + 1) if assess(vs[:i], sustain).firing]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("rps", [0.2, 2.0])
def test_quiet_on_hours_of_noise_for_every_default_rule(seed: int, rps: float) -> None:
    samples = traffic(seed, 30, rps)  # 30 h: the 1 h rules get past their warm-up too
    for name in TRACE_RULES:
        rule = RULES[name]
        vs = verdicts(samples, rule, 30)
        assert sum(v.state not in ("warmup", "empty") for v in vs) >= 10  # judged, not just warming up
        assert fired_at(vs, rule.sustain) == [], (name, seed, rps)


@pytest.mark.parametrize(("rule", "what", "factor"), [
    ("latency_spike", "latency", 4.0),
    ("cost_spike", "cost", 3.0),
    ("cache_hit_drop", "cache", 0.3),
    ("latency_trend", "latency", 2.0),
])
def test_an_injected_sustained_deviation_fires_when_it_has_lasted_sustain_buckets(rule: str, what: str,
                                                                                   factor: float) -> None:
    r = RULES[rule]
    at = 5 * 3600.0
    samples = traffic(7, 8, 2.0, spike=(at, at + 40 * 60, what, factor))
    fired = fired_at(verdicts(samples, r, 8), r.sustain)
    first = int(at // r.window)
    assert fired, rule
    # It opens once `sustain` buckets of the deviation are complete, not before, not much later.
    assert fired[0] == first + r.sustain, (rule, fired[:3], first)
    # ... and stays open only while it lasts: back in band after it, nothing fires.
    assert max(fired) <= int((at + 40 * 60) // r.window) + r.sustain


def test_a_single_bucket_blip_does_not_fire_when_sustain_is_above_one() -> None:
    r = RULES["latency_spike"]
    at = 5 * 3600.0
    samples = traffic(3, 8, 2.0, spike=(at, at + 60, "latency", 10.0))  # one minute, ten times slower
    vs = verdicts(samples, r, 8)
    assert vs[int(at // 60)].state == "high"  # the blip is seen ...
    assert fired_at(vs, r.sustain) == []  # ... and is no alert
    assert fired_at(vs, 1) != []  # with sustain 1 it would have been


def test_warm_up_no_baseline_alert_before_enough_history() -> None:
    d = Detector(threshold=4, warmup=20)
    series: list[float | None] = [20.0 + (i % 3) for i in range(10)] + [200.0] * 5
    vs = detect(series, d)
    assert all(v.state == "warmup" for v in vs)  # 15 buckets < 20: the spike cannot be judged yet
    assert fired_at(vs, 3) == []
    later = detect([20.0 + (i % 3) for i in range(30)] + [200.0] * 5, d)
    assert [v.state for v in later[-5:]] == ["high"] * 5
    assert fired_at(later, 3)[0] == 33


def test_empty_buckets_do_not_poison_the_baseline() -> None:
    d = Detector(threshold=4, warmup=10)
    rnd = random.Random(5)
    normal = [20.0 + rnd.gauss(0, 1) for _ in range(60)]
    quiet: list[float | None] = [*normal, *[None] * 300, *normal[:10]]  # a night with no traffic, then normal
    vs = detect(quiet, d)
    # 300 empty buckets changed nothing: the first bucket after the night meets the evening's baseline.
    assert vs[360].baseline == vs[60].baseline and vs[360].spread == vs[60].spread
    assert vs[60].baseline is not None and abs(vs[60].baseline - 20) < 1
    assert not any(v.deviating for v in vs[360:])
    assert all(v.state == "empty" for v in vs[60:360])
    # a zero would have been data: an idle night recorded as 0 ms would drag the baseline down
    zeros = detect([*normal, *[0.0] * 300, *normal[:10]], d)
    assert zeros[-1].baseline < 10  # type: ignore[operator]


def test_a_flat_baseline_does_not_make_tiny_wiggles_infinite() -> None:
    d = Detector(threshold=4, warmup=10, floor=1.0, floor_share=0.05)
    vs = detect([12.0] * 50 + [12.3, 12.5, 12.4], d)
    assert [v.state for v in vs[-3:]] == ["ok"] * 3
    assert all(abs(v.z or 0) < 1 for v in vs[-3:])  # spread floored at max(1 ms, 5% of 12 ms)
    assert detect([12.0] * 50 + [40.0], d)[-1].state == "high"  # a real jump still is one


def test_robust_updates_a_spike_barely_moves_the_baseline_a_lasting_shift_is_learned() -> None:
    d = Detector(threshold=4, warmup=10, floor=0.1)
    rnd = random.Random(9)
    base = [20.0 + rnd.gauss(0, 1) for _ in range(60)]
    spiked = detect([*base, 500.0, *base[:5]], d)
    assert spiked[-1].baseline == pytest.approx(spiked[60].baseline, abs=1.0)  # type: ignore[arg-type]
    shifted = detect([*base, *[40.0 + rnd.gauss(0, 1) for _ in range(900)]], d)
    assert all(v.state == "high" for v in shifted[60:120])  # an incident stays one (its spread is not learned)
    assert shifted[-1].state == "ok"  # ... but a shift that lasts for many hours becomes the new normal


def test_direction_and_absolute_bounds() -> None:
    series: list[float | None] = [0.5] * 30 + [0.1] * 3
    assert fired_at(detect(series, Detector(threshold=4, direction="up", warmup=10)), 3) == []
    assert fired_at(detect(series, Detector(threshold=4, direction="down", warmup=10)), 3) == [33]
    # A bound needs no baseline: it applies during warm-up, with the baseline test off.
    bounded = detect([0.2, 0.4, 1.3, 1.6], Detector(threshold=0, above=1.0, warmup=20))
    assert [v.state for v in bounded] == ["warmup", "warmup", "high", "high"]
    assert bounded[-1].by_bound and fired_at(bounded, 2) == [4]


def test_assess_holds_state_between_fire_and_clear() -> None:
    high, ok = Verdict(9.0, "high"), Verdict(1.0, "ok")
    assert assess([ok, high, high, high], 3).firing
    mixed = assess([high, high, ok, high], 3)
    assert not mixed.firing and not mixed.clear  # an open alert stays open, none opens
    assert assess([high, ok, ok, ok], 3).clear
    assert assess([high, ok, Verdict(None, "empty"), ok], 3).clear  # no data is not a deviation


def test_staleness_series_sawtooth_and_a_source_that_stopped_syncing() -> None:
    width, limit = 60.0, 120.0
    # A sync every 60 s (lag 60) for 10 buckets, then none: staleness grows past the limit.
    buckets = [SyncBucket(60.0, i * 60.0 + 30) for i in range(10)] + [SyncBucket()] * 5
    ratios = staleness_series(buckets, 0.0, width, limit, prior_ok=-30.0, first_attempt=-30.0)
    assert ratios[:10] == pytest.approx([0.5] * 10)  # worst: just before each sync, or at the bucket end
    assert ratios[10:] == pytest.approx([(i * 60.0 + 60 - 570) / limit for i in range(10, 15)])
    # Never synced successfully: it ages from its first attempt; before any, no data.
    failing = staleness_series([SyncBucket()] * 3, 0.0, width, limit, prior_ok=None, first_attempt=70.0)
    assert failing == [None, pytest.approx(50 / limit), pytest.approx(110 / limit)]


def test_buckets_percentiles_and_metric_values() -> None:
    buckets = bucket_traces([TraceSample(float(i), float(i), 1, 0.0, "miss", True) for i in range(100, 0, -1)],
                            0.0, 200.0, 1)
    assert (buckets[0].p95_ms, buckets[0].p99_ms) == (95, 99)  # nearest rank, whatever the order they came in
    assert bucket_end(125.5, 60) == 120.0
    samples = [TraceSample(1.0, 10, 100, 0.01, "l1", True), TraceSample(2.0, 30, 300, 0.03, "miss", True),
               TraceSample(3.0, 50, 0, 0.0, "off", False), TraceSample(61.0, 5, 10, 0.0, "l2", True)]
    buckets = bucket_traces(samples, 0.0, 60.0, 3)
    assert trace_series(buckets, "tokens_per_request", 60, 1) == [200, 10, None]  # failed requests: no context
    assert trace_series(buckets, "cost_per_request", 60, 1) == [pytest.approx(0.02), 0.0, None]
    assert trace_series(buckets, "cache_hit_rate", 60, 1) == [0.5, 1.0, None]  # "off" is not cacheable
    assert trace_series(buckets, "latency_p95_ms", 60, 1) == [50, 5, None]
    assert trace_series(buckets, "latency_p95_ms", 60, 2) == [50, None, None]  # min_count
    assert trace_series(buckets, "error_rate", 60, 1) == [pytest.approx(1 / 3), 0.0, None]
    # An idle bucket after traffic is a rate of 0; before the first request it is no data.
    idle = bucket_traces([TraceSample(70.0, 1, 1, 0, "miss", True)], 0.0, 60.0, 3)
    assert trace_series(idle, "request_rate", 60, 1) == [None, 1 / 60, 0.0]
