"""Storage tiers: SQLite (the source of truth), Chroma (vectors), diskcache (hot caches)."""
