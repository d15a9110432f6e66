"""Output models of the operations on versions, experiments, alerts and reports (see ``ctx.api.outputs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from ctx.api.outputs import Output


class VersionOut(Output):
    id: str
    recipe: str
    created_at: str
    index: str = Field(description="the fingerprint of its chunking and embedding")
    index_state: Literal["live", "built", "not built"] = Field(
        description="live: runs on the home's index; built / not built: its side index (ctx versions build)")
    labels: list[str]
    current: bool = Field(description="the version in force for its recipe")


class VersionDetailOut(VersionOut):
    config: dict[str, Any]
    index_home: str | None = None


class VersionSide(Output):
    id: str
    recipe: str
    index: str
    index_state: Literal["live", "built", "not built"]


class VersionDiffOut(Output):
    a: VersionSide
    b: VersionSide
    changes: list[dict[str, Any]] = Field(description="each differing setting: its dotted path, from, to")
    index_differs: bool
    needs_side_index: list[str]


class VersionLabelOut(Output):
    recipe: str
    label: str
    version: str
    previous: str | None


class VersionRollbackOut(Output):
    recipe: str
    label: str
    from_: str = Field(alias="from")
    to: str


class AlertNotificationOut(Output):
    """One step's work for an alert: an action, a webhook message, or a note (a re-fire in the cooldown)."""

    step: int
    event: Literal["action", "firing", "escalation", "resolved", "suppressed"]
    kind: Literal["action", "webhook", "note"]
    target: str = Field(description="the action, or the webhook's name in ctx.toml (never its URL)")
    status: Literal["pending", "sending", "failed", "sent", "done", "gave_up", "cancelled", "skipped"]
    attempts: int
    error: str | None
    detail: str | None
    at: str


class AlertOut(Output):
    """One incident of an anomaly rule and key, firing or resolved."""

    id: str
    rule: str
    severity: Literal["warning", "error", "critical"]
    metric: str
    window: str = Field(description="the rule's bucket width: 1m spikes, 5m trends, 1h capacity")
    key: str = Field(description="what it is about: a source name, or \"\" for the whole home")
    state: Literal["firing", "resolved"]
    message: str
    value: float | None
    baseline: float | None
    z: float | None = Field(description="robust z of the newest deviating bucket (null: an absolute bound)")
    count: int = Field(description="deviating buckets seen")
    step: int = Field(ge=0, le=3, description="escalation step reached: 1 action, 2 webhook, 3 second webhook")
    first_at: str
    last_at: str
    resolved_at: str | None
    suppressed_until: str | None = Field(description="a re-fire inside the cooldown: no steps before this")
    sources: list[str]
    notifications: list[AlertNotificationOut]


class AlertRef(Output):
    id: str
    rule: str
    key: str
    severity: Literal["warning", "error", "critical"]


class AlertStepOut(AlertRef):
    step: int


class AlertDeliveryOut(Output):
    id: int
    alert_id: str
    step: int
    event: str
    kind: str
    target: str
    status: str
    error: str | None


class AlertCheckOut(Output):
    """What one evaluation of the alert rules changed."""

    evaluated_at: str
    rules: int
    opened: list[AlertRef]
    updated: list[AlertRef]
    resolved: list[AlertRef]
    suppressed: list[AlertRef] = Field(description="opened inside the cooldown of an earlier incident")
    steps: list[AlertStepOut]
    deliveries: list[AlertDeliveryOut]
    active: int


class Report(Output):
    """A report whose sections follow the configuration (objectives, experiments, levels): its top-level
    fields are typed where they are fixed, the rest kept as the core wrote them."""

    model_config = ConfigDict(extra="allow", defer_build=True)


class CostOut(Report):
    since: str
    until: str
    requests: int
    total_usd: float
    breakdown: dict[str, Any]


class SloOut(Report):
    pass


class AuditOut(Report):
    level: int


class ExperimentOut(Report):
    name: str
    recipe: str
    enabled: bool
    variants: list[dict[str, Any]]


class AbReportOut(Report):
    experiment: str
    recipe: str
    variants: list[dict[str, Any]]
    verdict: dict[str, Any]


class EvalOut(Report):
    pass


Experiments = list[ExperimentOut]
Alerts = list[AlertOut]
Versions = list[VersionOut]
