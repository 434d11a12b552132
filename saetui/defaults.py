"""Defaults the engines and the command line share, in a module light enough for `saetui --help` to import."""

from __future__ import annotations

import os

BATCH_SIZE = 32  # images per forward pass of `saetui index` and `saetui eval`
# Images per write transaction of `saetui index`, whatever the forward batch: at 32 images per commit DuckDB stored
# 51.5 KB per image, at 256 48.0 KB (bench/storage.py, 2,000 synthetic images); a kill loses at most one commit.
COMMIT_IMAGES = 256
MAX_THREADS = 8  # decode threads of `index`, scan threads of `stats`: each stats thread holds ~130 MB of histogram


def default_workers() -> int:
    """Threads by default (image decoding, the stats scans): one per CPU core, at most MAX_THREADS."""
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))
