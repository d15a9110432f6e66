"""A workspace: one home, its settings and stores. The public Python API, and what the CLI calls."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from ctx import plugins
from ctx.assemble.assembler import AssembledContext, Assembler, AssembleRequest, AssemblyOptions
from ctx.errors import NotFound, UserError
from ctx.ingest.source import FetchContext
from ctx.models import Hit
from ctx.observe.replay import RerunReport, compare
from ctx.observe.traces import TraceRecord, TraceStore, new_trace_id
from ctx.pipeline import IngestSummary, JobRunner, Processor, Progress, SourceSummary
from ctx.process.tokens import canonical_encoding as get_encoding_name
from ctx.retrieve.hybrid import Filters, Retriever
from ctx.settings import Settings, find_config, load_settings
from ctx.store.catalog import Catalog
from ctx.store.jobs import JobStore
from ctx.store.writer import InlineWriter, ThreadWriter
from ctx.versions.asof import parse_as_of
from ctx.versions.store import Version, VersionStore, settings_for, version_config

# The shape of what L2 holds (pickled Entry, Block, Assembly): bump it when those change, so a home
# never unpickles results written by another version of ctx.
CACHE_FORMAT = 1

log = logging.getLogger(__name__)


class Workspace:
    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None,
                 writer: InlineWriter | ThreadWriter | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        assert settings.home is not None
        self.home: Path = settings.home
        # Every SQLite write goes through this: inline for the CLI, one thread for the daemon.
        self.write = writer or InlineWriter()
        # Set when a job a dead process had started is found: the next job checks vectors id by id.
        self._crashed = False
        self.origin = "cli"  # who serves this workspace's requests; the daemon says "daemon" (traces record it)
        self._current: dict[str, Version] = {}  # recipe → its version under the settings in force
        self._variants: dict[str, Workspace] = {}  # version id → a workspace running that version

    @classmethod
    def open(cls, config: str | Path | None = None, env: Mapping[str, str] | None = None) -> Workspace:
        env = dict(os.environ if env is None else env)
        return cls(load_settings(find_config(config, env), env), env)

    # --- stores, opened on first use so light commands stay light ---------------------------------

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.home / "catalog.db")

    @cached_property
    def embedder(self) -> Any:
        inner = plugins.embedders()[self.settings.embedding.embedder](self.model_dir)  # name checked by settings
        if inner.dimension == 0:
            return None
        from ctx.process.embedding import CachedEmbedder, cache_dir

        return CachedEmbedder(inner, cache_dir(self.home), self.settings.embedding.batch_size)

    @property
    def model_dir(self) -> Path:
        configured = self.settings.embedding.model_dir
        return Path(configured) if configured else self.home / "models"

    @cached_property
    def vectors(self) -> Any:
        if self.embedder is None:
            return None
        from ctx.store.vectors import ChromaVectors

        return ChromaVectors(self.home / "vectors", self.embedder.model_id)

    @cached_property
    def traces(self) -> TraceStore:
        return TraceStore(self.catalog)

    def close(self) -> None:
        for variant in self._variants.values():
            variant.close()
        if "assembler" in self.__dict__:
            self.assembler.close()
        if "embedder" in self.__dict__ and self.embedder is not None:
            self.embedder.close()
        if "catalog" in self.__dict__:
            self.catalog.close()

    # --- ingest: jobs through the durable queue -----------------------------------------------------

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.catalog)

    def check_sources(self, names: list[str] | None) -> list[str]:
        configured = self.settings.sources
        if not configured:
            raise UserError("no sources configured: add a [sources.NAME] table to ctx.toml (see ctx.toml.example)")
        unknown = [n for n in names or [] if n not in configured]
        if unknown:
            raise UserError(f"unknown source {unknown[0]!r} (configured: {', '.join(configured)})")
        return list(dict.fromkeys(names)) if names else list(configured)

    def submit(self, names: list[str] | None = None, trigger: str = "cli") -> str:
        """Queue an ingest job for ``names`` (default: every source); returns its id."""
        chosen = self.check_sources(names)
        job_id = new_trace_id()
        self.write(lambda: self.jobs.create(job_id, "ingest", trigger, chosen, self._model_id()))
        return job_id

    def ingest(self, names: list[str] | None = None, progress: Progress | None = None) -> IngestSummary:
        """Ingest in this process: queue a job and run it here, now."""
        resume, crashed = self.write(lambda: self.jobs.abandon_dead(keep_kinds=("events",)))
        self._crashed |= crashed
        for job_id in resume:
            self.run_job(job_id)  # pushed events exist only in the queue: finish them first
        return self.run_job(self.submit(names), progress)

    def push_events(self, source: str, events: list[Any]) -> tuple[str, int, int]:
        """Queue pushed records (e.g. user session events) for an append source.

        Returns (job id, events taken, of which quarantined): a bad event is kept in quarantine, not lost.
        """
        cfg = self.settings.sources.get(source)
        if cfg is None:
            raise NotFound(f"unknown source {source!r} (configured: {', '.join(self.settings.sources) or 'none'})")
        kind = plugins.source_kinds()[cfg.kind]
        if cfg.mode != "append" or not hasattr(kind, "parse"):
            raise UserError(f"source {source!r} does not take pushed events (it needs mode = \"append\" and a kind "
                            "that parses events, such as events or jsonl)")
        if not events:
            raise UserError("no events given")
        from ctx.ingest.queue import encode
        from ctx.models import Document
        from ctx.pipeline import check

        job_id = new_trace_id()
        # Validated here, as a fetch would: the queue holds documents, and a bad event is quarantined at once.
        checked = [check(kind.parse(cfg, event, f"event:{job_id}:{i}"), source, cfg) for i, event in enumerate(events)]
        items = [encode(d) for d in checked if isinstance(d, Document)]
        rejected = [r for r in checked if not isinstance(r, Document)]

        def tx() -> None:
            with self.catalog.db.atomic():
                self.jobs.create(job_id, "events", "push", [source], self._model_id())
                self.jobs.enqueue(job_id, source, items)
                for key, reason, raw in rejected:
                    self.catalog.quarantine(job_id, source, key, reason, raw)
                self.jobs.set_source(job_id, source, fetched=True,
                                     summary=asdict(SourceSummary(source, quarantined=len(rejected))))

        self.write(tx)
        return job_id, len(checked), len(rejected)

    def run_job(self, job_id: str, progress: Progress | None = None,
                source_lock: Callable[[str], AbstractContextManager[Any]] | None = None,
                should_stop: Callable[[], bool] | None = None) -> IngestSummary:
        """Run (or resume) a queued job to the end; safe to call again after a crash.

        ``source_lock`` keeps two jobs off one source at a time; ``should_stop`` ends the run between
        two batches (raising :class:`ctx.pipeline.Stopped`) when the process shuts down.
        """
        job = self.jobs.get(job_id)
        self._crashed |= job["status"] == "running"  # started by a process that died (or stopped): resumed
        processor = self.processor()
        summary = IngestSummary(job_id, self._model_id(), embedding_price=self.settings.pricing.embedding)
        started = time.perf_counter()
        embed_before = self.embedder.seconds if self.embedder else 0.0
        self.write(lambda: self.jobs.start(job_id))
        runner = JobRunner(self.catalog, self.vectors, self.embedder, processor, self.write, progress, should_stop)
        lock = source_lock or (lambda name: nullcontext())
        kinds = plugins.source_kinds()
        for name in job["sources"]:
            cfg = self.settings.sources.get(name)
            if cfg is None:  # removed from ctx.toml since the job was queued
                summary.sources.append(SourceSummary(name, error="no longer configured"))
                continue
            with lock(name):
                summary.sources.append(runner.run_source(job_id, name, kinds[cfg.kind], cfg,
                                                         FetchContext(name, self.env)))
        summary.seconds = time.perf_counter() - started
        summary.embed_seconds = (self.embedder.seconds if self.embedder else 0.0) - embed_before
        if self.vectors is not None and (self._crashed or self.vectors.count() != self.catalog.chunk_count()):
            # An earlier run died between its SQLite commit and its Chroma write: heal it now, from the truth.
            # Sizes alone miss replaced documents (as many orphan vectors as missing ones), so after a crash
            # the ids are compared.
            self._crashed = False
            repaired = self.doctor(repair=True).repaired
            if repaired:
                summary.warnings.append(
                    "repaired drift left by an interrupted run: "
                    + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in repaired.items())
                )
        if self.settings.archive.enabled:
            try:
                self.archive()
            except (OSError, sqlite3.Error) as exc:  # the job's data is written: a failed pass only waits
                log.warning("archive pass after job %s failed: %s", job_id, exc)
                summary.warnings.append(f"archiving superseded versions failed: {exc}")
        error = "; ".join(s.error for s in summary.sources if s.error) or None
        self.write(lambda: self.jobs.finish(job_id, "ok" if summary.ok else "partial", summary.to_dict(), error))
        return summary

    def processor(self) -> Processor:
        """What turns documents into chunks and summaries under these settings (ingest and --as-of snapshots)."""
        from ctx.process.chunking import Chunker

        chunking = self.settings.chunking
        return Processor(Chunker(chunking.max_tokens, chunking.overlap_tokens, chunking.encoding),
                         self._summarizer(), chunking.encoding, self.settings.fingerprint("chunking", "enrichment"))

    def archive(self) -> dict[str, Any]:
        """Move versions superseded longer ago than ``[archive] keep`` to the cold tier (HOME/archive/)."""
        from ctx.store.archive import run_pass

        return run_pass(self.catalog, self.home, self.settings.archive.keep, self.write).to_dict()

    def at(self, as_of: str, history: Workspace | None = None) -> Workspace:
        """This workspace over the data as it was at ``as_of`` (a UTC stamp; see ``ctx.versions.asof``),
        read from ``history``'s catalog and archive (default: this workspace's)."""
        from ctx.versions.asof import snapshot

        return snapshot(self, as_of, history or self)

    def _model_id(self) -> str:
        return self.embedder.model_id if self.embedder else "none"

    def _summarizer(self) -> Any:
        return plugins.summarizers()[self.settings.enrichment.summarizer]  # name checked by settings

    # --- retrieval and assembly ------------------------------------------------------------------

    @cached_property
    def retriever(self) -> Retriever:
        r = self.settings.retrieval
        return Retriever(self.catalog, self.vectors, self.embedder, r.candidates, r.rrf_k, r.max_term_share)

    @cached_property
    def assembler(self) -> Assembler:
        from ctx.assemble.breaker import Breaker
        from ctx.assemble.loop import LoopThread
        from ctx.assemble.provider import Services
        from ctx.assemble.stampede import CacheFront

        settings = self.settings
        a, c = settings.assembly, settings.cache
        loop = LoopThread()
        services = Services(self.env, settings.base_dir, loop.run_sync, lambda: self.retriever, lambda: self.catalog,
                            {name: s.criticality.value for name, s in settings.sources.items()})
        kinds = plugins.provider_kinds()
        names = {*settings.providers, *(p for r in settings.recipes.values() for p in r.providers), "retrieval"}
        providers = {}
        for name in sorted(names):
            cfg = settings.provider(name)
            providers[name] = kinds[cfg.kind].create(name, cfg, services)
        breakers = {n: Breaker(p.settings.breaker.failures, p.settings.breaker.window, p.settings.breaker.cooldown)
                    for n, p in providers.items()}
        cache = self._cache_tiers()
        fronts = [CacheFront(cache, level, c.xfetch_beta, c.hot_hits, c.refresh_ahead) for level in ("provider",
                                                                                                  "context")]
        for front in fronts:
            front.bind(loop.loop)
            loop.spawn(front.refresher)
        fingerprint = settings.fingerprint("chunking", "embedding", "retrieval", "assembly", "sources", "providers",
                                           "recipes")
        options = AssemblyOptions(a.default_encoding, a.min_truncated_tokens, fingerprint,
                                  get_encoding_name(settings.chunking.encoding), a.deadline, c.context_ttl,
                                  settings.pricing)
        return Assembler(providers, breakers, settings.recipe, plugins.renderers(), options, loop, fronts[0], fronts[1],
                         self.catalog.data_versions, a.max_parallel)

    def _cache_tiers(self) -> Any:
        from ctx.store.cache import CacheTier, DiskTier, MemoryTier, TieredCache

        c = self.settings.cache
        if not c.enabled:
            return None
        tiers: list[CacheTier] = []
        if c.memory_items:
            tiers.append(MemoryTier(c.memory_items))
        if c.disk:
            tiers.append(DiskTier(self.home / "cache" / f"results-v{CACHE_FORMAT}", c.disk_size_mb))
        return TieredCache(tiers) if tiers else None

    def filters(self, sources: list[str] | None = None, tenant: str | None = None, path: str | None = None) -> Filters:
        unknown = [s for s in sources or [] if s not in self.settings.sources]
        if unknown:
            raise UserError(f"unknown source {unknown[0]!r} (configured: {', '.join(self.settings.sources) or 'none'})")
        return Filters(sources or None, tenant or None, path or None)

    def search(self, query: str, filters: Filters | None = None, limit: int | None = None) -> list[Hit]:
        if not query.strip():
            raise UserError("the query is empty")
        return self.retriever.search(query, filters or Filters(), limit or self.settings.retrieval.top_k).hits

    def request(self, query: str, budget: int | None = None, model: str | None = None, fmt: str | None = None,
                filters: Filters | None = None, top_k: int | None = None, recipe: str | None = None,
                user: str | None = None, session: str | None = None, params: Mapping[str, str] | None = None,
                deadline: float | None = None, as_of: str | None = None) -> AssembleRequest:
        from ctx.versions.experiments import request_defaults

        recipe_name, _ = self.settings.recipe(recipe)
        defaults = request_defaults(self.settings, recipe_name)  # one place: a version's request is rebased on it
        fmt = fmt or defaults["format"]
        if fmt not in plugins.renderers():
            raise UserError(f"unknown format {fmt!r} (known: {', '.join(sorted(plugins.renderers()))})")
        if budget is not None and budget < 0:
            raise UserError("--budget must be 0 or more")
        if not query.strip():
            raise UserError("the query is empty")
        return AssembleRequest(query, defaults["budget"] if budget is None else budget, model or defaults["model"],
                               fmt, filters or Filters(), top_k or defaults["top_k"], recipe_name, user or None,
                               session or None, tuple(sorted((params or {}).items())), deadline,
                               parse_as_of(as_of) if as_of else None)

    def assemble(self, request: AssembleRequest, replay_of: str | None = None,
                 version: str | None = None) -> AssembledContext:
        """Assemble and trace one request, with ``version`` (an id, prefix or label of the request's recipe)
        when given, else with the variant an experiment assigns, else with the settings in force."""
        from ctx.assemble.assembler import CriticalMissing

        chosen, assignment = self._choose(request, version)
        target = self.for_version(chosen)
        if target is not self:  # the request was built with the defaults in force: give it the version's
            from ctx.versions.experiments import rebase

            request = rebase(request, self.settings, target.settings)
        if request.as_of is not None:  # the data as it was then (read from this home's catalog and archive)
            target = target.at(request.as_of, self)
        try:
            context, trace = target.assembler.assemble(request, replay_of)
        except CriticalMissing as exc:
            if exc.trace is not None:  # the failure is traced too: availability is measured from traces
                failed = self._stamp(exc.trace, chosen, assignment)
                self.write(lambda: self.traces.write(failed))
            raise
        self._stamp(trace, chosen, assignment)
        context.version, context.experiment, context.variant = trace.version, trace.experiment, trace.variant
        self.write(lambda: self.traces.write(trace))  # stored before it is returned: replayable at once
        return context

    def _choose(self, request: AssembleRequest, version: str | None) -> tuple[Version, Any]:
        from ctx.versions.experiments import assign

        if version is not None:
            return self.resolve_version(version, request.recipe), None
        assignment = assign(self.settings.experiments, request) if self.settings.experiments else None
        if assignment is not None:
            try:
                chosen = self.resolve_version(assignment.ref, request.recipe)
                self.for_version(chosen)  # its index may not be built yet (it raises then; cached after)
                return chosen, assignment
            except (NotFound, UserError) as exc:
                # A variant whose label is not set (yet), or whose index is not built, must not fail the
                # traffic it would get: those requests get the version in force and are not counted.
                log.warning("experiment %s: variant %s: %s; serving the current version",
                            assignment.experiment, assignment.variant, exc)
        return self.current_version(request.recipe), None

    def _stamp(self, trace: TraceRecord, version: Version, assignment: Any) -> TraceRecord:
        trace.version, trace.origin = version.id, self.origin
        if assignment is not None:
            trace.experiment, trace.variant = assignment.experiment, assignment.variant
        return trace

    def replay(self, trace_id: str) -> TraceRecord:
        return self.traces.get(trace_id)

    def rerun(self, trace_id: str, version: str | None = None) -> tuple[AssembledContext, RerunReport]:
        """Re-assemble a past request against today's data, with the settings in force (or ``version``)."""
        old = self.traces.get(trace_id)
        request = AssembleRequest.from_dict(old.request)
        if old.version is not None:  # its defaults were its version's: the rerun gets those in force
            from ctx.versions.manage import rebase_past

            request = rebase_past(self, request, old.version)
        context = self.assemble(request, replay_of=old.id, version=version)
        return context, compare(old, self.traces.get(context.trace_id))

    # --- versions -----------------------------------------------------------------------------------

    @cached_property
    def versions(self) -> VersionStore:
        return VersionStore(self.catalog)

    def current_version(self, recipe: str | None = None) -> Version:
        """The version of ``recipe`` under the settings in force, stored on first use."""
        name, _ = self.settings.recipe(recipe)
        found = self._current.get(name)
        if found is None:
            config = version_config(self.settings, name)
            found = self._current[name] = self.write(lambda: self.versions.register(name, config))
        return found

    def resolve_version(self, ref: str, recipe: str | None = None) -> Version:
        """A stored version by id, id prefix or label; with ``recipe``, it must be one of that recipe's."""
        if recipe is not None:
            recipe = self.settings.recipe(recipe)[0]
            self.current_version(recipe)  # so the settings in force can be named by their id too
        version = self.versions.resolve(ref, recipe)
        if recipe is not None and version.recipe != recipe:
            raise UserError(f"version {version.id} is of recipe {version.recipe!r}, not {recipe!r}")
        return version

    def for_version(self, version: Version) -> Workspace:
        """A workspace that runs ``version`` over this home's data (itself for the version in force).

        It shares the catalog, vectors and trace store when the version chunks and embeds as the live
        index does; otherwise its index lives apart, in versions/index-ID/ (built by ``ctx versions build``).
        """
        current = self.current_version(version.recipe)
        if version.id == current.id:
            return self
        found = self._variants.get(version.id)
        if found is None:
            settings = settings_for(self.settings, version.config)
            same_index = version.index == current.index
            if not same_index:
                from ctx.versions.manage import index_settings

                settings = index_settings(self, version)  # its own home, the home's unpacked model
            found = Workspace(settings, self.env, self.write)
            shared: dict[str, Any] = {"traces": self.traces, "versions": self.versions}
            if same_index:
                shared.update(catalog=self.catalog, embedder=self.embedder, vectors=self.vectors)
            found.__dict__.update(shared)
            found.origin = self.origin
            self._variants[version.id] = found
        if found.home != self.home and not (found.home / "catalog.db").exists():
            raise UserError(f"version {version.id} chunks or embeds differently from the live index: build its "
                            f"index first (ctx versions build {version.id})")
        return found

    def index_home(self, version: Version) -> Path:
        """Where the index of a version that chunks or embeds differently from the live one lives."""
        return self.home / "versions" / f"index-{version.index}"

    def evaluate(self, queries: list[Any], k: int = 10, version: str | None = None,
                 compare: list[str] | None = None, recipe: str | None = None, name: str = "",
                 progress: Callable[[int, int], None] | None = None,
                 note: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Offline evaluation of labeled queries (``ctx.versions.evalset``) with ``version`` (default: the
        one in force), or two versions side by side (``compare``). No trace is stored; the run is."""
        from ctx.versions.eval import evaluate

        return evaluate(self, queries, k, version, compare, recipe, name, progress, note)

    # --- state -------------------------------------------------------------------------------------

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
        vectors = self.vectors.count() if self.vectors is not None else None
        return {
            "home": str(self.home), "config": str(self.settings.config_path) if self.settings.config_path else None,
            "embedder": self.settings.embedding.embedder, **counts, "vectors": vectors,
            "sources": self.sources(), "plugins": plugins.plugin_names(), **self.providers(),
            "assembly": self.assembler.describe() if "assembler" in self.__dict__ else None,
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
            self.filters([source])  # the same one-line error for an unknown source as everywhere else
        return self.catalog.quarantined(source, limit)

    def cost(self, since: str = "7d") -> dict[str, Any]:
        """The cost ledger of the last ``since`` (traces and ingest runs)."""
        from ctx.observe.cost import cost_report

        return cost_report(self.catalog, since)

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
            return self.resolve_version(ref, recipe).id
        except (NotFound, UserError):  # a label not set yet: the report shows the variant without a version
            return None

    def slo(self) -> dict[str, Any]:
        """Every objective of ``[slo]`` over 1h, 1d and 7d, from the traces and the sync ledger."""
        from ctx.observe.slo import slo_report

        return slo_report(self.catalog, self.settings)

    def audit(self, window: str = "7d", sample: int = 20) -> dict[str, Any]:
        """The maturity-model audit (``ctx.audit``): each level's checks over the last ``window``, with
        ``sample`` recent traces replayed and doctor run (no repair) as live probes."""
        from ctx.audit.report import audit

        return audit(self, window, sample)

    @cached_property
    def alerting(self) -> Any:
        """The alert engine (``ctx.observe.alerts``); it keeps complete trace buckets between evaluations."""
        from ctx.observe.alerts import AlertEngine

        return AlertEngine(self.catalog, self.settings, self.env, self.write)

    def alerts(self, limit: int = 50, active: bool = False) -> list[dict[str, Any]]:
        """Alerts with their notifications: firing ones first, then (unless ``active``) resolved ones."""
        from ctx.observe.alert_store import AlertStore

        return AlertStore(self.catalog).recent(limit, active)

    def check_alerts(self, refresh: Callable[[str], str] | None = None) -> dict[str, Any]:
        """Evaluate every alert rule now and take the steps that are due; what changed.

        A ``refresh_sources`` action ingests the source in this process, unless ``refresh`` (the
        daemon's job lanes) does it instead.
        """
        return self.alerting.check(refresh or self._alert_refresh)  # type: ignore[no-any-return]

    def _alert_refresh(self, source: str) -> str:
        summary = self.run_job(self.submit([source], "alert"))
        return f"ingested in this process (job {summary.run_id}: {'ok' if summary.ok else 'failed'})"

    def alert_counts(self) -> dict[str, int]:
        """Firing alerts per severity."""
        from ctx.observe.alert_store import AlertStore

        return AlertStore(self.catalog).active_counts()

    def doctor(self, repair: bool = False) -> Any:
        from ctx.store.doctor import diagnose

        if repair:
            return self.write(lambda: diagnose(self.catalog, self.vectors, self.embedder, True))
        return diagnose(self.catalog, self.vectors, self.embedder, False)


def open_workspace(config: str | Path | None = None) -> Workspace:
    """Open the workspace for ``config`` (or ./ctx.toml, or defaults), honouring CTX_HOME."""
    return Workspace.open(config)
