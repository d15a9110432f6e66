"""How validated documents travel through the durable queue: compact, lossless, keyed by content hash.

Records are validated when fetched; what is queued is the Document, so processing never repeats
the format conversion, and a document whose content hash matches the stored one is not queued
at all: only a payload-less marker says the job saw it (the mirror sync needs every key it saw).
"""

from __future__ import annotations

import json
import zlib

from ctx.models import Document


def encode(doc: Document) -> tuple[str, bytes, str]:
    """(key, payload, content hash) of a document to process."""
    data = {"id": doc.id, "source": doc.source, "text": doc.text, "title": doc.title, "format": doc.format,
            "tenant": doc.tenant, "metadata": doc.metadata}
    raw = json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    return doc.key, zlib.compress(raw, 1), doc.content_hash


def decode(key: str, payload: bytes, content_hash: str) -> Document:
    data = json.loads(zlib.decompress(payload))
    return Document(id=data["id"], source=data["source"], key=key, text=data["text"], title=data["title"],
                    format=data["format"], tenant=data["tenant"], metadata=data["metadata"] or {},
                    content_hash=content_hash)
