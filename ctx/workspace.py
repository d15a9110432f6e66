"""A workspace: one home, its settings and stores. The public Python API, and what the CLI calls.

It is the composition root: it builds the stores and the services (``ctx.services``) and keeps the
methods callers know as one-line delegations to them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ctx.assemble.assembler import AssembledContext, Assembler, AssembleRequest
from ctx.models import Hit
from ctx.observe.replay import RerunReport
from ctx.observe.traces import TraceRecord, TraceStore
from ctx.pipeline import IngestSummary, Processor, Progress
from ctx.retrieve.hybrid import Filters, Retriever
from ctx.services.assembly import AssemblyService
from ctx.services.ingest import IngestService
from ctx.services.operations import OperationsService
from ctx.services.stores import Stores
from ctx.settings import Settings, find_config, load_settings
from ctx.store.catalog import Catalog
from ctx.store.jobs import JobStore
from ctx.store.writer import InlineWriter, ThreadWriter
from ctx.versions.ports import History
from ctx.versions.store import Version, VersionStore


class Workspace:
    """One home: ``stores`` and the ``ingestion``, ``assembly`` and ``operations`` services over them."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None,
                 writer: InlineWriter | ThreadWriter | None = None) -> None:
        self.stores = Stores(settings, env, writer)
        self.ingestion = IngestService(self.stores)
        self.assembly = AssemblyService(self.stores)
        self.operations = OperationsService(self.stores, self.ingestion, self.assembly)

    @classmethod
    def open(cls, config: str | Path | None = None, env: Mapping[str, str] | None = None) -> Workspace:
        env = dict(os.environ if env is None else env)
        return cls(load_settings(find_config(config, env), env), env)

    def close(self) -> None:
        self.assembly.close()
        self.stores.close()

    # --- stores ------------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.stores.settings

    @property
    def env(self) -> dict[str, str]:
        return self.stores.env

    @property
    def home(self) -> Path:
        return self.stores.home

    @property
    def write(self) -> InlineWriter | ThreadWriter:
        return self.stores.write

    @property
    def origin(self) -> str:
        return self.stores.origin

    @origin.setter
    def origin(self, value: str) -> None:  # the daemon says "daemon"; traces record who served them
        self.stores.origin = value

    @property
    def catalog(self) -> Catalog:
        return self.stores.catalog

    @property
    def embedder(self) -> Any:
        return self.stores.embedder

    @property
    def model_dir(self) -> Path:
        return self.stores.model_dir

    @property
    def vectors(self) -> Any:
        return self.stores.vectors

    @property
    def traces(self) -> TraceStore:
        return self.stores.traces

    @property
    def jobs(self) -> JobStore:
        return self.stores.jobs

    @property
    def versions(self) -> VersionStore:
        return self.stores.versions

    # --- ingest ------------------------------------------------------------------------------------

    def check_sources(self, names: list[str] | None) -> list[str]:
        return self.ingestion.check_sources(names)

    def submit(self, names: list[str] | None = None, trigger: str = "cli") -> str:
        return self.ingestion.submit(names, trigger)

    def ingest(self, names: list[str] | None = None, progress: Progress | None = None) -> IngestSummary:
        return self.ingestion.ingest(names, progress)

    def push_events(self, source: str, events: list[Any]) -> tuple[str, int, int]:
        return self.ingestion.push_events(source, events)

    def run_job(self, job_id: str, progress: Progress | None = None,
                source_lock: Callable[[str], AbstractContextManager[Any]] | None = None,
                should_stop: Callable[[], bool] | None = None) -> IngestSummary:
        return self.ingestion.run_job(job_id, progress, source_lock, should_stop)

    def processor(self) -> Processor:
        return self.ingestion.processor()

    # --- retrieval, assembly and version routing -----------------------------------------------------

    @property
    def retriever(self) -> Retriever:
        return self.assembly.retriever

    @property
    def assembler(self) -> Assembler:
        return self.assembly.assembler

    def describe_assembly(self) -> dict[str, Any] | None:
        """The assembler's state, or None while no request has built it (the metrics endpoint's gauge)."""
        return self.assembly.describe()

    def filters(self, sources: list[str] | None = None, tenant: str | None = None, path: str | None = None) -> Filters:
        return self.assembly.filters(sources, tenant, path)

    def search(self, query: str, filters: Filters | None = None, limit: int | None = None) -> list[Hit]:
        return self.assembly.search(query, filters, limit)

    def request(self, query: str, budget: int | None = None, model: str | None = None, fmt: str | None = None,
                filters: Filters | None = None, top_k: int | None = None, recipe: str | None = None,
                user: str | None = None, session: str | None = None, params: Mapping[str, str] | None = None,
                deadline: float | None = None, as_of: str | None = None) -> AssembleRequest:
        return self.assembly.request(query, budget, model, fmt, filters, top_k, recipe, user, session, params,
                                     deadline, as_of)

    def assemble(self, request: AssembleRequest, replay_of: str | None = None,
                 version: str | None = None) -> AssembledContext:
        return self.assembly.assemble(request, replay_of, version)

    def replay(self, trace_id: str) -> TraceRecord:
        return self.assembly.replay(trace_id)

    def rerun(self, trace_id: str, version: str | None = None) -> tuple[AssembledContext, RerunReport]:
        return self.assembly.rerun(trace_id, version)

    def current_version(self, recipe: str | None = None) -> Version:
        return self.assembly.current_version(recipe)

    def resolve_version(self, ref: str, recipe: str | None = None) -> Version:
        return self.assembly.resolve_version(ref, recipe)

    def for_version(self, version: Version) -> AssemblyService:
        return self.assembly.for_version(version)

    def index_home(self, version: Version) -> Path:
        return self.assembly.index_home(version)

    def open_index(self, settings: Settings) -> IngestService:
        return self.assembly.open_index(settings)

    def at(self, as_of: str, history: History | None = None) -> AssemblyService:
        return self.assembly.at(as_of, history)

    def evaluate(self, queries: list[Any], k: int = 10, version: str | None = None,
                 compare: list[str] | None = None, recipe: str | None = None, name: str = "",
                 progress: Callable[[int, int], None] | None = None,
                 note: Callable[[str], None] | None = None) -> dict[str, Any]:
        return self.assembly.evaluate(queries, k, version, compare, recipe, name, progress, note)

    # --- operations --------------------------------------------------------------------------------

    def sources(self) -> list[dict[str, Any]]:
        return self.operations.sources()

    def status(self) -> dict[str, Any]:
        return self.operations.status()

    def providers(self) -> dict[str, Any]:
        return self.operations.providers()

    def quarantined(self, source: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self.operations.quarantined(source, limit)

    def cost(self, since: str = "7d") -> dict[str, Any]:
        return self.operations.cost(since)

    def slo(self) -> dict[str, Any]:
        return self.operations.slo()

    def experiments(self) -> list[dict[str, Any]]:
        return self.operations.experiments()

    def ab_report(self, name: str, since: str = "30d") -> dict[str, Any]:
        return self.operations.ab_report(name, since)

    def audit(self, window: str = "7d", sample: int = 20) -> dict[str, Any]:
        return self.operations.audit(window, sample)

    @property
    def alerting(self) -> Any:
        return self.operations.alerting

    def alerts(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        return self.operations.alerts(limit, active)

    def check_alerts(self, refresh: Callable[[str], str] | None = None) -> dict[str, Any]:
        return self.operations.check_alerts(refresh)

    def _alert_refresh(self, source: str) -> str:  # kept for callers of the old private name
        return self.operations.alert_refresh(source)

    def alert_counts(self) -> dict[str, int]:
        return self.operations.alert_counts()

    def doctor(self, repair: bool = False) -> Any:
        return self.operations.doctor(repair)

    def archive(self) -> dict[str, Any]:
        return self.operations.archive()


def open_workspace(config: str | Path | None = None) -> Workspace:
    """Open the workspace for ``config`` (or ./ctx.toml, or defaults), honouring CTX_HOME."""
    return Workspace.open(config)
