"""The anomaly detector: a robust EWMA baseline per bucketed series, and when a deviation is sustained.

Pure (no I/O, no clock): a series is one value per bucket, oldest first, ``None`` for a bucket with
no data. Each bucket is judged against the baseline of the buckets before it, then folds into it:

- **Baseline.** After ``warmup`` observed buckets the baseline starts at their median and its
  spread at their MAD (x 1.4826, the scale of a normal sigma), so a warm-up with one outlier
  starts sane. From then on the mean is an EWMA and the spread an EWMA of absolute deviations
  (x sqrt(pi/2), which turns a mean absolute deviation into a normal sigma).
- **Floor.** The spread used for z is at least ``floor`` and ``floor_share`` of the baseline: a
  flat series (every request 12 ms) must not turn a 0.1 ms wiggle into z = 1000.
- **Robust updates.** A deviating bucket pulls the mean by at most ``CLIP`` sigmas, at ``adapt``
  of the normal rate, and leaves the spread as it is (else the spread would grow with the incident
  and swallow it): one spike barely moves the baseline, an incident keeps firing for hours, and a
  level shift that lasts is learned in the end instead of firing forever.
- **Empty buckets** are neither normal nor deviating and leave the baseline as it was: a quiet
  night must not drag a latency baseline to zero.
- **Absolute bounds** (``above`` / ``below``) need no baseline: they apply during warm-up too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Literal

MAD_SIGMA = 1.4826  # median absolute deviation → sigma of a normal distribution
MEAN_AD_SIGMA = math.sqrt(math.pi / 2)  # mean absolute deviation → sigma
CLIP = 3.0  # sigmas: how far a deviating bucket may pull the baseline

State = Literal["ok", "high", "low", "empty", "warmup"]
Direction = Literal["up", "down", "both"]


@dataclass(frozen=True)
class Detector:
    """How one rule judges its series."""

    threshold: float = 4.0  # robust z that deviates; 0: the baseline test is off (bounds only)
    direction: Direction = "up"
    warmup: int = 20  # observed buckets before the baseline test applies
    span: int = 30  # EWMA span in buckets: alpha = 2 / (span + 1)
    floor: float = 0.0  # the spread is never below this (absolute, the metric's unit) ...
    floor_share: float = 0.05  # ... nor below this share of the baseline
    adapt: float = 0.25  # how fast a deviating bucket moves the mean, relative to an in-band one
    above: float | None = None  # a value above this always deviates (high)
    below: float | None = None  # a value below this always deviates (low)

    @property
    def alpha(self) -> float:
        return 2.0 / (self.span + 1)


@dataclass(frozen=True)
class Verdict:
    """One bucket judged against the baseline of the buckets before it."""

    value: float | None
    state: State
    baseline: float | None = None
    spread: float | None = None  # the sigma z was computed with (floor applied)
    z: float | None = None
    by_bound: bool = False  # deviating because of an absolute bound, whatever the baseline says

    @property
    def deviating(self) -> bool:
        return self.state in ("high", "low")


def detect(series: Sequence[float | None], d: Detector) -> list[Verdict]:
    """A verdict per bucket of ``series`` (oldest first)."""
    out: list[Verdict] = []
    warm: list[float] = []
    mean: float | None = None
    sigma = 0.0
    for value in series:
        if value is None or math.isnan(value):
            out.append(Verdict(None, "empty", mean, _spread(mean, sigma, d) if mean is not None else None))
            continue
        bound = _bound(value, d)
        if mean is None:
            out.append(Verdict(value, bound or "warmup", by_bound=bound is not None))
            warm.append(value)
            if len(warm) >= d.warmup:
                mean = median(warm)
                sigma = MAD_SIGMA * median(abs(w - mean) for w in warm)
            continue
        spread = _spread(mean, sigma, d)
        z = (value - mean) / spread
        state: State = "ok"
        if d.threshold > 0:
            if z >= d.threshold and d.direction in ("up", "both"):
                state = "high"
            elif z <= -d.threshold and d.direction in ("down", "both"):
                state = "low"
        by_bound = state == "ok" and bound is not None
        if bound is not None and by_bound:
            state = bound
        out.append(Verdict(value, state, mean, spread, z, by_bound))
        deviation = min(max(value - mean, -CLIP * spread), CLIP * spread)
        if state == "ok" or by_bound:
            mean += d.alpha * deviation
            sigma += d.alpha * (MEAN_AD_SIGMA * abs(deviation) - sigma)
        else:
            mean += d.alpha * d.adapt * deviation
    return out


def _spread(mean: float | None, sigma: float, d: Detector) -> float:
    return max(sigma, d.floor, d.floor_share * abs(mean or 0.0), 1e-12)


def _bound(value: float, d: Detector) -> State | None:
    if d.above is not None and value > d.above:
        return "high"
    if d.below is not None and value < d.below:
        return "low"
    return None


@dataclass(frozen=True)
class Assessment:
    """What the last buckets say about an alert: fire it, clear it, or leave it as it is."""

    firing: bool  # the last ``sustain`` buckets all deviate
    clear: bool  # the last ``sustain`` buckets are all back in band (or empty)
    last: Verdict | None  # the newest bucket's verdict
    streak: int  # consecutive deviating buckets up to the newest


def assess(verdicts: Sequence[Verdict], sustain: int) -> Assessment:
    """Fire only on ``sustain`` deviating buckets in a row; clear only on ``sustain`` in-band ones.

    Between the two (a mixed tail) an alert keeps its state: one good bucket in the middle of an
    incident does not resolve it, and one bad bucket does not open one.
    """
    tail = list(verdicts[-sustain:]) if sustain > 0 else []
    streak = 0
    for v in reversed(verdicts):
        if not v.deviating:
            break
        streak += 1
    full = len(tail) == sustain
    return Assessment(
        firing=full and all(v.deviating for v in tail),
        clear=not full or not any(v.deviating for v in tail),
        last=verdicts[-1] if verdicts else None,
        streak=streak,
    )
