"""What ``versions/`` needs from the core, as narrow Protocols: the services satisfy them, and so does a Workspace.

They live here, not in ``ctx.services``, so that ``versions/`` imports nothing above it: the services
import ``versions/``, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ctx.assemble.assembler import Assembler
    from ctx.assemble.context import AssembleRequest
    from ctx.pipeline import IngestSummary, Processor, Progress
    from ctx.settings import Settings
    from ctx.store.catalog import Catalog
    from ctx.versions.store import Version, VersionStore

T = TypeVar("T")


class Writer(Protocol):
    """The home's single writer (``ctx.store.writer``): runs ``fn`` where SQLite writes happen."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


class Registry(Protocol):
    """The stored versions of a home and the one in force per recipe (list, show, diff, label, roll back)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def versions(self) -> VersionStore: ...
    @property
    def write(self) -> Writer: ...
    def current_version(self, recipe: str | None = None) -> Version: ...
    def resolve_version(self, ref: str, recipe: str | None = None) -> Version: ...
    def index_home(self, version: Version) -> Path: ...


class IndexBuilder(Protocol):
    """An ingest over a side index's own home (closed when the build ends)."""

    def ingest(self, names: list[str] | None = None, progress: Progress | None = None) -> IngestSummary: ...
    def close(self) -> None: ...


class SideIndexes(Registry, Protocol):
    """A registry that can also build the side index of a version that chunks or embeds differently."""

    @property
    def model_dir(self) -> Path: ...
    def open_index(self, settings: Settings) -> IndexBuilder:
        """An ingest over ``settings.home`` with ``settings`` (the factory ``build`` uses)."""
        ...


class Runner(Protocol):
    """What runs one version: builds its requests and assembles them (eval stores no trace), over its catalog."""

    @property
    def assembler(self) -> Assembler: ...
    @property
    def catalog(self) -> Catalog: ...
    def request(self, query: str, *, recipe: str | None = None) -> AssembleRequest: ...


class Evaluator(SideIndexes, Protocol):
    """Offline evaluation: a runner per version, and the catalog its runs are kept in."""

    @property
    def catalog(self) -> Catalog: ...
    def for_version(self, version: Version) -> Runner: ...


class Closeable(Protocol):
    def close(self) -> None: ...


class SnapshotTarget(Protocol):
    """Whose settings, embedder and processing a ``--as-of`` snapshot index is built with."""

    @property
    def settings(self) -> Settings: ...
    @property
    def embedder(self) -> Any: ...
    def processor(self) -> Processor: ...


class History(Protocol):
    """Where past versions of the documents are read from: a home's catalog and its archive."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def home(self) -> Path: ...
