"""Durations as ctx.toml and the command line write them: ``250ms``, ``30s``, ``5m``, ``24h``, ``7d``."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``"250ms"``, ``"5m"``, ``"24h"`` or ``"7d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '5m' or '24h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"bad duration {value!r}: expected e.g. '250ms', '30s', '5m', '24h', '7d'")
    return float(match.group(1)) * _UNITS[match.group(2)]
