"""What ``ctx versions`` does with a home's versions: list, show, diff, label, roll back, and build side indexes.

Each function takes any object with the narrow Protocol it needs (``ctx.versions.ports``): a Workspace,
or the assembly service.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from ctx.errors import CtxError, NotFound, UserError
from ctx.versions.store import Version, diff, index_id, settings_for, version_config

if TYPE_CHECKING:
    from ctx.assemble.context import AssembleRequest
    from ctx.pipeline import Progress
    from ctx.settings import Settings
    from ctx.versions.ports import Registry, SideIndexes

# Fixed paths under /v1/versions/: a label with one of these names could not be shown through the daemon.
RESERVED = ("label", "rollback")


def recipes(ws: Registry) -> list[str]:
    """Every recipe a request can name: the implicit ``default`` and each ``[recipes.NAME]``."""
    return list(dict.fromkeys(["default", *ws.settings.recipes]))


def register_current(ws: Registry) -> dict[str, Version]:
    """Store the version in force of every recipe (so a fresh home lists them); recipe → version."""
    return {name: ws.current_version(name) for name in recipes(ws)}


def live_index(settings: Settings) -> str:
    """The index id the home's own catalog and vectors are built with (chunking and embedding are global)."""
    return index_id(version_config(settings))


def index_state(ws: Registry, version: Version) -> str:
    """``live`` (runs on the home's index), ``built`` (its side index exists) or ``not built``."""
    if version.index == live_index(ws.settings):
        return "live"
    return "built" if (ws.index_home(version) / "catalog.db").exists() else "not built"


