"""The "events" source kind: records pushed to the daemon (``POST /v1/events``), e.g. user session events.

Nothing is fetched: the events arrive through the durable queue and are appended, so the kind is
always ``mode = "append"`` and, by default, ``realtime``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ctx.builtins.jsonl_source import record_from_object
from ctx.hookspecs import hookimpl
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected
from ctx.settings import Freshness, SourceSettings


class EventsSettings(SourceSettings):
    """Which fields of a pushed event hold its id, text, title and metadata."""

    kind: Literal["events"] = "events"
    mode: Literal["append"] = "append"
    freshness: Freshness = Freshness.realtime
    id_field: str = "id"
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    title_field: str | None = None
    metadata_fields: list[str] = Field(default_factory=list)


class EventsSource:
    name = "events"
    settings_model = EventsSettings

    def fetch(self, settings: SourceSettings, context: FetchContext) -> Iterator[Record | Rejected]:
        return iter(())  # push-only

    def parse(self, settings: SourceSettings, obj: Any, fallback_key: str) -> Record | Rejected:
        if not isinstance(obj, dict):
            return Rejected(key=fallback_key, reason="an event must be a JSON object", raw=str(obj)[:200])
        return record_from_object(obj, settings, fallback_key)


@hookimpl
def register_sources(register: Any) -> None:
    register(EventsSource())
