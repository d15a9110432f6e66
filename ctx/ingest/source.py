"""The SourceKind role that every source plugin (built-in or third-party) fills."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ctx.models import Record, Rejected
from ctx.settings import SourceSettings


@dataclass(slots=True)
class FetchContext:
    """What a source may use while fetching; the environment is passed in, never read deep inside."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)


class SourceKind(Protocol):
    """A kind of source. ``fetch`` yields every current record (mirror) or the new ones (append).

    A record the source cannot parse is yielded as :class:`Rejected`, never skipped. An error
    that makes the listing incomplete must raise :class:`ctx.errors.SourceError`, so that a
    mirror sync never mistakes a failed read for deletions.
    """

    name: str
    settings_model: type[SourceSettings]

    def fetch(self, settings: SourceSettings, context: FetchContext) -> Iterator[Record | Rejected]: ...
