"""[pricing]: what a context costs, per model and per embedded token."""

from __future__ import annotations

from pydantic import Field, field_validator

from ctx.settings.base import Strict

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
