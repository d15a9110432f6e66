"""A/B experiments: which variant (a version of the recipe) a request gets, decided by a hash of its key."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ctx.assemble.context import AssembleRequest
from ctx.settings import ExperimentSettings, Settings


@dataclass(frozen=True)
class Assignment:
    experiment: str
    variant: str
    ref: str  # the variant's version: an id, id prefix or label


def bucket(experiment: str, key: str) -> float:
    """A uniform number in [0, 1) from the experiment's name and the key: the same key always gets the same
    variant, and two experiments split the same users independently of each other."""
    digest = hashlib.sha256(f"{experiment}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def key_of(request: AssembleRequest, field: str) -> str | None:
    if field == "user":
        return request.user
    if field == "session":
        return request.session
    return request.filters.tenant


def assign(experiments: Mapping[str, ExperimentSettings], request: AssembleRequest) -> Assignment | None:
    """The enabled experiment of the request's recipe and the variant its key falls in; None when there is
    none, the request has no key, or the key falls in the share no variant takes."""
    for name, experiment in experiments.items():
        if not experiment.enabled or experiment.recipe != request.recipe:
            continue
        key = key_of(request, experiment.key)
        if not key:
            return None
        point, edge = bucket(name, key), 0.0
        # Shares that add up to 1 in decimal (0.1 ten times) may sum to 0.9999999999999999 in binary: the
        # last edge is then 1, or the keys between it and 1 would go unenrolled.
        full = sum(cfg.share for cfg in experiment.variants.values()) > 1.0 - 1e-9
        last = len(experiment.variants) - 1
        for i, (variant, cfg) in enumerate(experiment.variants.items()):
            edge += cfg.share
            if point < edge or (full and i == last):
                return Assignment(name, variant, cfg.version)
        return None
    return None


def request_defaults(settings: Settings, recipe: str) -> dict[str, Any]:
    """What ``Workspace.request`` fills in from the settings when the caller leaves it out."""
    _, chosen = settings.recipe(recipe)
    a = settings.assembly
    return {"budget": a.budget if chosen.budget is None else chosen.budget, "model": a.model, "format": a.format,
            "top_k": settings.retrieval.top_k}


def rebase(request: AssembleRequest, current: Settings, target: Settings) -> AssembleRequest:
    """``request`` (built with the defaults of the settings in force) with another version's defaults.

    A request is built before its version is chosen, so it carries the budget, model, format and top_k of
    the settings in force: a variant whose change is a smaller budget would otherwise never apply it. A
    field that holds the current default is taken as left out and gets the target's (a value passed
    explicitly that happens to equal the default cannot be told apart, and follows the version too).
    """
    before, after = request_defaults(current, request.recipe), request_defaults(target, request.recipe)
    changes = {k: after[k] for k, v in before.items() if getattr(request, k) == v and after[k] != v}
    return replace(request, **changes) if changes else request
