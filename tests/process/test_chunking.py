"""Structure-aware chunking: headings, fences, token bounds, overlap, stable ids, exact spans; and the summarizer."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctx.builtins.summarizers import extractive_summary
from ctx.process.chunking import Chunker, sentence_spans
from ctx.process.tokens import count_tokens


def long_section(n: int, topic: str = "refunds") -> str:
    return " ".join(f"Sentence {i} explains how {topic} behave in case {i * 7}." for i in range(n))


DOC = f"""# Title

Intro paragraph about the product. {long_section(12, "plans")}

## Section

{long_section(14, "invoices")}

### Sub

{long_section(14, "disputes")}

## Another

Closing words. {long_section(12, "keys")}
"""


def _assert_exact_spans(chunks, text: str) -> None:
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert c.text.strip()


# --- headings ------------------------------------------------------------------------------------

def test_headings_start_chunks_and_keep_their_path() -> None:
    chunks = Chunker(max_tokens=128, overlap_tokens=16).chunk("doc", DOC)
    _assert_exact_spans(chunks, DOC)
    starts = {c.text.split("\n", 1)[0]: c for c in chunks}
    for heading, path in [("## Section", ["Title", "Section"]), ("### Sub", ["Title", "Section", "Sub"]),
                          ("## Another", ["Title", "Another"])]:
        assert heading in starts, f"no chunk starts at {heading!r}: {[c.text[:30] for c in chunks]}"
        assert starts[heading].heading_path == path
    assert chunks[0].heading_path == ["Title"] and chunks[0].text.startswith("# Title")
    # Every chunk after a heading carries that heading's path, and overlap never crosses a heading.
    for c in chunks:
        sub = DOC.index("### Sub")
        if sub <= c.start < DOC.index("## Another"):
            assert c.heading_path == ["Title", "Section", "Sub"]
        assert not (c.start < DOC.index("## Another") < c.end) or c.start == DOC.index("## Another")


def test_a_sibling_heading_pops_the_deeper_path() -> None:
    text = "# A\n\n## B\n\n### C\n\n" + long_section(10) + "\n\n## D\n\n" + long_section(10) + "\n\n# E\n\n" + long_section(10)
    chunks = Chunker(max_tokens=64, overlap_tokens=0).chunk("doc", text)
    paths = [c.heading_path for c in chunks]
    assert ["A", "B", "C"] in paths and ["A", "D"] in paths and ["E"] in paths
    assert not any(p[:2] == ["A", "B"] and "D" in p for p in paths)


# --- code fences ---------------------------------------------------------------------------------

def test_a_code_fence_that_fits_stays_whole_in_one_chunk() -> None:
    fence = "```python\ndef refund(charge):\n    # one. two. three.\n    return charge.amount * -1\n\n\nprint(refund(c))\n```"
    text = f"# Code\n\n{long_section(20)}\n\n{fence}\n\n{long_section(20, 'keys')}\n"
    chunker = Chunker(max_tokens=64, overlap_tokens=8)
    assert count_tokens(fence) < 64
    chunks = chunker.chunk("doc", text)
    _assert_exact_spans(chunks, text)
    start = text.index(fence)
    holders = [c for c in chunks if c.start <= start and start + len(fence) <= c.end]
    assert holders, "the fence was split across chunks"
    # No chunk holds the fence's opening without its closing (or the other way round).
    for c in chunks:
        assert c.text.count("```") % 2 == 0, c.text


def test_a_fence_too_long_for_one_chunk_splits_between_lines() -> None:
    body = "\n".join(f"value_{i} = compute({i}) + offset" for i in range(80))
    text = f"# Big\n\n```python\n{body}\n```\n"
    chunks = Chunker(max_tokens=64, overlap_tokens=0).chunk("doc", text)
    _assert_exact_spans(chunks, text)
    assert len(chunks) > 1
    for c in chunks:
        assert count_tokens(c.text) <= 64
        first, last = c.text.splitlines()[0], c.text.splitlines()[-1]
        # Cut at line ends: every line in a chunk is a whole line of the fence.
        assert first in text.splitlines() and last in text.splitlines()


# --- token bounds and coverage (properties) --------------------------------------------------------

_ws = st.sampled_from(["\n\n", "\n", " ", "\n \n", "\n\t \n \t\n", "\n\n\n\n"])
_word = st.one_of(
    st.text(st.characters(codec="utf-8", categories=("L", "Nd")), min_size=1, max_size=12),
    st.sampled_from(["é", "日本語", "😀", "Ω", "—", "<|endoftext|>", "e.g.", "3.14", "x" * 40]),
)


@st.composite
def _paragraph(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["prose", "prose", "heading", "fence", "run", "list"]))
    if kind == "heading":
        return "#" * draw(st.integers(1, 6)) + " " + " ".join(draw(st.lists(_word, min_size=1, max_size=4)))
    if kind == "fence":
        lines = draw(st.lists(st.sampled_from(["x = 1", "def f(a):", "    return a. b", "", "y = '😀'"]),
                              max_size=30))
        return "```\n" + "\n".join(lines) + "\n```"
    if kind == "run":  # a very long "sentence" with no boundary to split at
        return " ".join(draw(st.lists(_word, min_size=50, max_size=300)))
    if kind == "list":
        return "\n".join("- " + " ".join(draw(st.lists(_word, min_size=1, max_size=8)))
                         for _ in range(draw(st.integers(1, 6))))
    sentences = [" ".join(draw(st.lists(_word, min_size=1, max_size=15))) + draw(st.sampled_from([".", "!", "?", ""]))
                 for _ in range(draw(st.integers(1, 10)))]
    return " ".join(sentences)


@st.composite
def documents(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(_paragraph(), _ws), min_size=1, max_size=12))
    return "".join(p + w for p, w in parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=documents(), max_tokens=st.sampled_from([16, 32, 64, 256]), overlap=st.sampled_from([0, 3, 7]))
def test_chunks_fit_max_tokens_are_exact_spans_and_cover_the_text(text: str, max_tokens: int, overlap: int) -> None:
    chunker = Chunker(max_tokens=max_tokens, overlap_tokens=overlap)
    chunks = chunker.chunk("doc", text)
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert count_tokens(c.text) == c.token_count <= max_tokens
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    # Nothing is lost: every non-blank character of the document is inside some chunk.
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    lost = "".join(ch for i, ch in enumerate(text) if not covered[i] and not ch.isspace())
    assert not lost, lost[:200]
    # Unless overlap is asked for, chunks never share text.
    if overlap == 0:
        assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))


@pytest.mark.parametrize(
    ("text", "max_tokens", "overlap"),
    [
        # The carried overlap plus the next piece went over size; trimming then lost the piece.
        ("alpha beta gamma.\n\nalpha beta gamma.\n\n" + "word " * 20 + "end.\n\n", 16, 7),
        # Whitespace between pieces cost more tokens than estimated; the trimmed piece was lost.
        ("# Head\n\t \n \t\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\nOne two. Three four!\n\n", 16, 0),
        # A token cut inside a multi-token character made an over-size chunk.
        ("0 0\U00011447 0A\u00c5\u00d2\u1040.\n\n", 16, 0),
    ],
)
def test_regressions_nothing_lost_nothing_over_size(text: str, max_tokens: int, overlap: int) -> None:
    chunks = Chunker(max_tokens=max_tokens, overlap_tokens=overlap).chunk("doc", text)
    _assert_exact_spans(chunks, text)
    assert all(count_tokens(c.text) <= max_tokens for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


# --- overlap -------------------------------------------------------------------------------------

def test_consecutive_chunks_of_a_long_section_overlap() -> None:
    text = "# Long\n\n" + long_section(60)
    chunks = Chunker(max_tokens=64, overlap_tokens=20).chunk("doc", text)
    _assert_exact_spans(chunks, text)
    assert len(chunks) >= 4
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, (a.end, b.start)
        shared = text[b.start : a.end]
        assert 0 < count_tokens(shared) <= 20 + 2
        # The overlap is whole sentences: the next chunk starts where a sentence starts.
        assert b.start in {s for s, _ in sentence_spans(text)}


def test_no_overlap_when_overlap_tokens_is_zero() -> None:
    text = "# Long\n\n" + long_section(60)
    chunks = Chunker(max_tokens=64, overlap_tokens=0).chunk("doc", text)
    assert len(chunks) >= 4
    for a, b in itertools.pairwise(chunks):
        assert a.end <= b.start
        assert not text[a.end : b.start].strip()


# --- ids -----------------------------------------------------------------------------------------

def test_chunk_ids_are_deterministic_and_depend_on_the_document() -> None:
    one = Chunker(64, 8).chunk("doc-a", DOC)
    again = Chunker(64, 8).chunk("doc-a", DOC)
    other = Chunker(64, 8).chunk("doc-b", DOC)
    assert [c.id for c in one] == [c.id for c in again]
    assert [c.content_hash for c in one] == [c.content_hash for c in other]
    assert not {c.id for c in one} & {c.id for c in other}
    assert len({c.id for c in one}) == len(one)


def test_an_edit_changes_only_the_ids_of_chunks_it_touches() -> None:
    edited = DOC.replace("Closing words.", "Closing words, edited.")
    before = Chunker(128, 0).chunk("doc", DOC)
    after = Chunker(128, 0).chunk("doc", edited)
    assert len(before) == len(after)
    at = DOC.index("Closing words.")
    touched = next(i for i, c in enumerate(before) if c.start <= at < c.end)
    changed = [a.id != b.id for a, b in zip(before, after, strict=True)]
    assert changed[touched] and not any(changed[:touched])
    # Chunks after the edit have new offsets but the same text, hence the same ids.
    assert not any(changed[touched + 1 :])


# --- summarizer ----------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return " ".join(text.split())


def test_extractive_summary_picks_sentences_from_the_document() -> None:
    text = (
        "# Refunds\n\nRefunds go back to the original card within ten days. Partial refunds are allowed for annual "
        "plans. The weather was nice that day.\n\n## Disputes\n\nA dispute freezes the refunded amount until the "
        "bank decides. Refunds cannot be issued while a dispute is open.\n\n```\nrefund(charge).\n```\n"
    )
    summary = extractive_summary("Refunds", text, max_sentences=2)
    parts = [summary[a:b] for a, b in sentence_spans(summary)]
    assert 1 <= len(parts) <= 2
    for part in parts:
        assert _norm(part) in _norm(text), part
    assert "refund(charge)" not in summary and "#" not in summary


def _as_document_sentences(summary: str, document: str, most: int) -> bool:
    """Whether ``summary`` is at most ``most`` runs of 4 to 60 words, each found verbatim (up to
    whitespace) in ``document``: sentences without a final stop leave no mark where they join."""
    words, doc = summary.split(), _norm(document)
    fewest = [0] + [most + 1] * len(words)  # fewest[i]: fewest runs that make up words[:i]
    for end in range(4, len(words) + 1):
        for start in range(max(0, end - 60), end - 3):
            if fewest[start] < most and " ".join(words[start:end]) in doc:
                fewest[end] = min(fewest[end], fewest[start] + 1)
    return fewest[len(words)] <= most


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=documents(), n=st.integers(1, 5))
def test_extractive_summary_sentences_occur_in_the_document(text: str, n: int) -> None:
    summary = extractive_summary("Some Title", text, max_sentences=n)
    if not _as_document_sentences(summary, text, n):
        # The fallback when no sentence qualifies: the first lines of prose, each from the document.
        assert len(summary) <= 280, summary
        for line in summary.splitlines():
            assert line.strip() in text, line
        assert not any(line.lstrip().startswith("#") for line in summary.splitlines())


def test_extractive_summary_never_splices_a_sentence_across_a_heading_or_code() -> None:
    text = (
        "# Setup guide\n\n## Install\n\nInstall the lumen SDK with pip\n\n## Usage\n\n"
        "Call the lumen client before anything else in your app.\n\n```python\nclient = Client()\n```\n"
        "then pass the lumen client around to every module that needs it.\n"
    )
    for n in (1, 2, 3):
        summary = extractive_summary("Setup guide", text, max_sentences=n)
        assert _as_document_sentences(summary, text, n), summary
    one = extractive_summary("Setup guide", text, max_sentences=1)
    assert _norm(one) in _norm(text.replace("#", "")), one
    assert "pip Call" not in one and "app. then" not in one


@pytest.mark.parametrize("text", ["", "   \n\n", "# Only a heading\n", "```\ncode only.\n```\n"])
def test_extractive_summary_handles_documents_without_prose(text: str) -> None:
    summary = extractive_summary("T", text)
    assert isinstance(summary, str) and len(summary) <= 280
    assert "code only" not in summary and not re.search(r"^#", summary)
