"""The assembly service: search, build and assemble requests, replay and rerun them, and route each to the
version that serves it (the one in force, a label, an experiment's variant, or the data as of a past time)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctx import plugins
from ctx.assemble.assembler import AssembledContext, Assembler, AssembleRequest
from ctx.errors import NotFound, UserError
from ctx.models import Hit
from ctx.observe.replay import RerunReport, compare
from ctx.observe.traces import TraceRecord, TraceStore
from ctx.pipeline import Processor
from ctx.retrieve.fusion import Fusion
from ctx.retrieve.hybrid import Filters, Retriever
from ctx.services.ingest import IngestService, processor_for
from ctx.services.stores import NO_SOURCES, Stores
from ctx.services.wiring import build_assembler
from ctx.settings import Settings
from ctx.store.catalog import Catalog
from ctx.store.writer import InlineWriter, ThreadWriter
from ctx.versions.asof import parse_as_of, snapshot
from ctx.versions.manage import index_settings, rebase_past
from ctx.versions.ports import History
from ctx.versions.store import Version, VersionStore, settings_for, version_config

if TYPE_CHECKING:
    from ctx.process.embedding import CachedEmbedder
    from ctx.settings.pipeline import RetrievalSettings
    from ctx.store.vectors import VectorStore

log = logging.getLogger(__name__)


class AssemblyService:
    """Requests in, traced contexts out, each from the version (and data) that should serve it.

    A variant (another version, or a snapshot for ``--as-of``) is an AssemblyService over Stores that
    share this one's trace and version stores (and its catalog, embedder and vectors when it runs on the
    live index); it is opened once, kept, and closed with this service.
    """

    def __init__(self, stores: Stores, own_stores: bool = False) -> None:
        self.stores = stores
        self._own_stores = own_stores  # a variant's stores are its own; the root's belong to the workspace
        self._current: dict[str, Version] = {}  # recipe → its version under the settings in force
        self._variants: dict[str, AssemblyService] = {}  # version id (or asof-HASH) → the service running it

    # --- what the versions Protocols ask for (ctx.versions.ports) ------------------------------------

    @property
    def settings(self) -> Settings:
        return self.stores.settings

    @property
    def home(self) -> Path:
        return self.stores.home

    @property
    def write(self) -> InlineWriter | ThreadWriter:
        return self.stores.write

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
    def traces(self) -> TraceStore:
        return self.stores.traces

    @property
    def versions(self) -> VersionStore:
        return self.stores.versions

    def processor(self) -> Processor:
        return processor_for(self.settings)

    def open_index(self, settings: Settings) -> IngestService:
        """An ingest over a side index's own home (``ctx versions build``); closing it closes its stores."""
        return IngestService(Stores(settings, self.stores.env))

    # --- retrieval and assembly --------------------------------------------------------------------

    @cached_property
    def retriever(self) -> Retriever:
        return retriever_for(self.catalog, self.stores.vectors, self.embedder, self.settings.retrieval)

    @cached_property
    def assembler(self) -> Assembler:
        return build_assembler(self.stores, lambda: self.retriever)

    def describe(self) -> dict[str, Any] | None:
        """The assembler's state (breakers, caches), or None while no request has built it."""
        return self.assembler.describe() if "assembler" in self.__dict__ else None

    def filters(self, sources: list[str] | None = None, tenant: str | None = None, path: str | None = None) -> Filters:
        unknown = [s for s in sources or [] if s not in self.settings.sources]
        if unknown:
            raise UserError(f"unknown source {unknown[0]!r} (configured: {', '.join(self.settings.sources) or 'none'})")
        return Filters(sources or None, tenant or None, path or None)

    def search(self, query: str, filters: Filters | None = None, limit: int | None = None) -> list[Hit]:
        if not query.strip():
            raise UserError("the query is empty")
        if self.stores.serves_nothing(["retrieval"]):  # an empty answer would hide the missing config
            raise UserError(NO_SOURCES)
        return self.retriever.search(query, filters or Filters(), limit or self.settings.retrieval.top_k).hits

    def request(self, query: str, budget: int | None = None, model: str | None = None, fmt: str | None = None,
                filters: Filters | None = None, top_k: int | None = None, recipe: str | None = None,
                user: str | None = None, session: str | None = None, params: Mapping[str, str] | None = None,
                deadline: float | None = None, as_of: str | None = None) -> AssembleRequest:
        from ctx.versions.experiments import request_defaults

        recipe_name, recipe_settings = self.settings.recipe(recipe)
        defaults = request_defaults(self.settings, recipe_name)  # one place: a version's request is rebased on it
        fmt = fmt or defaults["format"]
        if fmt not in plugins.renderers():
            raise UserError(f"unknown format {fmt!r} (known: {', '.join(sorted(plugins.renderers()))})")
        if budget is not None and budget < 0:
            raise UserError("--budget must be 0 or more")
        if not query.strip():
            raise UserError("the query is empty")
        # Refused only when the config gives ctx nothing at all to read from (no source, no provider but
        # retrieval, nothing ingested): then an empty context that looks like a success hides the mistake.
        if as_of is None and self.stores.serves_nothing([*recipe_settings.providers, *self.settings.providers]):
            raise UserError(NO_SOURCES)
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
        trace.version, trace.origin = version.id, self.stores.origin
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
            request = rebase_past(self, request, old.version)
        context = self.assemble(request, replay_of=old.id, version=version)
        return context, compare(old, self.traces.get(context.trace_id))

    def evaluate(self, queries: list[Any], k: int = 10, version: str | None = None,
                 compare: list[str] | None = None, recipe: str | None = None, name: str = "",
                 progress: Callable[[int, int], None] | None = None,
                 note: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Offline evaluation of labeled queries (``ctx.versions.evalset``) with ``version`` (default: the
        one in force), or two versions side by side (``compare``). No trace is stored; the run is."""
        from ctx.versions.eval import evaluate

        return evaluate(self, queries, k, version, compare, recipe, name, progress, note)

    # --- version routing ---------------------------------------------------------------------------

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

    def for_version(self, version: Version) -> AssemblyService:
        """The service that runs ``version`` over this home's data (itself for the version in force).

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
                settings = index_settings(self, version)  # its own home, the home's unpacked model
            shared = ["traces", "versions", *(["catalog", "embedder", "vectors"] if same_index else [])]
            found = self._variants[version.id] = AssemblyService(self.stores.sharing(settings, shared), True)
        if found.home != self.home and not (found.home / "catalog.db").exists():
            raise UserError(f"version {version.id} chunks or embeds differently from the live index: build its "
                            f"index first (ctx versions build {version.id})")
        return found

    def index_home(self, version: Version) -> Path:
        """Where the index of a version that chunks or embeds differently from the live one lives."""
        return self.home / "versions" / f"index-{version.index}"

    def at(self, as_of: str, history: History | None = None) -> AssemblyService:
        """This service over the data as it was at ``as_of`` (a UTC stamp; see ``ctx.versions.asof``), read
        from ``history``'s catalog and archive (default: this service's)."""
        def open_at(directory: Path) -> AssemblyService:
            # The snapshot's own catalog and vectors open lazily from its home; the rest is this service's.
            settings = self.settings.model_copy(update={"home": directory})
            return AssemblyService(self.stores.sharing(settings, ["traces", "versions", "embedder"]), True)

        return snapshot(self, as_of, history or self, self._variants, open_at)

    def close(self) -> None:
        """Close the variants, the assembler (its loop and providers), and the stores if they are its own."""
        for variant in self._variants.values():
            variant.close()
        if "assembler" in self.__dict__:
            self.assembler.close()
        if self._own_stores:
            self.stores.close()


def retriever_for(catalog: Catalog, vectors: VectorStore | None, embedder: CachedEmbedder | None,
                  r: RetrievalSettings) -> Retriever:
    """The retriever of a [retrieval] table. ``max_term_share`` is read by nothing: it is deprecated (the
    lexical leg is exact BM25 whatever it says) and stays a setting only so old ctx.toml files load."""
    return Retriever(catalog, vectors, embedder, r.candidates, Fusion(r.fusion, r.lexical_weight, r.rrf_k,
                                                                     r.by_document))
