"""``[sources.NAME]``: what every source kind shares; each kind's plugin subclasses it with its own fields."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, field_validator

from ctx.settings.base import DEFAULT_STALENESS, Criticality, Freshness, OptionalDuration, Strict, inherited_durations


class SourceSettings(Strict):
    """Settings every source kind shares; a kind's plugin subclasses this with its own fields."""

    kind: str
    freshness: Freshness = Freshness.batch
    max_staleness: OptionalDuration = Field(default=None, description="seconds; defaults by freshness tier")
    criticality: Criticality = Criticality.important
    tenant_field: str | None = None
    mode: Literal["mirror", "append"] = "mirror"
    max_record_bytes: int = Field(default=2_000_000, gt=0)
    every: OptionalDuration = Field(default=None, description="seconds between the daemon's syncs; default "
                                    "max_staleness/2")

    _durations = inherited_durations("max_staleness", "every")

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
