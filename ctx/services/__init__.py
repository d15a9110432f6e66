"""The core behind every operation, split by concern: stores, ingest, assembly (with version routing), operations."""