def _labels_by_version(ws: Registry, recipe: str | None = None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for (_recipe, label), vid in sorted(ws.versions.labels(recipe).items()):
        out.setdefault(vid, []).append(label)
    return out


def _describe(ws: Registry, version: Version, labels: dict[str, list[str]], current: dict[str, Version]
              ) -> dict[str, Any]:
    in_force = current.get(version.recipe)
    return {"id": version.id, "recipe": version.recipe, "created_at": version.created_at, "index": version.index,
            "index_state": index_state(ws, version), "labels": labels.get(version.id, []),
            "current": in_force is not None and in_force.id == version.id}


def listing(ws: Registry, recipe: str | None = None) -> list[dict[str, Any]]:
    """Every stored version (newest first), with its labels and whether it is the one in force."""
    current = register_current(ws)
    if recipe is not None and recipe not in current and not ws.versions.all(recipe):
        ws.settings.recipe(recipe)  # an unknown recipe with no stored versions: say which ones exist
    labels = _labels_by_version(ws, recipe)
    return [_describe(ws, v, labels, current) for v in ws.versions.all(recipe)]


def show(ws: Registry, ref: str | None = None, recipe: str | None = None) -> dict[str, Any]:
    """One version in full: its configuration, labels, index id and state; without ``ref``, the one in force."""
    current = register_current(ws)
    version = ws.resolve_version(ref, recipe) if ref is not None else ws.current_version(recipe)
    out = {**_describe(ws, version, _labels_by_version(ws, version.recipe), current), "config": version.config}
    out["index_home"] = None if out["index_state"] == "live" else str(ws.index_home(version))
    return out


def compare(ws: Registry, a: str, b: str, recipe: str | None = None) -> dict[str, Any]:
    """The settings that differ between two versions, and whether their indexes differ too."""
    register_current(ws)
    left, right = ws.resolve_version(a, recipe), ws.resolve_version(b, recipe)
    live = live_index(ws.settings)
    return {
        "a": {"id": left.id, "recipe": left.recipe, "index": left.index, "index_state": index_state(ws, left)},
        "b": {"id": right.id, "recipe": right.recipe, "index": right.index, "index_state": index_state(ws, right)},
        "changes": diff(left.config, right.config),
        # Chunking or embedding differ: the two cannot share one index, and any that is not the live one
        # runs on a side index that `ctx versions build` makes.
        "index_differs": left.index != right.index,
        "needs_side_index": [v.id for v in (left, right) if v.index != live],
    }


def label(ws: Registry, ref: str, name: str, recipe: str | None = None) -> dict[str, Any]:
    """Point label ``name`` (in the version's recipe) at a version; says where it pointed before."""
    if name in RESERVED:
        raise UserError(f"label {name!r} is reserved: /v1/versions/{name} is a route of the daemon's API")
    register_current(ws)
    version = ws.resolve_version(ref, recipe)
    previous = ws.write(lambda: ws.versions.label(version, name))
    return {"recipe": version.recipe, "label": name, "version": version.id, "previous": previous}


def rollback(ws: Registry, name: str, recipe: str | None = None) -> dict[str, Any]:
    """Move label ``name`` of ``recipe`` (default: [assembly] recipe) back to where it was before its last move."""
    if recipe is None or not ws.versions.labels(recipe):
        recipe = ws.settings.recipe(recipe)[0]  # a recipe since removed from ctx.toml keeps its labels
    chosen = recipe
    moved_from, moved_to = ws.write(lambda: ws.versions.rollback(chosen, name))
    return {"recipe": chosen, "label": name, "from": moved_from, "to": moved_to}


def index_settings(ws: SideIndexes, version: Version) -> Settings:
    """The settings a version runs with over its own side index (HOME/versions/index-ID/)."""
    settings = settings_for(ws.settings, version.config)
    # The model is the same files wherever the index lives: keep using the home's unpacked copy.
    embedding = settings.embedding.model_copy(update={"model_dir": str(ws.model_dir)})
    return settings.model_copy(update={"home": ws.index_home(version), "embedding": embedding})


def build(ws: SideIndexes, version: Version, progress: Progress | None = None) -> dict[str, Any]:
    """Ingest every source into the side index of a version that chunks or embeds differently.

    A first build goes to a staging folder renamed into place at the end, so nothing ever runs on a
    half-built index; a later build re-syncs the existing index (only changed documents are redone).
    """
    out: dict[str, Any] = {"version": version.id, "recipe": version.recipe, "index": version.index,
                           "home": None, "built": False, "summary": None}
    if version.index == live_index(ws.settings):
        return out
    target = ws.index_home(version)
    settings = index_settings(ws, version)
    fresh = not (target / "catalog.db").exists()
    home = target.with_name(f".{target.name}.building-{os.getpid()}") if fresh else target
    if fresh and home.exists():
        shutil.rmtree(home)  # left by an earlier build of this pid that did not finish
    side = ws.open_index(settings.model_copy(update={"home": home}))
    try:
        summary = side.ingest(None, progress)
    finally:
        side.close()
    if not summary.ok:
        if fresh:
            shutil.rmtree(home, ignore_errors=True)
        raise CtxError(f"building the index of version {version.id} failed: "
                        + "; ".join(f"{s.source}: {s.error}" for s in summary.sources if s.error))
    if fresh:
        if (target / "catalog.db").exists():  # another build finished first: keep the one in place
            shutil.rmtree(home)
        else:
            shutil.rmtree(target, ignore_errors=True)
            home.rename(target)
    return {**out, "home": str(target), "built": True, "summary": summary.to_dict()}


def rebase_past(ws: Registry, request: AssembleRequest, past: str) -> AssembleRequest:
    """A traced request with the defaults of today's settings in place of those of the version it ran with.

    A request carries the budget, model, format and top_k defaults of the version that served it; a
    rerun asks what the settings in force (or ``--version``, which the assembly rebases to next)
    make of it, so defaults that were that version's become today's.
    """
    from ctx.versions.experiments import rebase

    if past == ws.current_version(request.recipe).id:
        return request
    try:
        then = settings_for(ws.settings, ws.versions.get(past).config)
    except (NotFound, UserError):  # a version this home never stored, or one this ctx cannot run: as recorded
        return request
    return rebase(request, then, ws.settings)
