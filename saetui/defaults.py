"""Defaults the engines and the command line share, in a module light enough for `saetui --help` to import."""

from __future__ import annotations

BATCH_SIZE = 32  # images per forward pass of `saetui index` and `saetui eval`
# Images per write transaction of `saetui index`, whatever the forward batch: at 32 images per commit DuckDB stored
# 51.5 KB per image, at 256 48.0 KB (bench/storage.py, 2,000 synthetic images); a kill loses at most one commit.
COMMIT_IMAGES = 256
