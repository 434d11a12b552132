"""Hand-built databases written through saetui's IndexWriter, small enough that every statistic is known by hand.

Every stored token holds exactly k pairs, as in a real index. Tokens given fewer pairs are padded with the filler
features n_features - k .. n_features - 1 at value 0 (kept, never active, so always dead); tests keep their own
features below n_features - k.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from saetui.store.writer import BatchMoments, ImageRecord, IndexWriter

N_TOKENS = 257


def settings(n_features: int, k: int, tokens: str = "all") -> dict[str, object]:
    """Run settings of a hand-built database (the SAE fields name the tiny CLIP-Scope stand-in)."""
    return {
        "model_id": "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
        "pretrained": "laion2b_s32b_b82k",
        "layer": 20,
        "sae_name": "layer20",
        "sae_repo": "lewington/CLIP-ViT-L-scope",
        "sae_file": "20_resid/1200013184.pt",
        "d_in": 32,
        "n_features": n_features,
        "k": k,
        "tokens": tokens,
        "precision": "fp32",
    }


def build_db(
    path: Path,
    images: Sequence[tuple[int, str, str | None]],
    activations: Iterable[tuple[int, int, int, float]],
    n_features: int,
    errors: Iterable[tuple[int, int, float, float]] | None = None,
    tokens_per_image: int = N_TOKENS,
    k: int = 4,
    moments: BatchMoments | None = None,
    source: str = "handbuilt",
) -> Path:
    """Write images (image_id, path, label) with activations (image_id, token, feature, value) in one batch.

    errors: (image_id, token, sse, total_ss); without them every token gets sse 1 and total_ss 4. An existing
    database gets the images appended as a new run over `source`.
    """
    filler = list(range(n_features - k, n_features))
    pairs: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    for image_id, token, feature, value in activations:
        assert feature < n_features - k, f"feature {feature} collides with the fillers {filler}"
        pairs[(image_id, token)].append((feature, value))
    ids = [image_id for image_id, _, _ in images]
    row = {image_id: i for i, image_id in enumerate(ids)}
    shape = (len(ids), tokens_per_image, k)
    features = np.empty(shape, dtype=np.int32)
    values = np.zeros(shape, dtype=np.float32)
    for i, image_id in enumerate(ids):
        for token in range(tokens_per_image):
            kept = pairs.pop((image_id, token), [])
            assert len(kept) <= k, f"more than k = {k} pairs on image {image_id} token {token}"
            fill = filler[: k - len(kept)]
            features[i, token] = [f for f, _ in kept] + fill
            values[i, token] = [v for _, v in kept] + [0.0] * len(fill)
    assert not pairs, f"activations of unknown images or tokens: {sorted(pairs)[:3]}"
    sse = np.ones(shape[:2], dtype=np.float32)
    total_ss = np.full(shape[:2], 4.0, dtype=np.float32)
    for image_id, token, s, t in errors or ():
        sse[row[image_id], token], total_ss[row[image_id], token] = s, t
    records = [
        ImageRecord(image_id, image_path, label, 224, 224, f"hash{image_id}", image_id, None)
        for image_id, image_path, label in images
    ]
    with IndexWriter.open(path, settings(n_features, k), source=source, source_items=len(ids)) as writer:
        writer.write_batch(records, np.arange(tokens_per_image), features, values, sse, total_ss, moments)
        writer.finish_run()
    return path


def random_db(
    path: Path,
    n_images: int = 30,
    n_features: int = 512,
    k: int = 8,
    labels: Sequence[str] = ("cat", "dog", "bus"),
    seed: int = 0,
) -> Path:
    """A seeded database of n_images x 257 tokens x k kept pairs (about 10% non-positive), labelled in turn.

    Feature 100 + i fires on half the patches of the images of label i.
    """
    rng = np.random.default_rng(seed)
    images = [(i, f"/data/{labels[i % len(labels)]}/{i}.jpg", labels[i % len(labels)]) for i in range(n_images)]
    log_w = -np.log(np.arange(1, n_features + 1))
    n_rows = n_images * N_TOKENS
    scores = log_w + rng.gumbel(size=(n_rows, n_features))  # Gumbel top-k = k draws without replacement
    image = np.repeat(np.arange(n_images), N_TOKENS)
    token = np.tile(np.arange(N_TOKENS), n_images)
    label_feature = 100 + image % len(labels)
    boost = (token > 0) & (rng.random(n_rows) < 0.5)
    scores[np.flatnonzero(boost), label_feature[boost]] = np.inf
    features = np.argpartition(-scores, k - 1, axis=1)[:, :k].astype(np.int32)
    values = (rng.exponential(1.0, size=(n_rows, k)) * np.where(rng.random((n_rows, k)) < 0.1, -1, 1)).astype(
        np.float32
    )
    sse = rng.uniform(0, 2, n_rows).astype(np.float32)
    total_ss = rng.uniform(2, 4, n_rows).astype(np.float32)
    records = [ImageRecord(i, p, label, 224, 224, f"hash{i}", i, None) for i, p, label in images]
    x_sum = rng.normal(0.0, 1.0, 32)
    moments = BatchMoments(tokens=n_rows, sum_sq=float(n_rows * 40.0), sum_x=x_sum)
    with IndexWriter.open(path, settings(n_features, k), source="random", source_items=n_images) as writer:
        writer.write_batch(
            records,
            np.arange(N_TOKENS),
            features.reshape(n_images, N_TOKENS, k),
            values.reshape(n_images, N_TOKENS, k),
            sse.reshape(n_images, N_TOKENS),
            total_ss.reshape(n_images, N_TOKENS),
            moments,
        )
        writer.finish_run()
    return path
