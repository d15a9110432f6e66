"""What a stored or sent value may hold: text that encodes as UTF-8 without NUL, numbers JSON and SQLite keep.

Python's own parsers let through what no store or client can take back: ``json.loads`` turns ``"\\udcff"``
into a lone surrogate (which no UTF-8 writer accepts), ``1e400`` into infinity (which ``json.dumps`` writes
as the non-JSON ``Infinity``), and keeps integers of any size (SQLite and most JSON readers stop at 64
bits). A file name that is not UTF-8 comes back from ``os.walk`` with surrogates too. One check, used by
the record validation (bad record → quarantine) and the API input models (bad request → 400), keeps all
of it out; :func:`printable` turns such text into something a log line or the quarantine can hold.
"""

from __future__ import annotations

import math
from typing import Any

INT_RANGE = (-(2**63), 2**63 - 1)  # SQLite's INTEGER, and what JSON readers keep exactly (as int64)


def text_problem(text: str) -> str | None:
    """Why this string cannot be stored or sent as it is, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid UTF-8 (a lone surrogate {text[exc.start]!r} at character {exc.start})"
    if "\x00" in text:
        return f"holds a NUL character (at character {text.index(chr(0))})"
    return None


def value_problem(value: Any, root: str = "") -> str | None:
    """Why this JSON-like value (strings, numbers, lists and dicts of them) cannot be kept, or None; the
    reason names where, from ``root`` (``metadata.tags[2] holds a NUL character``).

    Walks with a stack rather than recursion: a deeply nested value must not end in a RecursionError.
    """
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        where, item = stack.pop()
        problem: str | None = None
        if isinstance(item, str):
            problem = text_problem(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            problem = None if math.isfinite(item) else "is a number out of range (not finite)"
        elif isinstance(item, int):
            problem = None if INT_RANGE[0] <= item <= INT_RANGE[1] else "is an integer out of the 64-bit range"
        elif isinstance(item, dict):
            for key, sub in item.items():
                name = printable(str(key))[:100]
                if (bad := text_problem(str(key))) is not None:
                    return f"{where + ' ' if where else ''}key \"{name}\" {bad}"
                stack.append((f"{where}.{name}" if where else name, sub))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", sub) for i, sub in enumerate(item))
        if problem is not None:
            return f"{where or 'the value'} {problem}"
    return None


def printable(text: str) -> str:
    """The text with lone surrogates and NUL written as escapes (``\\udcff``, ``\\x00``): storable and loggable."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
