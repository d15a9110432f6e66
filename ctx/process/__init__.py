"""Processing: structure-aware chunking, enrichment and embedding. Knows no HTTP or CLI."""
