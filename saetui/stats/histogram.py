"""Per-feature histograms of active token values on log2-spaced bins, accumulated chunk by chunk.

Bin b holds values in [2^(b / bpo), 2^((b + 1) / bpo)) with bpo bins per octave (4 by default), so one pass
needs no per-feature maximum and heavy-tailed SAE activations stay readable; values outside
[2^MIN_OCTAVE, 2^MAX_OCTAVE) fall into the first or last bin.
"""

from __future__ import annotations

import numpy as np

MIN_OCTAVE = -32
MAX_OCTAVE = 32


class LogHistogram:
    """Counts of active values per (feature, log2 bin)."""

    def __init__(self, n_features: int, bins_per_octave: int) -> None:
        """An empty histogram for n_features features."""
        self.n_features = n_features
        self.bins_per_octave = bins_per_octave
        self.low = MIN_OCTAVE * bins_per_octave
        self.n_bins = (MAX_OCTAVE - MIN_OCTAVE) * bins_per_octave
        self.counts = np.zeros(n_features * self.n_bins, dtype=np.int64)

    def add(self, feature: np.ndarray, value: np.ndarray) -> None:
        """Count one chunk of active values (all > 0)."""
        if len(value) == 0:
            return
        b = np.floor(np.log2(value.astype(np.float64)) * self.bins_per_octave).astype(np.int64) - self.low
        np.clip(b, 0, self.n_bins - 1, out=b)
        self.counts += np.bincount(feature.astype(np.int64) * self.n_bins + b, minlength=len(self.counts))

    def merge(self, other: LogHistogram) -> None:
        """Add the counts of other chunks."""
        self.counts += other.counts

    def rows(self) -> dict[str, np.ndarray]:
        """The non-empty bins as columns feature, bin, lo, hi, count (bin numbered from 2^0 = bin 0)."""
        flat = np.flatnonzero(self.counts)
        feature = flat // self.n_bins
        b = flat % self.n_bins + self.low
        return {
            "feature": feature.astype(np.int32),
            "bin": b.astype(np.int32),
            "lo": np.exp2(b / self.bins_per_octave),
            "hi": np.exp2((b + 1) / self.bins_per_octave),
            "count": self.counts[flat],
        }
