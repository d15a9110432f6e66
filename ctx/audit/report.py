"""The audit report: every check's verdict, the level reached and the gaps to close for the next one."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ctx.audit.automated import AUTOMATED
from ctx.audit.checks import STATUSES, Check, Result, fail
from ctx.audit.evidence import Evidence, gather
from ctx.audit.levels import BASIC, LEVELS, MANAGED
from ctx.audit.optimized import OPTIMIZED

if TYPE_CHECKING:
    from ctx.audit.ports import Audited

log = logging.getLogger(__name__)
CHECKS: list[Check] = [*BASIC, *MANAGED, *OPTIMIZED, *AUTOMATED]


def audit(ws: Audited, window: str = "7d", sample: int = 20, now: datetime | None = None) -> dict[str, Any]:
    """Gather the evidence of ``ws`` over the last ``window``, replaying ``sample`` traces, and judge it."""
    return judge(gather(ws, window, sample, now))


def decide(check: Check, evidence: Evidence) -> Result:
    try:
        return check.decide(evidence)
    except Exception as exc:  # boundary: one broken check must not hide the verdicts of the others
        log.exception("audit check %s failed", check.id)
        return fail(f"the check itself failed: {type(exc).__name__}: {exc}", "report this as a bug in ctx")


def level_reached(results: list[dict[str, Any]]) -> int:
    """The highest level L such that no check of levels 1..L failed (a warning does not hold a level back)."""
    for level in sorted(LEVELS):
        if any(r["level"] == level and r["status"] == "fail" for r in results):
            return level - 1
    return max(LEVELS)


def judge(evidence: Evidence, checks: list[Check] | None = None) -> dict[str, Any]:
    results = []
    for check in checks or CHECKS:
        verdict = decide(check, evidence)
        results.append({"id": check.id, "level": check.level, "level_name": LEVELS[check.level][0],
                        "title": check.title, **asdict(verdict)})
    reached = level_reached(results)
    following = reached + 1 if reached < max(LEVELS) else None
    levels = []
    for level, (name, summary) in sorted(LEVELS.items()):
        counts = {s: sum(1 for r in results if r["level"] == level and r["status"] == s) for s in STATUSES}
        levels.append({"level": level, "name": name, "summary": summary, "reached": level <= reached,
                       "counts": counts})
    return {
        "at": evidence.end, "since": evidence.start, "window": evidence.window, "sample": evidence.sample,
        "level": reached, "level_name": LEVELS[reached][0] if reached else "none",
        "next_level": following, "next_gaps": [r for r in results if r["level"] == following and r["status"] == "fail"],
        "counts": {s: sum(1 for r in results if r["status"] == s) for s in STATUSES},
        "levels": levels, "checks": results,
        "probes": {"replay": evidence.replays, "doctor": evidence.doctor},
    }
