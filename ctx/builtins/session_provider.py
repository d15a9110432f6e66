"""The ``session`` provider: the newest events of a user (or one session) from an append source.

Events arrive with ``ctx push`` / ``POST /v1/events`` into an ``events`` (or ``jsonl``) source whose
``metadata_fields`` keep the user and session ids. Blocks are scored newest first, so packing keeps
the most recent ones when the provider's token share runs out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ctx.assemble.provider import BaseProvider, ContextRequest, Deadline, Services, make_block
from ctx.hookspecs import hookimpl
from ctx.models import Block
from ctx.settings import Freshness, ProviderSettings


class SessionSettings(ProviderSettings):
    kind: Literal["session"] = "session"
    freshness: Freshness = Freshness.realtime
    source: str = Field(description="an append source holding the events")
    user_field: str = "user_id"
    session_field: str = "session_id"
    time_field: str | None = Field(default=None, description="metadata field with the event's time (ISO 8601): "
                                   "orders events and is their as_of; default: when they were stored")
    limit: int = Field(default=50, ge=1, le=10_000, description="newest events read at most")


class SessionProvider(BaseProvider):
    settings: SessionSettings

    def needs(self) -> tuple[str, ...]:
        return ("user",)

    def key(self, request: ContextRequest) -> tuple[Any, ...]:
        return (request.user, request.session, request.tenant)

    def reads(self) -> list[str] | None:
        return [self.settings.source]  # its data version keys the cache: a new event is seen at once

    async def fetch(self, request: ContextRequest, deadline: Deadline) -> list[Block]:
        s = self.settings
        match = {s.user_field: request.user or ""}
        if request.session:
            match[s.session_field] = request.session
        rows = await self.services.run_sync(self.services.catalog().recent_documents, s.source, match,
                                            request.tenant, s.limit, s.time_field)
        blocks = []
        for rank, row in enumerate(rows):
            title = row["title"] or f"event {row['key']}"
            when = row["metadata"].get(s.time_field) if s.time_field else None
            blocks.append(make_block(self.name, row["key"], title, row["text"], score=1.0 / (1 + rank),
                                     as_of=str(when) if when else row["created_at"], tenant=row["tenant"]))
        return blocks


class SessionKind:
    name = "session"
    settings_model = SessionSettings

    def create(self, name: str, settings: ProviderSettings, services: Services) -> SessionProvider:
        return SessionProvider(name, settings, services)


@hookimpl
def register_providers(register: Any) -> None:
    register(SessionKind())
