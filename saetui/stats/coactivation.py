"""Coactivation of features: precomputed top partners per feature (token level) and exact on-demand queries.

Token-level coactivation of f with g is the number of stored tokens where both are active (value > 0);
P(g|f) = count / active tokens of f; Jaccard = count / (active tokens of f + of g - count).
Image level (an option) counts images where both are active on some stored token.

Computing every pair exactly costs the sum over tokens of (active features)^2, about 26 billion increments at
100,000 images, so `saetui stats` stores the top partners of each feature computed from a uniform sample of
about `sample` of its active tokens (every token when the feature has at most that many: then the row is exact,
flagged `exact`). The sample is Bernoulli with rate min(1, sample / n_f) driven by one hash of the token's position, so
the sampled tokens of different features overlap and are collected in a single streaming pass. For a sampled
feature count is the estimate P(g|f) x n_f, with a standard error of at most 0.5 / sqrt(sample) on P(g|f).
`exact_counts` answers any feature exactly with one streaming pass (one to two minutes at 100,000 images).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np

KEY_BUDGET = 1 << 24  # pair keys materialised at once in the counting phase
_NO_KEY = np.int32(np.iinfo(np.int32).max)  # sorts after every real pair key
_LEVELS = 128  # levels of the per-feature log2 score histograms that prefilter the ranking


def token_hash01(positions: np.ndarray) -> np.ndarray:
    """A fixed splitmix64 hash of integer token positions mapped to uniform floats in [0, 1)."""
    z = positions.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class CoactivationSampler:
    """Collects, chunk by chunk, the sampled tokens of every feature with the active features of each token."""

    def __init__(self, n_tokens: np.ndarray, sample: int) -> None:
        """n_tokens[f] = active tokens of feature f over the whole database."""
        self.n_tokens = n_tokens.astype(np.int64)
        self.n_features = len(n_tokens)
        self.rate = np.minimum(1.0, sample / np.maximum(self.n_tokens, 1))
        self.dtype = np.uint16 if self.n_features <= (1 << 16) else np.int32
        self._entry_feature: list[np.ndarray] = []
        self._entry_token: list[np.ndarray] = []
        self._features: list[np.ndarray] = []
        self._active: list[np.ndarray] = []
        self._tokens = 0

    def add(self, position: np.ndarray, features: np.ndarray, active: np.ndarray) -> None:
        """Add stored tokens: position [N] (a database-wide token id), features [N, k], active [N, k]."""
        if len(position) == 0:
            return
        sampled = active & (token_hash01(position)[:, None] < self.rate[features])
        kept = sampled.any(axis=1)
        index = np.cumsum(kept) - 1 + self._tokens
        rows, _ = np.nonzero(sampled)
        self._entry_feature.append(features[sampled].astype(np.int32))
        self._entry_token.append(index[rows])
        self._features.append(features[kept].astype(self.dtype))
        self._active.append(active[kept])
        self._tokens += int(kept.sum())

    def merge(self, other: CoactivationSampler) -> None:
        """Append the sampled tokens of the next image range (filled by another thread, same totals)."""
        self._entry_feature += other._entry_feature
        self._entry_token += [tokens + self._tokens for tokens in other._entry_token]
        self._features += other._features
        self._active += other._active
        self._tokens += other._tokens

    def top_partners(self, top: int, threads: int = 1) -> dict[str, np.ndarray]:
        """Per feature the `top` partners by count and the `top` by Jaccard (union), as column arrays; the feature
        blocks are ranked by `threads` threads (each holds one block's keys) and concatenated in feature order."""
        names = ("feature", "other", "count", "p_given", "jaccard", "rank_count", "rank_jaccard", "exact", "sample")
        if not self._entry_feature:
            return {name: np.zeros(0) for name in names}
        entry_feature = np.concatenate(self._entry_feature)
        entry_token = np.concatenate(self._entry_token)
        features = np.concatenate(self._features)
        active = np.concatenate(self._active)
        self._entry_feature, self._entry_token, self._features, self._active = [], [], [], []
        order = np.argsort(entry_feature, kind="stable")
        entry_feature, entry_token = entry_feature[order], entry_token[order]
        width = features.shape[1]
        blocks = _blocks(entry_feature, width, self.n_features)
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(blocks)))) as pool:
            parts = list(
                pool.map(lambda ab: self._block(entry_feature[ab[0] : ab[1]], entry_token[ab[0] : ab[1]], features,
                                                active, top), blocks)
            )  # fmt: skip
        if not parts:  # no feature was ever active
            return {name: np.zeros(0) for name in names}
        return {name: np.concatenate([part[name] for part in parts]) for name in names}

    def _block(
        self, feature: np.ndarray, token: np.ndarray, features: np.ndarray, active: np.ndarray, top: int
    ) -> dict[str, np.ndarray]:
        """Count the partners of the sampled tokens of a run of whole features; keep each one's top lists."""
        n = self.n_features
        base = int(feature[0])
        local = (feature - base).astype(np.int32)
        keys = np.where(active[token], local[:, None] * np.int32(n) + features[token].astype(np.int32), _NO_KEY)
        keys = np.sort(keys, axis=None)
        keys = keys[: np.searchsorted(keys, _NO_KEY)]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        unique = keys[starts]
        counts = np.diff(np.append(starts, len(keys)))
        f_local, g = unique // n, unique % n
        sampled = np.bincount(local, minlength=int(local[-1]) + 1)  # each entry is one sampled token of f
        keep = f_local + base != g
        unique, f_local, g, c = unique[keep], f_local[keep], g[keep], counts[keep].astype(np.float64)
        f = f_local.astype(np.int64) + base
        n_s = sampled[f_local].astype(np.float64)
        exact = self.rate[f] >= 1.0
        p_given = c / n_s
        n_f = self.n_tokens[f].astype(np.float64)
        count = np.where(exact, c, np.rint(p_given * n_f))
        union = n_f + self.n_tokens[g] - count
        jaccard = np.divide(count, union, out=np.zeros_like(count), where=union > 0)
        by_count, rank_count = _top_in_groups(f_local, count, g, top)
        by_jaccard, rank_jaccard = _top_in_groups(f_local, jaccard, g, top)
        chosen = np.union1d(by_count, by_jaccard)
        ranks_c = np.zeros(len(unique), dtype=np.int32)
        ranks_c[by_count] = rank_count
        ranks_j = np.zeros(len(unique), dtype=np.int32)
        ranks_j[by_jaccard] = rank_jaccard
        return {
            "feature": f[chosen].astype(np.int32),
            "other": g[chosen].astype(np.int32),
            "count": count[chosen].astype(np.int64),
            "p_given": p_given[chosen],
            "jaccard": jaccard[chosen],
            "rank_count": ranks_c[chosen],
            "rank_jaccard": ranks_j[chosen],
            "exact": exact[chosen],
            "sample": sampled[f_local[chosen]].astype(np.int64),
        }


