"""What the audit reads from the core, as one narrow Protocol (the operations service satisfies it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ctx.observe.traces import TraceRecord
    from ctx.settings import Settings
    from ctx.store.catalog import Catalog


class Audited(Protocol):
    """A home seen by the audit: its settings and catalog, its reports, and the two live probes."""

    @property
    def settings(self) -> Settings: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def home(self) -> Path: ...
    @property
    def origin(self) -> str:
        """Who serves the home's requests: ``daemon`` when the audit runs inside the daemon."""
        ...
    def sources(self) -> list[dict[str, Any]]: ...
    def slo(self) -> dict[str, Any]: ...
    def doctor(self, repair: bool = False) -> Any: ...
    def replay(self, trace_id: str) -> TraceRecord: ...
