"""The Embedder role, and the cache that makes identical text embed once across documents and runs."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors. ``model_id`` names the model and its version."""

    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def cache_dir(home: Path) -> Path:
    """Where a home keeps its embedding cache."""
    return home / "cache" / "embeddings"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(model_id: str, content_hash: str) -> str:
    """A vector is cached per model and content: another model, or changed text, misses."""
    return f"{model_id}:{content_hash}"


class CachedEmbedder:
    """Wraps an Embedder with a diskcache keyed by (model id, content hash), embedding in batches.

    ``seconds`` is the time spent in the model, so the ingest summary can show embedding work apart
    from the rest; ``embed_hashed`` tells its caller which texts really went through the model.
    """

    def __init__(self, inner: Embedder, cache_dir: Path, batch_size: int = 32) -> None:
        import diskcache

        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.batch_size = batch_size
        self.cache = diskcache.Cache(str(cache_dir), size_limit=4 * 2**30)
        self.seconds = 0.0

    def embed_hashed(
        self, items: Sequence[tuple[str, str]], progress: Callable[[int], None] | None = None,
        sent: list[str] | None = None,
    ) -> list[np.ndarray]:
        """Vectors for (content_hash, text) pairs, in order; only cache misses reach the model.

        ``sent`` collects the content hashes that really went through the model (what embedding cost).
        """
        vectors: list[np.ndarray | None] = []
        missing: dict[str, str] = {}
        for content_hash, text in items:
            raw = self.cache.get(cache_key(self.model_id, content_hash))
            if raw is None:
                missing.setdefault(content_hash, text)
                vectors.append(None)
            else:
                vectors.append(np.frombuffer(raw, dtype=np.float32))
        fresh: dict[str, np.ndarray] = {}
        pending = list(missing.items())
        for i in range(0, len(pending), self.batch_size):
            batch = pending[i : i + self.batch_size]
            started = time.perf_counter()
            out = np.asarray(self.inner.embed([t for _, t in batch]), dtype=np.float32)
            self.seconds += time.perf_counter() - started
            if sent is not None:
                sent.extend(h for h, _ in batch)
            with self.cache.transact():
                for (content_hash, _), vector in zip(batch, out, strict=True):
                    fresh[content_hash] = vector
                    self.cache.set(cache_key(self.model_id, content_hash), vector.tobytes())
            if progress:
                progress(len(batch))
        return [v if v is not None else fresh[h] for v, (h, _) in zip(vectors, items, strict=True)]

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_hashed([(text_hash(text), text)])[0]

    def warm_up(self) -> None:
        """Load the model now (seconds, once per process), not in the first query the cache misses.

        Past the cache on purpose: a warm-up text found in the cache would leave the model unloaded,
        and the first new query of a daemon would then pay the load inside its deadline.
        """
        self.inner.embed(["warm up"])

    def close(self) -> None:
        self.cache.close()
