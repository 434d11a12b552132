"""Per-feature token statistics and exact top images, accumulated chunk by chunk of whole images in numpy.

For each chunk of images the active pairs (value > 0) are grouped by (image, feature) with one sort of packed
int64 keys (rank of the image among the chunk's ids, feature, float bits of the value: the bits of a positive
float32 sort like the value), which gives every group's max, active-token count and sum at once. From the groups:

- FeatureTotals adds active tokens, their sum and max, and images with an active token (exact: chunks hold whole
  images, so every (image, feature) group is seen once);
- TopImages keeps candidate top images per feature: a chunk's group enters only when its image-level activation
  reaches the feature's threshold (its M-th best value so far); when the candidates double they are cut back to
  the best M per feature (value descending, image id ascending) and the thresholds rise. The final cut is exact.

Both merge: accumulators of consecutive image ranges, filled by different threads, merged in image order give
exactly what one pass over all the images gives.
"""

from __future__ import annotations

import numpy as np

_VALUE_BITS = np.int64(0xFFFFFFFF)
_MAX_PACKED_GROUPS = 1 << 31  # group keys that fit above the 32 value bits of a signed int64


def float_bits(values: np.ndarray) -> np.ndarray:
    """The IEEE bits of float32 values as int64 (monotone in the value for positive floats)."""
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)


def bits_float(bits: np.ndarray) -> np.ndarray:
    """Inverse of float_bits."""
    return (bits & _VALUE_BITS).astype(np.uint32).view(np.float32)


def group_pairs(image: np.ndarray, feature: np.ndarray, value: np.ndarray, n_features: int) -> dict[str, np.ndarray]:
    """(image, feature) groups of positive pairs: image, feature, max, count, sum (sorted by image, feature).

    Image ids may have any gaps: groups are keyed by the rank of the image among the chunk's distinct ids, and
    when (distinct images x n_features) does not fit the 31 bits left beside the value bits, the pairs are
    sorted by a lexicographic sort instead of one packed key.
    """
    if len(value) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return {"image": empty, "feature": empty, "max": np.zeros(0, np.float32), "count": empty, "sum": np.zeros(0)}
    images, rank = np.unique(image, return_inverse=True)
    group_key = rank.astype(np.int64) * n_features + feature.astype(np.int64)
    bits = float_bits(value)
    if len(images) * n_features <= _MAX_PACKED_GROUPS:
        packed = np.sort((group_key << 32) | bits)
        keys, values = packed >> 32, bits_float(packed)
    else:
        order = np.lexsort((bits, group_key))
        keys, values = group_key[order], value[order].astype(np.float32)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.append(starts[1:], len(keys))
    group = keys[starts]
    return {
        "image": images[group // n_features].astype(np.int64),
        "feature": group % n_features,
        "max": values[ends - 1],
        "count": ends - starts,
        "sum": np.add.reduceat(values.astype(np.float64), starts),
    }


class FeatureTotals:
    """Active tokens, their sum and max, and images with an active token, per feature."""

    def __init__(self, n_features: int) -> None:
        """Zeroed totals."""
        self.n_tokens = np.zeros(n_features, dtype=np.int64)
        self.sum = np.zeros(n_features, dtype=np.float64)
        self.max = np.zeros(n_features, dtype=np.float32)
        self.n_images = np.zeros(n_features, dtype=np.int64)

    def add(self, groups: dict[str, np.ndarray]) -> None:
        """Add one chunk's (image, feature) groups."""
        n = len(self.n_tokens)
        f = groups["feature"]
        self.n_tokens += np.bincount(f, weights=groups["count"], minlength=n).astype(np.int64)
        self.sum += np.bincount(f, weights=groups["sum"], minlength=n)
        self.n_images += np.bincount(f, minlength=n)
        np.maximum.at(self.max, f, groups["max"])

    def merge(self, other: FeatureTotals) -> None:
        """Add the totals of other chunks."""
        self.n_tokens += other.n_tokens
        self.sum += other.sum
        self.n_images += other.n_images
        np.maximum(self.max, other.max, out=self.max)


class TopImages:
    """The exact top-M images per feature by image-level activation (ties: smaller image id first)."""

    def __init__(self, n_features: int, top: int) -> None:
        """No candidates yet; every positive value passes the initial thresholds."""
        self.n_features = n_features
        self.top = top
        self.threshold = np.zeros(n_features, dtype=np.float32)
        self.feature = np.zeros(0, dtype=np.int64)
        self.image = np.zeros(0, dtype=np.int64)
        self.value = np.zeros(0, dtype=np.float32)
        self._kept = 0

    def add(self, feature: np.ndarray, image: np.ndarray, value: np.ndarray) -> None:
        """Offer (feature, image, image-level value > 0) rows; images must come in ascending id order."""
        keep = value >= self.threshold[feature]
        self.feature = np.concatenate([self.feature, feature[keep]])
        self.image = np.concatenate([self.image, image[keep]])
        self.value = np.concatenate([self.value, value[keep]])
        if len(self.value) >= max(2 * self._kept, 1 << 20):
            self._prune()

    def merge(self, other: TopImages) -> None:
        """Take the candidates of later images (other saw only image ids above every id seen here)."""
        self.add(other.feature, other.image, other.value)

    def _prune(self) -> None:
        """Cut to the best M per feature and raise the thresholds of the features that have M."""
        packed = (self.feature << 32) | (_VALUE_BITS - float_bits(self.value))
        order = np.argsort(packed, kind="stable")  # equal values keep ascending image order
        feature = self.feature[order]
        first = np.flatnonzero(np.r_[True, feature[1:] != feature[:-1]])
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.append(first, len(order))))
        order = order[rank < self.top]
        self.feature, self.image, self.value = self.feature[order], self.image[order], self.value[order]
        full = rank[rank < self.top] == self.top - 1
        self.threshold[self.feature[full]] = self.value[full]
        self._kept = len(order)

    def result(self) -> dict[str, np.ndarray]:
        """Columns feature, rank (1-based), image_id, value, sorted by feature then rank."""
        self._prune()
        feature = self.feature
        first = np.flatnonzero(np.r_[True, feature[1:] != feature[:-1]]) if len(feature) else np.zeros(0, np.int64)
        rank = np.arange(len(feature)) - np.repeat(first, np.diff(np.append(first, len(feature)))) + 1
        return {
            "feature": feature.astype(np.int32),
            "rank": rank.astype(np.int32),
            "image_id": self.image.astype(np.int32) if self.image.max(initial=0) < 2**31 else self.image,
            "value": self.value,
        }
