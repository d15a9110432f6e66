"""ctx.toml as pydantic models, one module per section: one place that validates every setting and names the bad key.

Validation that depends on plugins (source and provider kinds, embedder, summarizer and format names)
takes the plugins' registry from the validation context (see :mod:`ctx.settings.registry`). No module of
this package imports ctx.plugins: only ``registry.installed_registry()`` reaches it, at call time, for
load_settings and for callers that pass no registry.
"""

from __future__ import annotations

from ctx.duration import parse_duration
from ctx.home import CONFIG_NAME, find_config
from ctx.settings.alerts import (
    DEFAULT_ALERT_RULES,
    ESCALATE_AFTER,
    SEVERITIES,
    AlertRuleSettings,
    AlertsSettings,
    WebhookSettings,
    env_var,
)
from ctx.settings.base import (
    DEFAULT_STALENESS,
    Criticality,
    Duration,
    Freshness,
    OptionalDuration,
    Strict,
    resolve_path,
    to_config_error,
)
from ctx.settings.cache import ArchiveSettings, CacheSettings
from ctx.settings.daemon import DaemonSettings
from ctx.settings.experiments import ExperimentSettings, VariantSettings
from ctx.settings.load import load_settings
from ctx.settings.pipeline import (
    AssemblySettings,
    ChunkingSettings,
    EmbeddingSettings,
    EnrichmentSettings,
    RetrievalSettings,
)
from ctx.settings.pricing import DEFAULT_MODEL_PRICES, PricingSettings
from ctx.settings.providers import (
    BUILTIN_PROVIDERS,
    DEFAULT_RECIPE,
    BreakerSettings,
    ProviderSettings,
    RecipeProvider,
    RecipeSettings,
)
from ctx.settings.registry import Registry
from ctx.settings.root import Settings
from ctx.settings.slo import AvailabilityObjective, LatencyObjective, Objective, RelevanceObjective, SloSettings
from ctx.settings.sources import SourceSettings

# Every public name of the former single-module ctx/settings.py, plus Duration, OptionalDuration and
# Registry: callers import from ctx.settings, never from its modules.
__all__ = [
    "BUILTIN_PROVIDERS",
    "CONFIG_NAME",
    "DEFAULT_ALERT_RULES",
    "DEFAULT_MODEL_PRICES",
    "DEFAULT_RECIPE",
    "DEFAULT_STALENESS",
    "ESCALATE_AFTER",
    "SEVERITIES",
    "AlertRuleSettings",
    "AlertsSettings",
    "ArchiveSettings",
    "AssemblySettings",
    "AvailabilityObjective",
    "BreakerSettings",
    "CacheSettings",
    "ChunkingSettings",
    "Criticality",
    "DaemonSettings",
    "Duration",
    "EmbeddingSettings",
    "EnrichmentSettings",
    "ExperimentSettings",
    "Freshness",
    "LatencyObjective",
    "Objective",
    "OptionalDuration",
    "PricingSettings",
    "ProviderSettings",
    "RecipeProvider",
    "RecipeSettings",
    "Registry",
    "RelevanceObjective",
    "RetrievalSettings",
    "Settings",
    "SloSettings",
    "SourceSettings",
    "Strict",
    "VariantSettings",
    "WebhookSettings",
    "env_var",
    "find_config",
    "load_settings",
    "parse_duration",
    "resolve_path",
    "to_config_error",
]
