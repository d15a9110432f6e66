"""What every settings section shares: strict models, the Duration type, tiers, paths and error helpers."""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator

from ctx.duration import parse_duration
from ctx.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_optional_duration(value: Any) -> float | None:
    """:func:`parse_duration`, with None meaning "not set" (the field's default applies)."""
    return None if value is None else parse_duration(value)


# Seconds, written in ctx.toml as a number or "250ms", "30s", "5m", "24h", "7d". Field constraints
# (gt=0, le=120, ...) apply to the parsed seconds.
Duration = Annotated[float, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(parse_optional_duration)]


def inherited_durations(*fields: str) -> Any:
    """A by-name duration validator for the base classes plugins subclass ([sources.*], [providers.*]).

    A plugin may redeclare an inherited field with a plain type (``timeout: float = 5.0``), which drops the
    base class's Duration annotation; a validator named by field is inherited and applies to the
    redeclared field too, so ``timeout = "2s"`` keeps working there. On the base class's own Duration
    fields it parses a second time, which changes nothing: seconds in, the same seconds out.
    """
    return field_validator(*fields, mode="before")(parse_optional_duration)


class Strict(BaseModel):
    """Unknown keys are errors: a typo in ctx.toml must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Freshness(StrEnum):
    realtime = "realtime"
    near_realtime = "near_realtime"
    batch = "batch"


class Criticality(StrEnum):
    critical = "critical"
    important = "important"
    enhancing = "enhancing"
    optional = "optional"

    @property
    def rank(self) -> int:
        """0 for critical, 3 for optional: the order blocks are kept in, and dropped in reverse."""
        return list(Criticality).index(self)


DEFAULT_STALENESS = {Freshness.realtime: 5.0, Freshness.near_realtime: 300.0, Freshness.batch: 86400.0}


def resolve_path(value: str | Path, info: ValidationInfo, must_exist: bool = True) -> Path:
    """Paths in ctx.toml are relative to the file they are written in."""
    base = Path((info.context or {}).get("base_dir", "."))
    path = Path(os.path.expanduser(str(value)))
    path = path if path.is_absolute() else (base / path)
    if must_exist and not path.exists():
        raise ValueError(f"path does not exist: {path}")
    return path.resolve()


def valid_name(name: str) -> bool:
    """Table names (``[sources.NAME]``, variants, rules) use letters, digits, '_', '-', '.'."""
    return _NAME.fullmatch(name) is not None


def check_name(section: str, name: str) -> None:
    if not valid_name(name):
        raise NamedError(f"{section}.{name}", f"{section[:-1]} names use letters, digits, '_', '-', '.'")


class NamedError(ValueError):
    """Carries the full key of a nested problem out of a validator."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}\x00{problem}")


def error_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "__root__")


def error_msg(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "missing":
        return "missing required key"
    return msg


def to_config_error(exc: ValidationError) -> ConfigError:
    """The first problem as one line naming the key."""
    err = exc.errors()[0]
    msg = error_msg(err)
    if "\x00" in msg:
        key, problem = msg.split("\x00", 1)
        return ConfigError(key, problem)
    return ConfigError(error_loc(err["loc"]), msg)
