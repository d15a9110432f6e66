"""The operations service: what an operator asks about a home (sources, status, cost, SLOs, experiments,
alerts, the audit) and the upkeep they run (doctor, archive)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from ctx import plugins
from ctx.errors import NotFound, UserError
from ctx.observe.traces import TraceRecord
from ctx.services import upkeep
from ctx.services.assembly import AssemblyService
from ctx.services.ingest import IngestService
from ctx.services.stores import Stores
from ctx.settings import Settings
from ctx.store.catalog import Catalog


class OperationsService:
    """Reports and upkeep over one home; it satisfies the audit's Protocol (``ctx.audit.ports.Audited``)."""

    def __init__(self, stores: Stores, ingest: IngestService, assembly: AssemblyService) -> None:
        self.stores = stores
        self.ingest = ingest  # an alert's refresh action ingests in this process
        self.assembly = assembly  # versions named by experiments, the assembler's state, replays

    @property
    def settings(self) -> Settings:
        return self.stores.settings

    @property
    def catalog(self) -> Catalog:
        return self.stores.catalog

    @property
    def home(self) -> Path:
        return self.stores.home

    @property
    def origin(self) -> str:
        return self.stores.origin

    def sources(self) -> list[dict[str, Any]]:
        rows = self.catalog.source_rows()
        counts = self.catalog.per_source_counts()
        now = datetime.now(UTC)
        out = []
        for name, cfg in self.settings.sources.items():
            row = rows.get(name, {})
            last = row.get("last_success_at")
            staleness = (now - datetime.fromisoformat(last)).total_seconds() if last else None
            out.append({
                "name": name, "kind": cfg.kind, "freshness": cfg.freshness.value,
                "max_staleness_s": cfg.staleness_limit, "criticality": cfg.criticality.value, "mode": cfg.mode,
                "tenant_field": cfg.tenant_field, **counts.get(name, {"documents": 0, "chunks": 0, "quarantined": 0}),
                "last_sync_at": row.get("last_sync_at"), "last_success_at": last, "last_error": row.get("last_error"),
                "staleness_s": None if staleness is None else round(staleness, 1),
                "stale": staleness is None or staleness > cfg.staleness_limit,
            })
        return out

    def status(self) -> dict[str, Any]:
        counts = self.catalog.counts()
        vectors = self.stores.vectors.count() if self.stores.vectors is not None else None
        return {
            "home": str(self.home), "config": str(self.settings.config_path) if self.settings.config_path else None,
            "embedder": self.settings.embedding.embedder, **counts, "vectors": vectors,
            "sources": self.sources(), "plugins": plugins.plugin_names(), **self.providers(),
            "assembly": self.assembly.describe(),
        }

    def providers(self) -> dict[str, Any]:
        """Configured providers (built-in ones too) and which recipe asks which."""
        s = self.settings
        names = sorted({*s.providers, "retrieval", *(p for r in s.recipes.values() for p in r.providers)})
        listed = []
        for name in names:
            cfg = s.provider(name)
            listed.append({"name": name, "kind": cfg.kind, "freshness": cfg.freshness.value, "ttl_s": cfg.cache_ttl,
                           "timeout_s": cfg.timeout, "cost": cfg.cost, "cache": cfg.cache})
        recipes = {"default": list(s.recipe("default")[1].providers)} if "default" not in s.recipes else {}
        recipes.update({name: list(r.providers) for name, r in s.recipes.items()})
        return {"providers": listed, "recipes": recipes}

    def quarantined(self, source: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if source:
            self.assembly.filters([source])  # the same one-line error for an unknown source as everywhere else
        return self.catalog.quarantined(source, limit)

    def replay(self, trace_id: str) -> TraceRecord:
        return self.assembly.replay(trace_id)

    def cost(self, since: str = "7d") -> dict[str, Any]:
        """The cost ledger of the last ``since`` (traces and ingest runs)."""
        from ctx.observe.cost import cost_report

        return cost_report(self.catalog, since)

    def slo(self) -> dict[str, Any]:
        """Every objective of ``[slo]`` over 1h, 1d and 7d, from the traces and the sync ledger."""
        from ctx.observe.slo import slo_report

        return slo_report(self.catalog, self.settings)

    def experiments(self) -> list[dict[str, Any]]:
        """Configured A/B experiments, the version each variant names today, and their traffic so far."""
        from ctx.versions.abtest import overview

        return overview(self.catalog, self.settings.experiments, self._variant_version)

    def ab_report(self, name: str, since: str = "30d") -> dict[str, Any]:
        """Per-variant figures of experiment ``name`` over the last ``since``, with intervals and a verdict."""
        from ctx.versions.abtest import report

        return report(self.catalog, self.settings.experiments, name, self._variant_version, since)

    def _variant_version(self, ref: str, recipe: str) -> str | None:
        try:
            return self.assembly.resolve_version(ref, recipe).id
        except (NotFound, UserError):  # a label not set yet: the report shows the variant without a version
            return None

    def audit(self, window: str = "7d", sample: int = 20) -> dict[str, Any]:
        """The maturity-model audit (``ctx.audit``): each level's checks over the last ``window``, with
        ``sample`` recent traces replayed and doctor run (no repair) as live probes."""
        from ctx.audit.report import audit

        return audit(self, window, sample)

    @cached_property
    def alerting(self) -> Any:
        """The alert engine (``ctx.observe.alerts``); it keeps complete trace buckets between evaluations."""
        from ctx.observe.alerts import AlertEngine

        return AlertEngine(self.catalog, self.settings, self.stores.env, self.stores.write)

    def alerts(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        """Alerts with their notifications: firing ones first, then (unless ``active``) resolved ones."""
        from ctx.observe.alert_store import AlertStore

        return AlertStore(self.catalog).recent(limit, active)

    def check_alerts(self, refresh: Callable[[str], str] | None = None) -> dict[str, Any]:
        """Evaluate every alert rule now and take the steps that are due; what changed.

        A ``refresh_sources`` action ingests the source in this process, unless ``refresh`` (the
        daemon's job lanes) does it instead.
        """
        return self.alerting.check(refresh or self.alert_refresh)  # type: ignore[no-any-return]

    def alert_refresh(self, source: str) -> str:
        """An alert's refresh action, in this process: ingest ``source`` now."""
        summary = self.ingest.run_job(self.ingest.submit([source], "alert"))
        return f"ingested in this process (job {summary.run_id}: {'ok' if summary.ok else 'failed'})"

    def alert_counts(self) -> dict[str, int]:
        """Firing alerts per severity."""
        from ctx.observe.alert_store import AlertStore

        return AlertStore(self.catalog).active_counts()

    def doctor(self, repair: bool = False) -> Any:
        return upkeep.doctor(self.stores, repair)

    def archive(self) -> dict[str, Any]:
        """Move versions superseded longer ago than ``[archive] keep`` to the cold tier (HOME/archive/)."""
        return upkeep.archive(self.stores)
