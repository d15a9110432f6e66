"""The whole of ctx.toml: every section, and the checks that span sections (recipes name providers, ...)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ctx.errors import UserError
from ctx.settings.alerts import AlertsSettings
from ctx.settings.base import NamedError, Strict, check_name, resolve_path
from ctx.settings.cache import ArchiveSettings, CacheSettings
from ctx.settings.daemon import DaemonSettings
from ctx.settings.experiments import ExperimentSettings
from ctx.settings.pipeline import (
    AssemblySettings,
    ChunkingSettings,
    EmbeddingSettings,
    EnrichmentSettings,
    RetrievalSettings,
)
from ctx.settings.pricing import PricingSettings
from ctx.settings.providers import BUILTIN_PROVIDERS, DEFAULT_RECIPE, ProviderSettings, RecipeSettings
from ctx.settings.registry import Registry, installed_registry, plugin_tables, registry_of
from ctx.settings.slo import SloSettings
from ctx.settings.sources import SourceSettings


class Settings(Strict):
    home: Path | None = None
    plugins_dir: Path | None = None
    chunking: ChunkingSettings = ChunkingSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    enrichment: EnrichmentSettings = EnrichmentSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    assembly: AssemblySettings = AssemblySettings()
    daemon: DaemonSettings = DaemonSettings()
    cache: CacheSettings = CacheSettings()
    archive: ArchiveSettings = ArchiveSettings()
    pricing: PricingSettings = PricingSettings()
    slo: SloSettings = SloSettings()
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    recipes: dict[str, RecipeSettings] = Field(default_factory=dict)
    experiments: dict[str, ExperimentSettings] = Field(default_factory=dict)
    config_path: Path | None = Field(default=None, exclude=True)
    # The registry the caller validated these settings with (None: the installed plugins'): built-in
    # providers take their defaults from it, and a version's settings are validated against it again.
    _registry: Registry | None = PrivateAttr(default=None)

    @field_validator("home", "plugins_dir", mode="before")
    @classmethod
    def _paths(cls, value: Any, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info, must_exist=False)

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any, info: ValidationInfo) -> dict[str, SourceSettings]:
        return plugin_tables("sources", value, "source_kinds", SourceSettings, info)

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, value: Any, info: ValidationInfo) -> dict[str, ProviderSettings]:
        out = plugin_tables("providers", value, "provider_kinds", ProviderSettings, info)
        sources = info.data.get("sources", {})
        for name, cfg in out.items():
            source = getattr(cfg, "source", None)  # providers that read a ctx source (session)
            if isinstance(source, str) and source not in sources:
                raise NamedError(f"providers.{name}.source", f"unknown source {source!r} (configured: "
                                 f"{', '.join(sources) or 'none'})")
            if isinstance(source, str) and sources[source].mode != "append":
                raise NamedError(f"providers.{name}.source", f"source {source!r} must have mode = \"append\"")
        return out

    @field_validator("recipes")
    @classmethod
    def _recipes(cls, value: dict[str, RecipeSettings], info: ValidationInfo) -> dict[str, RecipeSettings]:
        known = {*info.data.get("providers", {}), *BUILTIN_PROVIDERS}
        for name, recipe in value.items():
            check_name("recipes", name)
            for provider, part in recipe.providers.items():
                for ref, key in ((provider, provider), (part.fallback, f"{provider}.fallback")):
                    if ref is not None and ref not in known:
                        raise NamedError(f"recipes.{name}.providers.{key}",
                                         f"unknown provider {ref!r} (known: {', '.join(sorted(known))})")
        return value

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, value: dict[str, ExperimentSettings], info: ValidationInfo) -> dict[str, ExperimentSettings]:
        recipes = {"default", *info.data.get("recipes", {})}
        running: dict[str, str] = {}
        for name, experiment in value.items():
            check_name("experiments", name)
            if experiment.recipe not in recipes:
                raise NamedError(f"experiments.{name}.recipe", f"unknown recipe {experiment.recipe!r} (known: "
                                 f"{', '.join(sorted(recipes))})")
            if experiment.enabled and experiment.recipe in running:
                # One request, one assignment: two experiments on a recipe would each claim the same traffic.
                raise NamedError(f"experiments.{name}", f"recipe {experiment.recipe!r} already has experiment "
                                 f"{running[experiment.recipe]!r} enabled")
            if experiment.enabled:
                running[experiment.recipe] = name
        return value

    @model_validator(mode="after")
    def _keep_registry(self, info: ValidationInfo) -> Settings:
        self._registry = registry_of(info)
        return self

    @property
    def registry(self) -> Registry | None:
        """The registry these settings were validated with, None if the caller passed none (pass it on)."""
        return self._registry

    def recipe(self, name: str | None) -> tuple[str, RecipeSettings]:
        """The named recipe (or the default one); ``default`` exists even when ctx.toml has no recipes."""
        name = name or self.assembly.recipe
        if name in self.recipes:
            return name, self.recipes[name]
        if name == "default":
            return name, DEFAULT_RECIPE
        known = sorted({"default", *self.recipes})
        raise UserError(f"unknown recipe {name!r} (known: {', '.join(known)})")

    def provider(self, name: str) -> ProviderSettings:
        """A configured provider, or a built-in one (``retrieval``) with its defaults."""
        if name in self.providers:
            return self.providers[name]
        kind = BUILTIN_PROVIDERS[name]
        registry = installed_registry() if self._registry is None else self._registry
        return cast(ProviderSettings, registry.provider_kinds[kind].settings_model(kind=kind))

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections, recorded in traces so runs can be compared."""
        # serialize_as_any: [sources.NAME] and [providers.NAME] are plugin subclasses, whose own fields
        # (a path, a URL, a query) a dump by the declared base type would leave out of the hash.
        data = self.model_dump(mode="json", include=set(sections) or None, exclude={"home", "config_path"},
                               serialize_as_any=True)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
