"""The embedding cache: identical text reaches the model once, and the warm-up always reaches it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctx.process.embedding import CachedEmbedder


class Recording:
    """An Embedder that records what reached it (the real model is exercised by the end-to-end tests)."""

    model_id = "recording"
    dimension = 3

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.full((len(texts), 3), 1 / np.sqrt(3), dtype=np.float32)


def test_identical_text_reaches_the_model_once(tmp_path: Path) -> None:
    inner = Recording()
    embedder = CachedEmbedder(inner, tmp_path)
    try:
        first = embedder.embed_query("rotate an api key")
        again = embedder.embed_query("rotate an api key")
    finally:
        embedder.close()
    assert inner.calls == [["rotate an api key"]]
    assert np.array_equal(first, again)


def test_warm_up_loads_the_model_even_when_its_text_is_cached(tmp_path: Path) -> None:
    """A daemon over a home whose cache already holds the warm-up text must still load its model at start:
    otherwise the first new query pays seconds of loading inside its deadline."""
    inner = Recording()
    embedder = CachedEmbedder(inner, tmp_path)
    embedder.embed_query("warm up")
    embedder.close()

    reopened = CachedEmbedder(inner, tmp_path)
    try:
        reopened.warm_up()
        reopened.warm_up()
    finally:
        reopened.close()
    assert inner.calls == [["warm up"]] * 3
