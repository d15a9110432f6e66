"""``ctx bench``: a synthetic corpus, and measurements of ingest, re-ingest, assembly latency and memory."""
