"""The Renderer role: blocks → the exact text a model receives. The budget is counted on this text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from ctx.models import Block
from ctx.settings import Criticality


class Renderer(Protocol):
    name: str

    def render(self, blocks: Sequence[Block], query: str) -> str: ...


def ordered_sections(blocks: Sequence[Block]) -> list[tuple[str, str, list[Block]]]:
    """(source, criticality, blocks): sections by criticality then name, blocks by score."""
    sections: dict[str, list[Block]] = {}
    for block in blocks:
        sections.setdefault(block.hit.source, []).append(block)
    order = sorted(sections, key=lambda s: (min(Criticality(b.criticality).rank for b in sections[s]), s))
    return [
        (s, sections[s][0].criticality, sorted(sections[s], key=lambda b: (-b.hit.score, b.hit.chunk_id)))
        for s in order
    ]


def provenance(block: Block) -> str:
    hit = block.hit
    mark = " · truncated" if block.truncated else ""
    if block.stale:
        mark += f" · stale {age_text(block.age_s or 0.0)}"
    if hit.version == 0:  # not a stored chunk (no version): when it was read says how current it is
        return f"[source: {hit.source} · {hit.doc_key} · as of {block.as_of}{mark}]"
    return f"[source: {hit.source} · {hit.doc_key} · v{hit.version} · chunk {hit.chunk_id[:12]}{mark}]"


def age_text(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m``: how old a cached block is, at a glance."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    return f"{seconds:.0f}s" if seconds < 600 else f"{seconds / 60:.0f}m"


def block_heading(block: Block) -> str:
    path = [p for p in block.hit.heading_path if p != block.hit.title]
    return " › ".join([block.hit.title, *path])


class MarkdownRenderer:
    name = "markdown"

    def render(self, blocks: Sequence[Block], query: str) -> str:
        if not blocks:
            return ""
        parts: list[str] = []
        for source, criticality, items in ordered_sections(blocks):
            parts.append(f"## {source} ({criticality})\n")
            for block in items:
                parts.append(f"### {block_heading(block)}\n\n{block.text}\n\n{provenance(block)}\n")
        return "\n".join(parts)


class MessagesRenderer:
    """Chat messages JSON: the context as a system message, the query as the user message."""

    name = "messages"

    def render(self, blocks: Sequence[Block], query: str) -> str:
        if not blocks:
            return ""
        context = MarkdownRenderer().render(blocks, query)
        messages = [
            {"role": "system", "content": "Answer using the context below. Cite sources by their "
             "[source: ...] line.\n\n" + context},
            {"role": "user", "content": query},
        ]
        return json.dumps(messages, ensure_ascii=False, indent=2)
