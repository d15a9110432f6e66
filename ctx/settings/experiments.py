"""``[experiments.NAME]``: A/B tests of versions of one recipe, and their variants."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ctx.settings.base import Strict, valid_name


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
            # A plain ValueError (not check_name's): its location already names experiments.NAME.variants.
            if not valid_name(name):
                raise ValueError(f"bad variant name {name!r}: use letters, digits, '_', '-', '.'")
        return value
