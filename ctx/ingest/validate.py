"""Record validation: every record becomes a Document or a quarantine reason, never nothing."""

from __future__ import annotations

import hashlib
import json
import posixpath

from ctx.ingest.formats import to_text
from ctx.ingest.values import text_problem, value_problem
from ctx.models import Document, Record
from ctx.settings import SourceSettings

# Metadata that changes without the content changing; it must not make a document look edited.
VOLATILE_METADATA = frozenset({"mtime", "fetched_at"})


def doc_id_for(source: str, key: str) -> str:
    """Deterministic: the same source and key always name the same document."""
    return hashlib.sha256(f"{source}\x00{key}".encode()).hexdigest()[:24]


def validate(record: Record, source: str, settings: SourceSettings) -> Document | str:
    """The validated document, or the reason the record is quarantined."""
    raw = record.text
    if raw is None:
        return "missing text"
    # A key, title or metadata value no store can hold (a lone surrogate from a JSON escape or a file name
    # that is not UTF-8, a NUL, a number out of range) would fail the write of the whole batch.
    if (problem := text_problem(record.key)) is not None:
        return f"record id {problem}"
    if record.title is not None and (problem := text_problem(record.title)) is not None:
        return f"title {problem}"
    if (problem := value_problem(record.metadata, "metadata")) is not None:
        return problem
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > settings.max_record_bytes:
        return f"too large: {size} bytes > limit {settings.max_record_bytes}"
    if isinstance(raw, bytes):
        if b"\x00" in raw[:8192]:
            return "binary content, not text"
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not valid UTF-8 text (byte {exc.start})"
    if (problem := text_problem(raw)) is not None:
        return f"text {problem}"
    try:
        text, found_title = to_text(raw.removeprefix("\ufeff"), record.format)
    except ValueError as exc:
        return str(exc)
    text = text.strip()
    if not text:
        return "empty text"
    tenant: str | None = None
    if settings.tenant_field:
        value = record.metadata.get(settings.tenant_field)
        if value is None or str(value).strip() == "":
            return f"missing tenant field '{settings.tenant_field}'"
        tenant = str(value)
    title = (record.title or found_title or posixpath.basename(record.key) or record.key).strip()
    stable_meta = {k: v for k, v in record.metadata.items() if k not in VOLATILE_METADATA}
    payload = json.dumps([title, text, tenant, record.format, stable_meta], sort_keys=True, default=str)
    return Document(
        id=doc_id_for(source, record.key),
        source=source,
        key=record.key,
        text=text,
        title=title,
        format=record.format,
        tenant=tenant,
        metadata=record.metadata,
        content_hash=hashlib.sha256(payload.encode()).hexdigest(),
    )
