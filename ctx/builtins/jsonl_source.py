"""The "jsonl" source kind: one record per line of a JSON Lines file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ctx.errors import SourceError
from ctx.hookspecs import hookimpl
from ctx.ingest.source import FetchContext
from ctx.models import Record, Rejected
from ctx.settings import SourceSettings, resolve_path


class JsonlSettings(SourceSettings):
    """A JSON Lines file: which fields hold the id, the text, the title and the metadata."""

    kind: Literal["jsonl"] = "jsonl"
    path: Path
    id_field: str = "id"
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    title_field: str | None = None
    metadata_fields: list[str] = Field(default_factory=list)

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Path:
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"not a file: {path}")
        return path


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; letting them into metadata would break every JSON consumer later.
    raise ValueError(f"{name} is not valid JSON")


def record_from_object(obj: dict[str, Any], settings: Any, fallback_key: str) -> Record | Rejected:
    """Map one parsed object to a Record, or a Rejected naming the missing field."""
    ident = obj.get(settings.id_field)
    if ident is None or ident == "":
        return Rejected(key=fallback_key, reason=f"missing field {settings.id_field!r}")
    if isinstance(ident, bool) or not isinstance(ident, str | int):
        return Rejected(key=fallback_key, reason=f"field {settings.id_field!r} must be a string or integer")
    key = str(ident)
    texts = [obj[f] for f in settings.text_fields if isinstance(obj.get(f), str)]
    if not texts:
        first = settings.text_fields[0]
        detail = " (not a string)" if first in obj else ""
        return Rejected(key=key, reason=f"missing field {first!r}{detail}")
    title = obj.get(settings.title_field) if settings.title_field else None
    wanted = [*settings.metadata_fields, *([settings.tenant_field] if settings.tenant_field else [])]
    return Record(
        key=key,
        text="\n\n".join(t for t in texts if t.strip()),
        title=title if isinstance(title, str) and title.strip() else None,
        metadata={f: obj[f] for f in wanted if f in obj},
        format="text",
    )


class JsonlSource:
    """Reads the file line by line, so a bad line is quarantined and the rest still load."""

    name = "jsonl"
    settings_model = JsonlSettings

    def fetch(self, settings: SourceSettings, context: FetchContext) -> Iterator[Record | Rejected]:
        assert isinstance(settings, JsonlSettings)
        try:
            with open(settings.path, "rb") as handle:
                yield from self._lines(handle, settings)
        except OSError as exc:  # failing to open or read midway: the listing would be incomplete
            raise SourceError(
                f"source {context.name}: cannot read {settings.path}: {exc.strerror or exc}"
            ) from None

    def parse(self, settings: SourceSettings, obj: Any, fallback_key: str) -> Record | Rejected:
        """A pushed event (``POST /v1/events``), mapped exactly like a line of the file."""
        assert isinstance(settings, JsonlSettings)
        if not isinstance(obj, dict):
            return Rejected(key=fallback_key, reason="an event must be a JSON object", raw=str(obj)[:200])
        return record_from_object(obj, settings, fallback_key)

    def _lines(self, handle: Any, settings: JsonlSettings) -> Iterator[Record | Rejected]:
        for number, raw_line in enumerate(handle, start=1):
            key = f"line:{number}"
            try:
                line = raw_line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                snippet = raw_line[:200].decode("utf-8", "replace")
                yield Rejected(key=key, reason=f"line {number} is not valid UTF-8", raw=snippet)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                reason = f"malformed JSON on line {number}: {exc.msg} at column {exc.colno}"
                yield Rejected(key=key, reason=reason, raw=line[:200])
                continue
            except (ValueError, RecursionError) as exc:
                yield Rejected(key=key, reason=f"malformed JSON on line {number}: {exc}", raw=line[:200])
                continue
            if not isinstance(obj, dict):
                yield Rejected(key=key, reason=f"line {number} is not a JSON object", raw=line[:200])
                continue
            result = record_from_object(obj, settings, key)
            if isinstance(result, Rejected):
                result.raw = line[:200]
            yield result


@hookimpl
def register_sources(register: Any) -> None:
    register(JsonlSource())
