"""Retrieval: lexical (FTS5 BM25), vector (Chroma) and their fusion, with metadata filters."""
