"""Unit-norm feature directions cached as .npy files, and the numpy-only queries over them.

`saetui stats` writes two matrices into the cache directory (paths recorded in `stats_info`):
- decoder rows / ||row|| [n_features, d_in]: similar-direction features are the largest cosines with row f;
- lens embeddings [n_features, embed] (unit norm): what free-text search compares a CLIP text embedding with.
Both are memory-mapped, so the browser and `saetui show` answer neighbours without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from saetui.errors import DataError, NotFoundError


def save_unit_rows(rows: np.ndarray, path: Path) -> Path:
    """L2-normalise rows (zero rows stay zero) and write them atomically as float32 .npy."""
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, unit)
    tmp.replace(path)
    return path


def load_rows(path: str | Path | None, what: str) -> np.ndarray:
    """Memory-map a cached matrix; a clear error when stats never wrote it or it is gone."""
    if not path:
        raise NotFoundError(f"no {what} recorded for this database", "run `saetui stats` with the SAE files present")
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{what} file {path} is missing", "run `saetui stats --force` on this machine")
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {what} file {path}: {error}", "run `saetui stats --force`") from None


def nearest(rows: np.ndarray, query: np.ndarray, n: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosines of the n rows most similar to a unit query vector (largest first)."""
    scores = np.asarray(rows @ np.asarray(query, dtype=rows.dtype), dtype=np.float64)
    if exclude is not None:
        scores[exclude] = -np.inf
    n = max(0, min(n, len(scores) - (exclude is not None)))
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    top = np.argpartition(-scores, n - 1)[:n]
    order = np.lexsort((top, -scores[top]))
    top = top[order]
    return top, scores[top]


def neighbours(rows: np.ndarray, feature: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n features whose decoder rows have the largest cosine with feature's row (itself excluded)."""
    if not 0 <= feature < rows.shape[0]:
        raise NotFoundError(f"feature {feature} does not exist", f"use 0..{rows.shape[0] - 1}")
    return nearest(rows, np.asarray(rows[feature]), n, exclude=feature)
