"""The synthetic bench corpus: seeded markdown documents written as files, and queries drawn from them."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ctx.bench.vocabulary import Vocabulary, build_vocabulary, third_person

DOCS_PER_DIR = 1000  # keeps directories small enough that listing them is not what gets measured

_SENTENCES = (
    "The {n} {v} the {a} {n} before the {n} {v}.",
    "When a {n} {v} under {a} load, the {n} {v} it and records the {n}.",
    "{Name} {v} every {n} in the {a} {n}, so the {n} stays {a}.",
    "Use the {a} {n} to {vb} the {n} when the {n} is {a}.",
    "If the {n} {v} twice, the {n} must {vb} the {a} {n} first.",
    "Each {n} keeps a {a} {n}; the {n} {v} it after {num} seconds.",
    "A {a} {n} never {v} the {n} directly, because the {n} {v} the {n}.",
    "Set the {n} to {num} and the {name} {n} will {vb} the {n} on the next {n}.",
    "In {name}, the {n} and the {n} {vb} together, which keeps the {n} {a}.",
    "The {n} is {a} by default; {vb} the {n} to make the {n} {a}.",
    "Operators can {vb} a {n} from the {name} console without restarting the {n}.",
    "Note that {n} limits apply per {n}, not per {n}.",
    "During a {a} {n}, {name} may {vb} up to {num} {n} entries at once.",
    "This prevents the {n} from growing without bound while the {n} is {a}.",
    "Older releases {vb} the {n} on every request, which was {a} but slow.",
    "See the {n} guide for how the {a} {n} interacts with {name}.",
    "Both the {n} and the {n} are {a}, so clients should {vb} them carefully.",
    "Once the {n} reaches {num}, the {a} {n} {v} and an alert fires.",
)
_CODE_LINES = (
    "{ident} = client.{vb}(\"{n}\", timeout={num})",
    "if {ident}.{vb}({num}):",
    "    {ident}.{vb}(\"{n}\")",
    "for {ident} in {ident2}.{vb}(limit={num}):",
    "    log.info(\"{vb} %s\", {ident})",
    "{ident2} = {Name}Config({ident}={num}, mode=\"{a}\")",
    "return {ident}",
)


_AN = re.compile(r"\b([Aa]) ([aeiou])")


@dataclass
class CorpusStats:
    documents: int = 0
    bytes: int = 0
    words: int = 0


def _fill(template: str, rng: random.Random, vocab: Vocabulary) -> str:
    """Fills each placeholder with a fresh draw, so repeated {n} get different words."""
    out = []
    for i, part in enumerate(template.split("{")):
        if i == 0:
            out.append(part)
            continue
        key, rest = part.split("}", 1)
        out.append(_draw(key, rng, vocab) + rest)
    text = "".join(out)
    return text[0].upper() + text[1:]


def _draw(key: str, rng: random.Random, vocab: Vocabulary) -> str:
    if key == "n":
        return vocab.terms.draw(rng)
    if key == "v":
        return third_person(vocab.verbs.draw(rng))
    if key == "vb":
        return vocab.verbs.draw(rng)
    if key == "a":
        return vocab.adjectives.draw(rng)
    if key in ("name", "Name"):
        name = rng.choice(vocab.names)
        return name.capitalize() if key == "Name" else name
    if key == "num":
        return str(rng.choice((3, 5, 10, 30, 64, 100, 256, 1000)))
    if key in ("ident", "ident2"):
        return vocab.terms.draw(rng).replace(" ", "_")
    raise KeyError(key)


def _title(rng: random.Random, vocab: Vocabulary, words: int) -> str:
    parts = vocab.terms.draws(rng, words)
    return " ".join(parts).title()[:80]


def _paragraph(rng: random.Random, vocab: Vocabulary, sentences: int) -> str:
    text = " ".join(_fill(rng.choice(_SENTENCES), rng, vocab) for _ in range(sentences))
    return _AN.sub(r"\1n \2", text)


def _words(text: str) -> int:
    return text.count(" ") + 1


def _code(rng: random.Random, vocab: Vocabulary) -> str:
    lines = [_fill(rng.choice(_CODE_LINES), rng, vocab) for _ in range(rng.randint(3, 9))]
    # _fill capitalises the first letter for prose; code keeps its identifiers as drawn.
    return "```python\n" + "\n".join(line[0].lower() + line[1:] for line in lines) + "\n```"


def document(seed: int, index: int, vocab: Vocabulary) -> tuple[str, str]:
    """(relative path, markdown) of document ``index``: the same seed always gives the same bytes."""
    rng = random.Random(f"ctx-bench-doc:{seed}:{index}")
    # Skewed towards shorter documents, as real doc sets are: range 150-900 words, mean ~350
    # (about 3 chunks at 256 tokens, since each ## section tends to start a chunk).
    target = 150 + int(600 * rng.random() ** 3)
    title = _title(rng, vocab, rng.randint(2, 4))
    # Longer documents get more sections, as real ones do; a section is ~150-300 words.
    sections = max(2, min(5, target // rng.randint(150, 300)))
    intro = _paragraph(rng, vocab, rng.randint(1, 2))
    parts = [f"# {title}", intro]
    written = _words(intro)
    for remaining in range(sections, 0, -1):
        parts.append(f"## {_title(rng, vocab, rng.randint(2, 4))}")
        goal = written + (target - written) // remaining
        while True:  # at least one paragraph, so no section is a bare heading
            paragraph = _paragraph(rng, vocab, rng.randint(2, 5))
            parts.append(paragraph)
            written += _words(paragraph)
            if written >= goal:
                break
        if rng.random() < 0.2:
            parts.append(_code(rng, vocab))
    slug = "-".join(title.lower().split()[:4])
    path = f"d{index // DOCS_PER_DIR:03d}/{slug}-{index:06d}.md"
    return path, "\n\n".join(parts) + "\n"


def write_corpus(root: Path, docs: int, seed: int,
                 advance: Callable[[int], None] | None = None) -> CorpusStats:
    """Write ``docs`` markdown files under ``root``, one at a time so memory stays flat at any N."""
    vocab = build_vocabulary(seed)
    stats = CorpusStats()
    for index in range(docs):
        rel, text = document(seed, index, vocab)
        data = text.encode("utf-8")
        target = root / rel
        if index % DOCS_PER_DIR == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        stats.documents += 1
        stats.bytes += len(data)
        stats.words += text.count(" ") + text.count("\n")
        if advance is not None and (index + 1) % 100 == 0:
            advance(100)
    if advance is not None and docs % 100:
        advance(docs % 100)
    return stats


def queries(seed: int, count: int) -> list[str]:
    """``count`` queries of 2-6 words: keyword lists, title-like phrases and short questions."""
    vocab = build_vocabulary(seed)
    rng = random.Random(f"ctx-bench-queries:{seed}")
    out: list[str] = []
    while len(out) < count:
        style = rng.random()
        if style < 0.4:
            words = " ".join(vocab.terms.draws(rng, rng.randint(2, 3))).split()
        elif style < 0.7:
            words = [vocab.adjectives.draw(rng), *vocab.terms.draw(rng).split(), vocab.verbs.draw(rng)]
        else:  # natural-language questions carry words that match most chunks, as real ones do
            words = ["how", "to", vocab.verbs.draw(rng), *vocab.terms.draw(rng).split()]
        out.append(" ".join(words[:6]))
    return out
