"""Vectors in a Chroma PersistentClient, keyed by chunk id with source / document / tenant metadata."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SHARED_TENANT = ""  # Chroma metadata cannot hold None; "" marks data every tenant may see.


class VectorStore(Protocol):
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def query(self, vector: np.ndarray, n: int, where: dict[str, Any] | None) -> list[tuple[str, float]]: ...
    def ids(self) -> Iterator[str]: ...
    def count(self) -> int: ...


class ChromaVectors:
    """One collection per embedding model, so switching models never mixes dimensions."""

    def __init__(self, path: Path, model_id: str) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        path.mkdir(parents=True, exist_ok=True)
        # Telemetry off: ctx is offline by design.
        self.client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        )
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"chunks-{model_id}").strip("-._")[:60]
        # embedding_function=None: Chroma's default function downloads a model; we always pass vectors.
        self.collection = self.client.get_or_create_collection(
            name, embedding_function=None, metadata={"hnsw:space": "cosine", "model_id": model_id}
        )

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict[str, Any]]) -> None:
        step = 2000  # below Chroma's max batch size
        for i in range(0, len(ids), step):
            self.collection.upsert(
                ids=list(ids[i : i + step]),
                embeddings=np.asarray(vectors[i : i + step], dtype=np.float32),
                metadatas=[dict(m) for m in metadatas[i : i + step]],
            )

    def delete(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), 2000):
            self.collection.delete(ids=list(ids[i : i + 2000]))

    def query(self, vector: np.ndarray, n: int, where: dict[str, Any] | None) -> list[tuple[str, float]]:
        if n <= 0:
            return []
        res = self.collection.query(
            query_embeddings=np.asarray([vector], dtype=np.float32), n_results=n, where=where or None,
            include=["distances"],
        )
        distances = res["distances"] or [[]]
        return list(zip(res["ids"][0], distances[0], strict=True))

    def ids(self) -> Iterator[str]:
        offset, step = 0, 5000
        while True:
            got = self.collection.get(include=[], limit=step, offset=offset)["ids"]
            yield from got
            if len(got) < step:
                return
            offset += step

    def count(self) -> int:
        return self.collection.count()


def metadata_for(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": row["source"],
        "doc_id": row["doc_id"],
        "tenant": row.get("tenant") or SHARED_TENANT,
        "version": int(row.get("version") or 0),
    }
