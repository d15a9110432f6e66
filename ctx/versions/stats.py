"""Interval estimates and two-sample tests for A/B reports, on the standard library only (no scipy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

_NORMAL = NormalDist()
POWER = 0.8  # the power the "samples needed" estimate plans for: the usual default of sample-size tables


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), converging for
    x < (a + 1) / (a + b + 2); see Numerical Recipes, 6.4."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b  # the symmetry relation, where the fraction converges


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (any real df > 0, as Welch's test needs)."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The inverse of :func:`t_cdf`: the t with P(T <= t) = p, by bisection (monotone, so it always
    converges; 200 halvings reach the limit of a float)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # the tails are heavy for df near 1: grow the bracket until it holds p
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def z_crit(confidence: float) -> float:
    return _NORMAL.inv_cdf((1.0 + confidence) / 2.0)


@dataclass(frozen=True)
class MeanEstimate:
    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None


def mean_interval(values: Sequence[float], confidence: float) -> MeanEstimate:
    """The mean with its Student-t interval; no interval below two values (no spread to scale it by)."""
    n = len(values)
    if n == 0:
        return MeanEstimate(0, None, None, None, None)
    mean = fmean(values)
    if n < 2:
        return MeanEstimate(n, mean, None, None, None)
    sd = stdev(values, mean)
    half = t_ppf((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n)
    return MeanEstimate(n, mean, sd, mean - half, mean + half)


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion: unlike the Wald interval it stays inside [0, 1] and
    is not degenerate at 0 or n successes (a drop rate is often 0)."""
    if n == 0:
        return None
    z = z_crit(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Comparison:
    difference: float  # treatment minus control
    low: float
    high: float
    p_value: float
    needed: int | None  # rough samples per variant to detect the observed difference at POWER; None: none seen


def welch(control: Sequence[float], treatment: Sequence[float], confidence: float) -> Comparison:
    """Welch's t-test (unequal variances) of the treatment's mean against the control's, two-sided.

    Needs two values on each side.
    """
    n1, n2 = len(control), len(treatment)
    m1, m2 = fmean(control), fmean(treatment)
    v1, v2 = stdev(control, m1) ** 2, stdev(treatment, m2) ** 2
    diff = m2 - m1
    se2 = v1 / n1 + v2 / n2
    if se2 == 0.0:  # both sides constant: the difference is exact
        return Comparison(diff, diff, diff, 0.0 if diff else 1.0, None)
    se = math.sqrt(se2)
    # Welch-Satterthwaite degrees of freedom (a zero-variance side contributes nothing)
    df = se2 ** 2 / sum(term ** 2 / (n - 1) for term, n in ((v1 / n1, n1), (v2 / n2, n2)) if term)
    p = 2.0 * (1.0 - t_cdf(abs(diff) / se, df))
    half = t_ppf((1.0 + confidence) / 2.0, df) * se
    return Comparison(diff, diff - half, diff + half, min(1.0, p), _needed(v1 + v2, diff, confidence))


def two_proportions(x1: int, n1: int, x2: int, n2: int, confidence: float) -> Comparison:
    """The two-proportion z-test (pooled) of the treatment's rate against the control's, two-sided, with
    the (unpooled) interval of the difference."""
    p1, p2 = x1 / n1, x2 / n2
    diff = p2 - p1
    pooled = (x1 + x2) / (n1 + n2)
    z = z_crit(confidence)
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    if pooled in (0.0, 1.0):  # every request the same on both sides: no evidence of a difference
        return Comparison(0.0, 0.0, 0.0, 1.0, None)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p = 2.0 * (1.0 - _NORMAL.cdf(abs(diff) / se))
    return Comparison(diff, diff - half, diff + half, min(1.0, p),
                      _needed(p1 * (1 - p1) + p2 * (1 - p2), diff, confidence))


def _needed(variance_sum: float, diff: float, confidence: float) -> int | None:
    """Per variant, n = (z_a/2 + z_b)^2 (var1 + var2) / diff^2: the textbook sample size to detect the
    difference seen so far. Rough: it takes today's difference and spread as the truth."""
    if not diff:
        return None
    return math.ceil((z_crit(confidence) + _NORMAL.inv_cdf(POWER)) ** 2 * variance_sum / diff ** 2)
