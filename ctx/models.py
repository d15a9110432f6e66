"""The records that flow between layers: source records, documents, chunks, hits and blocks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class Record:
    """One item a source yields: the unit of validation, dedup and quarantine."""

    key: str
    text: str | bytes | None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    format: str = "text"  # markdown, text, code, html, rst, json, csv: how to chunk it


@dataclass(slots=True)
class Rejected:
    """A record a source could not even parse; it goes to quarantine with its reason."""

    key: str
    reason: str
    raw: str | None = None


@dataclass(slots=True)
class Document:
    """A validated record, ready to process."""

    id: str
    source: str
    key: str
    text: str
    title: str
    format: str
    tenant: str | None
    metadata: dict[str, Any]
    content_hash: str


@dataclass(slots=True)
class Chunk:
    id: str
    doc_id: str
    ordinal: int
    text: str
    start: int
    end: int
    token_count: int
    heading_path: list[str]
    content_hash: str


@dataclass(slots=True)
class Hit:
    """A retrieved chunk with its provenance and the scores that ranked it."""

    chunk_id: str
    doc_id: str
    source: str
    doc_key: str
    title: str
    version: int
    text: str
    heading_path: list[str]
    tenant: str | None
    start: int
    end: int
    content_hash: str
    token_count: int = 0
    score: float = 0.0
    lexical_rank: int | None = None
    vector_rank: int | None = None
    vector_distance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Block:
    """A piece of context in an assembled window, with where it came from."""

    hit: Hit
    criticality: str
    text: str
    truncated: bool = False
    tokens: int = 0
    provider: str = ""  # the provider that returned it
    as_of: str | None = None  # when its data was read (None: a stored chunk, see its version)
    stale: bool = False  # served from an expired cache entry because its provider failed
    age_s: float | None = None  # how old a cached block is


@dataclass(slots=True)
class Degradation:
    """Something assembly gave up to stay within budget, and why."""

    kind: str  # dropped | truncated | deduplicated | late | failed | skipped | stale | not_applicable
    chunk_id: str
    source: str
    criticality: str
    reason: str
    tokens_before: int = 0
    tokens_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
