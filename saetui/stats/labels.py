"""Label entropy of each feature's top images: activation-weighted label shares, in nats.

Definition (README): over the feature's top-N images by image-level activation (N = 100 by default; every
stored top image has an image-level activation > 0), the images that carry a label give p(label) = the sum of
their activations / the sum over all of them; label_entropy = H = -sum p ln p (nats); label_entropy_norm =
H / ln(min(N, number of distinct labels in the database)). Both are NULL where fewer than `min_labelled` labelled
images fire among the top N, or where the normaliser is ln 1 = 0. top_label is the label with the largest share
(ties: alphabetical first), n_labels the distinct labels among those images, n_labelled their number.
"""

from __future__ import annotations

import math

import numpy as np


def label_entropy(
    feature: np.ndarray,
    rank: np.ndarray,
    value: np.ndarray,
    label_code: np.ndarray,
    n_features: int,
    top_n: int,
    min_labelled: int,
    n_dataset_labels: int,
) -> dict[str, np.ndarray]:
    """Per feature (index = feature id): label_entropy, label_entropy_norm (NaN = NULL), top_label code (-1 =
    none), top_label_share, n_labels, n_labelled, from top-image rows with label codes (-1 = unlabelled); and
    the shares themselves as rows share_feature, share_label (code), share, share_images.

    Label codes must follow alphabetical order of the labels, so the smallest code wins a tie.
    """
    keep = (rank <= top_n) & (label_code >= 0)
    f, code, weight = feature[keep].astype(np.int64), label_code[keep].astype(np.int64), value[keep].astype(np.float64)
    n_codes = int(code.max(initial=-1)) + 1
    pair, inverse = np.unique(f * max(n_codes, 1) + code, return_inverse=True)
    pair_weight = np.bincount(inverse, weights=weight)
    pair_count = np.bincount(inverse)
    pair_f, pair_code = pair // max(n_codes, 1), pair % max(n_codes, 1)
    total = np.bincount(pair_f, weights=pair_weight, minlength=n_features)
    p = pair_weight / total[pair_f]
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = np.maximum(-np.bincount(pair_f, weights=plogp, minlength=n_features), 0.0)
    n_labelled = np.bincount(pair_f, weights=pair_count, minlength=n_features).astype(np.int64)
    n_labels = np.bincount(pair_f, minlength=n_features).astype(np.int64)
    best = np.full(n_features, -np.inf)
    np.maximum.at(best, pair_f, p)
    winners = np.flatnonzero(p == best[pair_f])  # pairs sorted by (feature, code): first winner = smallest code
    first_f, first_at = np.unique(pair_f[winners], return_index=True)
    top_label = np.full(n_features, -1, dtype=np.int64)
    top_label[first_f] = pair_code[winners[first_at]]
    top_share = np.full(n_features, np.nan)
    top_share[first_f] = best[first_f]
    defined = n_labelled >= max(min_labelled, 1)
    norm = math.log(min(top_n, n_dataset_labels)) if n_dataset_labels > 1 else 0.0
    return {
        "label_entropy": np.where(defined, entropy, np.nan),
        "label_entropy_norm": np.where(defined & (norm > 0), entropy / norm if norm > 0 else np.nan, np.nan),
        "top_label": top_label,
        "top_label_share": top_share,
        "n_labels": n_labels,
        "n_labelled": n_labelled,
        "share_feature": pair_f,
        "share_label": pair_code,
        "share": p,
        "share_images": pair_count,
    }
