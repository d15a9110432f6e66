"""Built-in summarizer: extractive, no LLM. Picks the sentences that best cover the document's terms."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ctx.hookspecs import hookimpl
from ctx.process.chunking import sentence_spans
from ctx.process.stopwords import STOPWORDS as _STOP

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]{2,}")


def extractive_summary(title: str, text: str, max_sentences: int = 3) -> str:
    """The ``max_sentences`` highest-scoring prose sentences, in document order."""
    # Headings and code become blank lines: they end a paragraph, and sentences are found paragraph
    # by paragraph, so no "sentence" is ever spliced together across a removed heading or code block.
    lines = ["" if line.lstrip().startswith("#") else line for line in _strip_code(text).splitlines()]
    prose = "\n".join(line for line in lines if line.strip())
    paragraphs = re.split(r"\n[ \t]*\n", "\n".join(line if line.strip() else "" for line in lines))
    sentences = [p[a:b].strip().replace("\n", " ") for p in paragraphs for a, b in sentence_spans(p)]
    sentences = [s for s in sentences if 4 <= len(s.split()) <= 60]
    if not sentences:
        return prose[:280].strip()
    freq = Counter(w.lower() for w in _WORD.findall(prose) if w.lower() not in _STOP)
    title_words = {w.lower() for w in _WORD.findall(title)}

    def score(sentence: str) -> float:
        words = [w.lower() for w in _WORD.findall(sentence) if w.lower() not in _STOP]
        if not words:
            return 0.0
        return sum(freq[w] + 2 * (w in title_words) for w in words) / len(words) ** 0.5

    best = sorted(range(len(sentences)), key=lambda i: (-score(sentences[i]), i))[:max_sentences]
    return " ".join(sentences[i] for i in sorted(best))


def _strip_code(text: str) -> str:
    return re.sub(r"(?ms)^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", "", text)


@hookimpl
def register_summarizers(register: Any) -> None:
    register("extractive", extractive_summary)
