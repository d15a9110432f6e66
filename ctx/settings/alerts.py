"""[alerts]: anomaly rules (the built-in 3-3-3 set and your own), their escalation, and the webhooks they call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from ctx.settings.base import Duration, NamedError, OptionalDuration, Strict, check_name, error_msg

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
    window: Duration = Field(description="bucket width: 1m spikes, 5m trends, 1h capacity")
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
    escalate_after: OptionalDuration = Field(default=None, description="seconds between steps; default by severity")
    cooldown: Duration = Field(default=1800.0, ge=0, description="after a notified alert resolves, re-fires of the "
                            "same rule and key notify nobody for this long")

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
    timeout: Duration = Field(default=5.0, gt=0, le=120)
    max_attempts: int = Field(default=20, ge=1, le=10_000, description="deliveries tried, one per evaluation")

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
    interval: Duration = Field(default=15.0, ge=0.2, le=3600, description="seconds between the daemon's evaluations")
    builtin_rules: bool = Field(default=True, description="false: only the rules of [alerts.rules]")
    retention: Duration = Field(default=30 * 86400.0, ge=3600, description="resolved alerts are kept this long")
    webhook: str = Field(default="", description="step 2 of every rule that names none: a [alerts.webhooks] name")
    escalate_to: str = Field(default="", description="step 3 of every rule that names none")
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict)
    rules: dict[str, AlertRuleSettings] = Field(default_factory=dict, validate_default=True)

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookSettings]) -> dict[str, WebhookSettings]:
        for name in value:
            check_name("alerts.webhooks", name)
        return value

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any, info: ValidationInfo) -> dict[str, AlertRuleSettings]:
        if not isinstance(value, dict):
            raise ValueError("must be a table of [alerts.rules.NAME] tables")
        builtin = info.data.get("builtin_rules", True)
        raw: dict[str, Any] = dict(DEFAULT_ALERT_RULES) if builtin else {}
        for name, table in value.items():
            check_name("alerts.rules", name)
            if isinstance(table, AlertRuleSettings):
                raw[name] = table
            elif not isinstance(table, dict):
                raise NamedError(f"alerts.rules.{name}", "must be a table")
            else:  # a built-in rule's table changes only the keys it names
                base = raw.get(name, {})
                raw[name] = {**(base.model_dump() if isinstance(base, AlertRuleSettings) else base), **table}
        out: dict[str, AlertRuleSettings] = {}
        for name, table in raw.items():
            try:
                out[name] = table if isinstance(table, AlertRuleSettings) else AlertRuleSettings.model_validate(table)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise NamedError(".".join(["alerts.rules", name, *map(str, first["loc"])]), error_msg(first)) from None
        if "webhooks" in info.data:  # else the webhooks failed and say so themselves
            known = info.data["webhooks"]
            for key in ("webhook", "escalate_to"):
                ref = info.data.get(key, "")
                if ref and ref not in known:
                    raise NamedError(f"alerts.{key}", _unknown_webhook(ref, known))
            for name, rule in out.items():
                for key in ("webhook", "escalate_to"):
                    ref = getattr(rule, key)
                    if ref and ref not in known:
                        raise NamedError(f"alerts.rules.{name}.{key}", _unknown_webhook(ref, known))
        return out

    def targets(self, rule: AlertRuleSettings) -> tuple[str | None, str | None]:
        """The webhooks of a rule's steps 2 and 3 (None: that step sends nothing)."""
        first = self.webhook if rule.webhook is None else rule.webhook
        second = self.escalate_to if rule.escalate_to is None else rule.escalate_to
        return first or None, second or None


def _unknown_webhook(ref: str, known: Mapping[str, Any]) -> str:
    return f"unknown webhook {ref!r} (configured: {', '.join(known) or 'none: add an [alerts.webhooks.NAME] table'})"
