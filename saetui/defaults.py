"""Defaults the engines and the command line share, in a module light enough for `saetui --help` to import."""

from __future__ import annotations

import os

BATCH_SIZE = 32  # images per forward pass of `saetui index` and `saetui eval`
# Images per write transaction of `saetui index`, whatever the forward batch: at 32 images per commit DuckDB stored
# 51.5 KB per image, at 256 48.0 KB (bench/storage.py, 2,000 synthetic images); a kill loses at most one commit.
COMMIT_IMAGES = 256
SCAN_THREADS = 8  # the most scan threads `stats` starts by default: each holds ~130 MB of histogram
CORES_PER_WRITER = 4  # `index` starts one commit lane per this many cores: decoding needs the rest
MAX_WRITERS = 4  # commit lanes by default at most (more help only while DuckDB inserts are the bottleneck)


def _cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_threads() -> int:
    """Image decoding threads by default (`index`, `eval`): one per CPU core."""
    return max(1, _cores())


def scan_threads() -> int:
    """Scan threads of `stats` by default: one per CPU core, at most SCAN_THREADS."""
    return max(1, min(SCAN_THREADS, _cores()))


def writer_lanes() -> int:
    """Commit lanes of `index` by default (saetui.store.commits): one per CORES_PER_WRITER cores, 1 to MAX_WRITERS."""
    return max(1, min(MAX_WRITERS, _cores() // CORES_PER_WRITER))
