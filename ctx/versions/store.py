"""Configuration versions: the effective settings a recipe's contexts depend on, fingerprinted and kept
immutable, with labels (``prod``, ``candidate``...) that point at them and remember where they were."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ctx.errors import NotFound, UserError
from ctx.settings import Settings, to_config_error
from ctx.store.catalog import Catalog, now_iso

# What decides a context: how documents are chunked and embedded (the index), how candidates are
# retrieved, and how the recipe's providers are assembled. Sources, the daemon, caches, pricing and
# alerts are the environment a version runs in, not part of it.
SECTIONS = ("chunking", "embedding", "retrieval", "assembly")
# The part of a version that the index was built with: two versions that differ here need two indexes.
INDEX_SECTIONS = ("chunking", "embedding")
# Settings that do not change what a version returns: where a model lives is not which model it is, the
# batch size of embedding calls changes no vector, and the default recipe's name is not part of a recipe.
_IGNORED = {("embedding", "model_dir"), ("embedding", "batch_size"), ("assembly", "recipe")}


def version_config(settings: Settings, recipe: str | None = None) -> dict[str, Any]:
    """The effective configuration of ``recipe`` (default: [assembly] recipe), as plain JSON data."""
    name, chosen = settings.recipe(recipe)
    data: dict[str, Any] = settings.model_dump(mode="json", include=set(SECTIONS))
    for section, key in _IGNORED:
        data[section].pop(key, None)
    data["recipe"] = {"name": name, **chosen.model_dump(mode="json")}
    data["providers"] = {p: settings.provider(p).model_dump(mode="json") for p in sorted(chosen.providers)}
    return data


def settings_for(settings: Settings, config: dict[str, Any]) -> Settings:
    """``settings`` with a version's configuration in place of its own (sources and the rest stay)."""
    data = settings.model_dump(mode="json", exclude={"config_path", "home"}, serialize_as_any=True)
    for section in SECTIONS:
        data[section] = {**data[section], **config[section]}
    recipe = dict(config["recipe"])
    data["recipes"] = {**data.get("recipes", {}), recipe.pop("name"): recipe}
    data["providers"] = {**data.get("providers", {}), **config["providers"]}
    try:
        # Checked against the plugins the current settings were checked against (ctx.settings imports none).
        built = Settings.model_validate(data, context={"base_dir": settings.base_dir, "registry": settings.registry})
    except ValidationError as exc:  # a version stored by an older ctx whose settings no longer validate
        raise UserError(f"this ctx cannot run that version: {to_config_error(exc)}") from None
    return built.model_copy(update={"home": settings.home, "config_path": settings.config_path})


def version_id(config: dict[str, Any]) -> str:
    """12 hex digits of the canonical JSON's sha256: stable across runs, processes and key order."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def index_id(config: dict[str, Any]) -> str:
    """The fingerprint of the index part of a version (its chunking and embedding)."""
    return version_id({s: config[s] for s in INDEX_SECTIONS})


@dataclass(frozen=True)
class Version:
    id: str
    recipe: str
    config: dict[str, Any]
    created_at: str

    @property
    def index(self) -> str:
        return index_id(self.config)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "recipe": self.recipe, "created_at": self.created_at, "index": self.index,
                "config": self.config}


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Every setting that differs between two configurations, as dotted paths with both values."""
    left, right = flatten(a), flatten(b)
    return [{"setting": k, "from": left.get(k), "to": right.get(k)}
            for k in sorted(left.keys() | right.keys()) if left.get(k) != right.get(k)]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted paths: ``{"chunking": {"max_tokens": 256}}`` → ``{"chunking.max_tokens": 256}``."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


