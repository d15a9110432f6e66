"""Budget packing: keep blocks by criticality and score, truncate at sentence boundaries, drop the rest,
and report every drop and truncation. The final check counts the rendered text exactly."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from ctx.assemble.render import Renderer, block_heading, provenance
from ctx.models import Block, Degradation, Hit
from ctx.process.chunking import sentence_spans
from ctx.settings import Criticality

ELLIPSIS = " …"
# How far over budget an estimate may be before the exact count is not worth asking for.
_SLACK = 64


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
            reason = f"{why} chunk {twin.chunk_id}"
            degradations.append(Degradation("deduplicated", hit.chunk_id, hit.source, "", reason))
    return kept, degradations


def pack(blocks: Sequence[Block], budget: int, renderer: Renderer, query: str, count: Callable[[str], int],
         min_truncated_tokens: int = 24, caps: Mapping[str, int] | None = None) -> Packed:
    """Keeps blocks in priority order while they fit; the rendered result is counted exactly.

    With ``caps`` (tokens per provider, from the recipe's shares) a provider first fills only its own
    share; what the shares leave unused then goes to the blocks that did not fit their share, in the
    same priority order. The budget itself is never exceeded either way.
    """
    order = sorted(blocks, key=lambda b: (Criticality(b.criticality).rank, -b.hit.score, b.hit.chunk_id))
    degradations: list[Degradation] = []
    kept: list[Block] = []
    sources: set[str] = set()
    spent: dict[str, int] = {}
    used = count(renderer.render([], query))
    # What rendering adds once around the first block (a messages wrapper, say). Estimates only:
    # the exact count at the edge and at the end is the guarantee.
    probe = _probe()
    wrapper = max(count(renderer.render([probe], query)) - _frame_cost(probe, count) - count(probe.text), 0)
    deferred: list[Block] = []
    for capped, pending in ((caps is not None, order), (False, deferred)):
        for block in list(pending):
            # Chunks carry their token count from ingest (same encoding); only other text is counted here.
            text_tokens = block.tokens or count(block.text)
            frame = _frame_cost(block, count) + 2
            if block.hit.source not in sources:
                frame += _section_cost(block, count)
            if not kept:
                frame += wrapper
            whole = replace(block, tokens=text_tokens)
            estimate = used + frame + text_tokens
            if capped:
                assert caps is not None
                share_left = caps.get(block.provider, budget) - spent.get(block.provider, 0)
                if frame + text_tokens > share_left:
                    # Over its share: it waits for what the shares leave unused. Also when it would not fit
                    # the budget either: kept by the exact count or cut to the whole budget now, it would
                    # take the shares of providers whose blocks come later.
                    deferred.append(block)
                    continue
            # The estimate errs high by a few tokens a block, so near the edge the exact count decides:
            # a block that fits whole is never cut or dropped.
            exact = count(renderer.render([*kept, whole], query)) if budget < estimate <= budget + _SLACK else None
            if estimate <= budget or (exact is not None and exact <= budget):
                kept.append(whole)
                sources.add(block.hit.source)
                spent[block.provider] = spent.get(block.provider, 0) + frame + text_tokens
                used = exact if exact is not None else estimate
                continue
            cut = truncate(block.text, budget - used - frame, count)
            cut_tokens = count(cut) if cut is not None else 0
            if cut is not None and cut_tokens >= min_truncated_tokens:
                kept.append(replace(block, text=cut, truncated=True, tokens=cut_tokens))
                sources.add(block.hit.source)
                spent[block.provider] = spent.get(block.provider, 0) + frame + cut_tokens
                used += frame + cut_tokens
                degradations.append(_degrade("truncated", block, "over budget: cut at a sentence boundary",
                                             text_tokens, cut_tokens))
            else:
                degradations.append(_degrade("dropped", block, "over budget", text_tokens, 0))
    rendered = renderer.render(kept, query)
    tokens = count(rendered)
    while tokens > budget and kept:
        # Estimates were off (BPE merges across joins): give up the lowest-priority block, exactly counted.
        victim = kept.pop()
        before = victim.tokens
        if victim.truncated:  # one entry per block: the drop replaces its truncation, with the full size
            entry = next(d for d in degradations if d.chunk_id == victim.hit.chunk_id)
            degradations.remove(entry)
            before = entry.tokens_before
        degradations.append(_degrade("dropped", victim, "over budget after exact count", before, 0))
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


def _frame_cost(block: Block, count: Callable[[str], int]) -> int:
    """Tokens a block costs besides its text: its heading and provenance lines (markdown layout)."""
    return count(f"### {block_heading(block)}\n\n\n\n{provenance(block)}\n")


def _section_cost(block: Block, count: Callable[[str], int]) -> int:
    return count(f"## {block.hit.source} ({block.criticality})\n") + 1


def _degrade(kind: str, block: Block, reason: str, before: int, after: int) -> Degradation:
    return Degradation(kind, block.hit.chunk_id, block.hit.source, block.criticality, reason, before, after)


def _probe() -> Block:
    hit = Hit("probe", "probe", "probe", "probe", "probe", 1, "probe", [], None, 0, 5, "probe")
    return Block(hit, Criticality.optional.value, "probe")