def _top_in_groups(group: np.ndarray, score: np.ndarray, other: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ranked 1..top within their group by score desc, then other asc.

    A histogram of log2(score) per group first drops rows that cannot make their group's top (at least `top`
    rows of the group score a level above them); the survivors are ranked exactly with a stable sort.
    """
    positive = score > 0
    level = np.zeros(len(score), dtype=np.int64)
    level[positive] = np.clip(np.floor(np.log2(score[positive]) * 2).astype(np.int64) + 64, 1, _LEVELS - 1)
    n_groups = int(group.max(initial=-1)) + 1
    hist = np.bincount(group * _LEVELS + level, minlength=n_groups * _LEVELS).reshape(n_groups, _LEVELS)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1] - hist  # rows strictly above each level
    candidates = np.flatnonzero(above[group, level] < top)
    order = candidates[np.lexsort((other[candidates], -score[candidates], group[candidates]))]
    sorted_group = group[order]
    first = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    rank = np.arange(len(order)) - np.repeat(first, np.diff(np.append(first, len(order)))) + 1
    keep = rank <= top
    return order[keep], rank[keep].astype(np.int32)


def _blocks(feature_sorted: np.ndarray, width: int, n_features: int) -> list[tuple[int, int]]:
    """Split sorted entries into runs of whole features with about KEY_BUDGET pair keys (width per entry) and a
    feature span small enough for int32 keys (span x n_features < 2^31)."""
    if len(feature_sorted) == 0:
        return []
    span = max(1, ((1 << 31) - 2) // n_features)
    per_block = max(1, KEY_BUDGET // width)
    boundaries = np.flatnonzero(np.r_[True, feature_sorted[1:] != feature_sorted[:-1]])
    edges = [0]
    start_feature = int(feature_sorted[0])
    for b in boundaries[1:]:
        f = int(feature_sorted[b])
        if b - edges[-1] >= per_block or f - start_feature >= span:
            edges.append(int(b))
            start_feature = f
    edges.append(len(feature_sorted))
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _member(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each value occurs in the sorted key array."""
    if len(sorted_keys) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[at] == values


def exact_counts(
    con: duckdb.DuckDBPyConnection, feature: int, level: str, n_features: int, chunk_images: int = 2000
) -> np.ndarray:
    """Exact coactivation counts of one feature with every feature (index = other; its own entry is 0).

    Token level counts stored tokens where both are active, image level images where both are active on some
    stored token. One streaming pass over the compact codes (about a minute per 100,000 images).
    """
    from saetui.stats.tokens import TOKEN_STRIDE, active_pairs, image_chunks

    counts = np.zeros(n_features, dtype=np.int64)
    for pairs in active_pairs(con, image_chunks(con, chunk_images)):
        mine = pairs.feature == feature
        if not mine.any():
            continue
        if level == "token":
            position = pairs.image * TOKEN_STRIDE + pairs.token
            shared = _member(np.unique(position[mine]), position)
            counts += np.bincount(pairs.feature[shared], minlength=n_features)
        else:
            shared = _member(np.unique(pairs.image[mine]), pairs.image)
            distinct = np.unique(pairs.image[shared] * n_features + pairs.feature[shared])
            counts += np.bincount(distinct % n_features, minlength=n_features)
    counts[feature] = 0
    return counts
