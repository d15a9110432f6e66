"""How fetched records travel through the durable queue: compact, lossless, and hashed for re-delivery."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib

from ctx.models import Record, Rejected


def encode(item: Record | Rejected) -> tuple[str, bytes, str]:
    """(key, payload, payload hash) for one fetched item."""
    if isinstance(item, Rejected):
        data = {"rejected": True, "reason": item.reason, "raw": item.raw}
    else:
        text = item.text
        binary = isinstance(text, bytes)
        data = {
            "text": base64.b64encode(text).decode("ascii") if isinstance(text, bytes) else text,
            "binary": binary, "title": item.title, "metadata": item.metadata, "format": item.format,
        }
    raw = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return item.key, zlib.compress(raw, 1), hashlib.sha256(raw).hexdigest()


def decode(key: str, payload: bytes) -> Record | Rejected:
    data = json.loads(zlib.decompress(payload))
    if data.get("rejected"):
        return Rejected(key=key, reason=data["reason"], raw=data.get("raw"))
    text = data["text"]
    if data.get("binary"):
        text = base64.b64decode(text)
    return Record(key=key, text=text, title=data.get("title"), metadata=data.get("metadata") or {},
                  format=data.get("format") or "text")
