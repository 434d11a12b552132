"""Similar-direction features precomputed for every feature: the top-K decoder-row cosines (needs torch).

All 65,536 x 65,536 cosines are one blocked matrix product (about 9 TFLOP at the CLIP-Scope shapes, minutes on a
laptop CPU), done once per checkpoint and cached next to its unit decoder rows; `saetui stats` copies the lists
into the feature_neighbours table so a feature page reads them in a millisecond. Longer lists come on demand from
the cached rows (saetui.stats.directions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

BLOCK = 2048  # rows per matrix product


def top_neighbours(
    unit_rows: np.ndarray, k: int, progress: Callable[[str, int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For each row the k other rows with the largest cosine: (index [n, k] int32, cosine [n, k] float32)."""
    import torch

    rows = torch.from_numpy(np.array(unit_rows, dtype=np.float32))  # a writable copy of the memory map
    n = rows.shape[0]
    k = min(k, n - 1)
    index = np.zeros((n, k), dtype=np.int32)
    cosine = np.zeros((n, k), dtype=np.float32)
    blocks = range(0, n, BLOCK)
    with torch.no_grad():
        for done, start in enumerate(blocks, start=1):
            stop = min(start + BLOCK, n)
            sims = rows[start:stop] @ rows.T
            own = torch.arange(stop - start)
            sims[own, own + start] = -torch.inf
            values, found = torch.topk(sims, k, dim=1)
            index[start:stop] = found.numpy()
            cosine[start:stop] = values.numpy()
            if progress is not None:
                progress("neighbours", done, len(blocks))
    return index, cosine


def cached_neighbours(
    unit_rows_path: Path, k: int, progress: Callable[[str, int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """top_neighbours of a cached unit-row matrix, itself cached beside it as <name>-neighbours-<k>.npz."""
    path = unit_rows_path.with_name(f"{unit_rows_path.stem}-neighbours-{k}.npz")
    if path.is_file():
        with np.load(path) as stored:
            return stored["index"], stored["cosine"]
    index, cosine = top_neighbours(np.load(unit_rows_path, mmap_mode="r"), k, progress)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, index=index, cosine=cosine)
    tmp.replace(path)
    return index, cosine
