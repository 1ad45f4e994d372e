"""Ingestion: find, read, chunk, embed and write documents."""
