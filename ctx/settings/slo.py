"""[slo]: service level objectives for latency, freshness, availability and relevance."""

from __future__ import annotations

from pydantic import Field

from ctx.settings.base import Duration, Strict


class Objective(Strict):
    """One service level objective: the share of good events (``target``) that must hold over each window."""

    enabled: bool = True
    target: float = Field(default=0.99, gt=0, lt=1, description="share of good events, e.g. 0.99")


class LatencyObjective(Objective):
    threshold: Duration = Field(default=0.05, gt=0, description="a request is good when assembled within this")


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
