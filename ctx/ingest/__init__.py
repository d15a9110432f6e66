"""Ingestion: sources yield records; validation, dedup and sync turn them into documents."""
