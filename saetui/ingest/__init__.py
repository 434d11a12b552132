"""Ingest: image sources, robust decoding, the preparation pipeline and the index engine."""
