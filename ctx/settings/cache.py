"""[cache] and [archive]: the result caches (memory and disk) and the cold tier of superseded versions."""

from __future__ import annotations

from pydantic import Field

from ctx.settings.base import Duration, Strict


class CacheSettings(Strict):
    """The result caches: L1 in this process, L2 on disk in the home (shared by every process of the home)."""

    enabled: bool = True
    memory_items: int = Field(default=10_000, ge=0, description="L1 entries (LRU); 0 turns L1 off")
    disk: bool = True
    disk_size_mb: int = Field(default=256, ge=1)
    context_ttl: Duration = Field(default=60.0, ge=0, description="seconds an assembled context is reused at "
                                  "most (also capped by its providers' ttl); 0 turns the context cache off")
    xfetch_beta: float = Field(default=1.0, ge=0, description="XFetch early-expiry eagerness; 0 turns it off")
    hot_hits: int = Field(default=3, ge=1, description="hits within one ttl that make an entry hot: it is "
                          "refreshed in the background before it expires")
    refresh_ahead: float = Field(default=0.2, gt=0, lt=1, description="share of the ttl before expiry when "
                                 "hot entries are refreshed")


class ArchiveSettings(Strict):
    """The cold tier: superseded document versions move to compressed files under the home's archive/."""

    enabled: bool = Field(default=True, description="archive at the end of every ingest job (ctx archive runs "
                          "it on demand either way)")
    keep: Duration = Field(default=30 * 86400.0, ge=0, description="versions superseded (by a newer one, or by "
                           "the document's deletion) longer ago than this move to the archive")
