"""What a check is and what it returns: pass / warn / fail, the evidence behind it, and what to change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ctx.audit.evidence import Evidence

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Result:
    """One check's verdict. ``evidence`` says what was looked at and the numbers; ``remediation`` names the
    setting or command that would change the verdict (empty when it passed)."""

    status: Status
    evidence: str
    remediation: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One check of one level: ``decide`` reads the gathered evidence, never the home itself."""

    id: str
    level: int
    title: str
    decide: Callable[[Evidence], Result]


def ok(evidence: str, **figures: Any) -> Result:
    return Result("pass", evidence, "", figures)


def warn(evidence: str, remediation: str, **figures: Any) -> Result:
    return Result("warn", evidence, remediation, figures)


def fail(evidence: str, remediation: str, **figures: Any) -> Result:
    return Result("fail", evidence, remediation, figures)


def share(part: int, whole: int) -> str:
    """``12/40 (30%)``: counts stay visible next to the rate."""
    return f"{part}/{whole} ({part / whole:.0%})" if whole else f"{part}/0"


def count(n: int, word: str) -> str:
    """``1 source``, ``3 sources``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
