"""``[providers.NAME]`` and ``[recipes.NAME]``: context providers, their breakers, and the recipes that ask them."""

from __future__ import annotations

import hashlib

from pydantic import Field, field_validator

from ctx.settings.base import (
    DEFAULT_STALENESS,
    Criticality,
    Duration,
    Freshness,
    OptionalDuration,
    Strict,
    inherited_durations,
)


class BreakerSettings(Strict):
    """A provider's circuit breaker: open after ``failures`` within ``window``, probe again after ``cooldown``."""

    failures: int = Field(default=5, ge=1, le=1000)
    window: Duration = Field(default=30.0, gt=0, description="seconds")
    cooldown: Duration = Field(default=10.0, gt=0, description="seconds open before one probe is let through")


class ProviderSettings(Strict):
    """Settings every context provider shares; a provider kind's plugin subclasses this with its own fields."""

    kind: str
    freshness: Freshness = Freshness.batch
    ttl: OptionalDuration = Field(default=None, description="seconds a result is fresh; default by freshness tier")
    max_stale: OptionalDuration = Field(default=None, description="seconds an expired result may still be served "
                                        "(marked stale) when the provider fails; default 10 x ttl")
    timeout: Duration = Field(default=1.0, gt=0, description="seconds; capped by what is left of the deadline")
    cost: float = Field(default=0.0, ge=0, description="USD per upstream call (cache hits cost nothing)")
    cache: bool = True
    breaker: BreakerSettings = BreakerSettings()

    # The retrieval kind (and the git_history plugin) redeclare `timeout: float = 5.0`.
    _durations = inherited_durations("ttl", "max_stale", "timeout")

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
    deadline: OptionalDuration = Field(default=None, description="seconds; default [assembly] deadline")
    budget: int | None = Field(default=None, ge=0)
    providers: dict[str, RecipeProvider] = Field(min_length=1)

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


# Providers that exist without a [providers.NAME] table, by name → kind.
BUILTIN_PROVIDERS = {"retrieval": "retrieval"}
# Without recipes, a request is what it always was: hybrid retrieval over every source. It is local
# work only, so its deadline is generous: a loaded machine should slow it down, not fail it.
DEFAULT_RECIPE = RecipeSettings(deadline=5.0,
                                providers={"retrieval": RecipeProvider(criticality=Criticality.critical, share=1.0)})