class VersionStore:
    """Versions and labels in the catalog. Writes go through the caller's writer (one writer per home)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @property
    def db(self) -> Any:
        return self.catalog.db

    def register(self, recipe: str, config: dict[str, Any]) -> Version:
        """Store a configuration as a version (once: an id is never rewritten) and return it."""
        vid = version_id(config)
        self.db.execute("insert or ignore into versions (id, recipe, config, created_at) values (?, ?, ?, ?)",
                        [vid, recipe, json.dumps(config, sort_keys=True), now_iso()])
        return self.get(vid)

    def get(self, vid: str) -> Version:
        row = self.db.execute("select id, recipe, config, created_at from versions where id = ?", [vid]).fetchone()
        if row is None:
            raise NotFound(f"no version {vid!r} (see ctx versions list)")
        return Version(row[0], row[1], json.loads(row[2]), row[3])

    def resolve(self, ref: str, recipe: str | None = None) -> Version:
        """A version by id, unique id prefix (4+ digits) or label; a label is looked up in ``recipe``
        when given, else in every recipe (and must then be unambiguous)."""
        ref = ref.strip()
        if not ref:
            raise UserError("the version is empty (give an id, an id prefix or a label)")
        args: list[Any] = [ref] + ([recipe] if recipe else [])
        labelled = self.db.execute(
            "select version from version_labels where label = ?" + (" and recipe = ?" if recipe else ""), args
        ).fetchall()
        if len(labelled) > 1:
            raise UserError(f"label {ref!r} exists in several recipes: give --recipe")
        if labelled:
            return self.get(labelled[0][0])
        if len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.execute("select id from versions where id like ? limit 2", [ref + "%"]).fetchall()
            if len(rows) > 1:
                raise UserError(f"version prefix {ref!r} is ambiguous")
            if rows:
                return self.get(rows[0][0])
        where = f" in recipe {recipe!r}" if recipe else ""
        raise NotFound(f"no version or label {ref!r}{where} (see ctx versions list)")

    def all(self, recipe: str | None = None) -> list[Version]:
        sql = "select id, recipe, config, created_at from versions"
        rows = self.db.execute(sql + (" where recipe = ?" if recipe else "") + " order by created_at desc, id",
                               [recipe] if recipe else []).fetchall()
        return [Version(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def labels(self, recipe: str | None = None) -> dict[tuple[str, str], str]:
        """(recipe, label) → version id."""
        sql = "select recipe, label, version from version_labels"
        rows = self.db.execute(sql + (" where recipe = ?" if recipe else ""), [recipe] if recipe else []).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def label(self, version: Version, label: str, action: str = "label") -> str | None:
        """Point ``label`` (in the version's recipe) at ``version``; returns where it pointed before."""
        _check_label(label)
        with self.db.atomic():
            previous = self._current(version.recipe, label)
            self.db.execute(
                "insert into version_labels (recipe, label, version, updated_at) values (?, ?, ?, ?) "
                "on conflict (recipe, label) do update set version = excluded.version, "
                "updated_at = excluded.updated_at",
                [version.recipe, label, version.id, now_iso()])
            self.db.execute("insert into label_moves (recipe, label, version, previous, action, at) "
                            "values (?, ?, ?, ?, ?, ?)",
                            [version.recipe, label, version.id, previous, action, now_iso()])
        return previous

    def rollback(self, recipe: str, label: str) -> tuple[str, str]:
        """Move ``label`` back to the version it pointed at before its last move; (from, to)."""
        current = self._current(recipe, label)
        if current is None:
            raise NotFound(f"no label {label!r} in recipe {recipe!r} (see ctx versions list)")
        # The history, newest first, without the rollbacks' own moves undoing each other: walk back past
        # every version the label has already been rolled back from.
        moves = self.db.execute("select version, previous, action from label_moves where recipe = ? and label = ? "
                                "order by id desc", [recipe, label]).fetchall()
        target = _previous(moves)
        if target is None:
            raise UserError(f"label {label!r} of recipe {recipe!r} has no earlier version to roll back to")
        self.label(self.get(target), label, action="rollback")
        return current, target

    def history(self, recipe: str, label: str) -> list[dict[str, Any]]:
        rows = self.db.execute("select version, previous, action, at from label_moves where recipe = ? and label = ? "
                               "order by id desc", [recipe, label]).fetchall()
        return [{"version": r[0], "previous": r[1], "action": r[2], "at": r[3]} for r in rows]

    def _current(self, recipe: str, label: str) -> str | None:
        row = self.db.execute("select version from version_labels where recipe = ? and label = ?",
                              [recipe, label]).fetchone()
        return row[0] if row else None


def _previous(moves: list[tuple[str, str | None, str]]) -> str | None:
    """Where a label goes on rollback, from its moves newest first.

    A plain move from A to B rolls back to A. A rollback from B to A counts as undoing B's move, so a
    second rollback continues to whatever preceded A (like an undo stack), instead of flipping back to B.
    """
    skip = 0
    for _version, previous, action in moves:
        if action == "rollback":
            skip += 1
            continue
        if skip:
            skip -= 1
            continue
        return previous
    return None


def _check_label(label: str) -> None:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", label):
        raise UserError(f"bad label {label!r}: a letter, then letters, digits, '_', '-', '.' (64 at most)")

