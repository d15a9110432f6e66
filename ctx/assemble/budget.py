"""Budget packing: keep blocks by criticality and score, truncate at sentence boundaries, drop the rest,
and report every drop and truncation. The final check counts the rendered text exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ctx.assemble.render import Renderer, block_heading, provenance
from ctx.models import Block, Degradation, Hit
from ctx.process.chunking import sentence_spans
from ctx.settings import Criticality

ELLIPSIS = " …"


@dataclass
class Packed:
    blocks: list[Block]
    rendered: str
    tokens: int
    degradations: list[Degradation]


def deduplicate(hits: Sequence[Hit]) -> tuple[list[Hit], list[Degradation]]:
    """Drops hits whose text another, better-scored hit already carries (same text or overlapping span)."""
    kept: list[Hit] = []
    degradations: list[Degradation] = []
    for hit in sorted(hits, key=lambda h: (-h.score, h.chunk_id)):
        twin = next(
            (k for k in kept if k.content_hash == hit.content_hash
             or (k.doc_id == hit.doc_id and k.start < hit.end and hit.start < k.end)),
            None,
        )
        if twin is None:
            kept.append(hit)
        else:
            why = "same text as" if twin.content_hash == hit.content_hash else "overlaps"
            degradations.append(Degradation("deduplicated", hit.chunk_id, hit.source, "", f"{why} chunk {twin.chunk_id}"))
    return kept, degradations


def pack(blocks: Sequence[Block], budget: int, renderer: Renderer, query: str, count: Callable[[str], int],
         min_truncated_tokens: int = 24) -> Packed:
    order = sorted(blocks, key=lambda b: (Criticality(b.criticality).rank, -b.hit.score, b.hit.chunk_id))
    degradations: list[Degradation] = []
    kept: list[Block] = []
    sources: set[str] = set()
    used = count(renderer.render([], query))
    # A fixed allowance for what rendering adds around blocks (wrappers, joins); the exact check
    # below is the guarantee, this only keeps it from having to undo much.
    overhead = count(renderer.render([_probe()], query)) - _solo_cost(_probe(), count)
    for block in order:
        cost = _solo_cost(block, count) + (0 if block.hit.source in sources else _section_cost(block, count)) + 2
        first = not kept
        if used + cost + (max(overhead, 0) if first else 0) <= budget:
            kept.append(replace(block, tokens=count(block.text)))
            sources.add(block.hit.source)
            used += cost + (max(overhead, 0) if first else 0)
            continue
        # The estimate errs high by a few tokens a block; near the edge the exact count decides,
        # so a block that fits whole is never cut or dropped.
        whole = replace(block, tokens=count(block.text))
        exact = count(renderer.render([*kept, whole], query))
        if exact <= budget:
            kept.append(whole)
            sources.add(block.hit.source)
            used = exact
            continue
        room = budget - used - (cost - count(block.text)) - (max(overhead, 0) if first else 0)
        cut = truncate(block.text, room, count)
        if cut is not None and count(cut) >= min_truncated_tokens:
            before = count(block.text)
            kept.append(replace(block, text=cut, truncated=True, tokens=count(cut)))
            sources.add(block.hit.source)
            used += cost - before + count(cut) + (max(overhead, 0) if first else 0)
            degradations.append(_degrade("truncated", block, "over budget: cut at a sentence boundary", before, count(cut)))
        else:
            degradations.append(_degrade("dropped", block, "over budget", count(block.text), 0))
    rendered = renderer.render(kept, query)
    tokens = count(rendered)
    while tokens > budget and kept:
        # Estimates were off (BPE merges across joins): give up the lowest-priority block, exactly counted.
        victim = kept.pop()
        degradations.append(_degrade("dropped", victim, "over budget after exact count", victim.tokens, 0))
        rendered = renderer.render(kept, query)
        tokens = count(rendered)
    return Packed(kept, rendered, tokens, degradations)


def truncate(text: str, max_tokens: int, count: Callable[[str], int]) -> str | None:
    """The longest prefix of whole sentences, plus an ellipsis, within ``max_tokens``; None if none fits."""
    if max_tokens <= 0:
        return None
    ends = [b for _, b in sentence_spans(text)]
    lo, hi, best = 0, len(ends) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = text[: ends[mid]].rstrip() + ELLIPSIS
        if count(candidate) <= max_tokens:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    if best is not None and best.rstrip(ELLIPSIS).strip() and len(best) - len(ELLIPSIS) < len(text.rstrip()):
        return best
    return None


def _solo_cost(block: Block, count: Callable[[str], int]) -> int:
    return count(f"### {block_heading(block)}\n\n{block.text}\n\n{provenance(block)}\n")


def _section_cost(block: Block, count: Callable[[str], int]) -> int:
    return count(f"## {block.hit.source} ({block.criticality})\n") + 1


def _degrade(kind: str, block: Block, reason: str, before: int, after: int) -> Degradation:
    return Degradation(kind, block.hit.chunk_id, block.hit.source, block.criticality, reason, before, after)


def _probe() -> Block:
    hit = Hit("probe", "probe", "probe", "probe", "probe", 1, "probe", [], None, 0, 5, "probe")
    return Block(hit, Criticality.optional.value, "probe")
