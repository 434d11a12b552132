"""Scores that need no language model: the Monosemanticity Score of each feature, and a CLIP score per explanation.

Monosemanticity Score (Pach et al., "Sparse Autoencoders Learn Monosemantic Features in Vision-Language Models"):
for a feature with image-level activations a_n and unit image embeddings e_n,

    MS = sum_{n<m} w_n w_m cos(e_n, e_m) / sum_{n<m} w_n w_m,    w_n = a_n / max_n a_n  (clipped at 0),

the activation-weighted mean pairwise cosine of the images it fires on. Pach et al. sum over every image of a
dataset with min-max normalised activations; here the sum runs over the feature's stored top images (up to
`saetui stats`'s top_images, 200 by default) with the minimum taken as 0 (the dataset minimum of any feature
that is inactive somewhere), so the images left out are those whose weights would be smallest. The embeddings
are the indexed model's final image embeddings (`index --embeddings`). Computed without the n^2 matrix:
sum_{n!=m} w_n w_m cos = |sum_n w_n e_n|^2 - sum_n w_n^2.

CLIP score of an explanation: the cosine of the explanation's CLIP text embedding with each top image's embedding
(the positives: the images the explanation was written from) against as many random indexed images outside the
feature's top set (the negatives, seeded); the score is the AUROC of telling them apart, P(pos > neg) with ties
counting half: 0.5 is chance, 1 means the text picks out exactly the feature's images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from saetui.errors import NotFoundError
from saetui.naming.grids import top_image_sets
from saetui.stats import queries
from saetui.store.annotations import Annotations
from saetui.store.connection import connect

MONOSEMANTICITY = "monosemanticity"
CLIP_AUROC = "clip_auroc"
ScoreRow = tuple[int, float | None, int, dict[str, Any]]


def monosemanticity(values: np.ndarray, embeddings: np.ndarray) -> float | None:
    """MS of one feature from its images' activations [n] and unit embeddings [n, d]; None below two images."""
    weights = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    if len(weights) < 2 or weights.max() <= 0:
        return None
    weights = weights / weights.max()
    pair_weight = weights.sum() ** 2 - np.square(weights).sum()
    if pair_weight <= 0:
        return None
    mean = weights @ np.asarray(embeddings, dtype=np.float64)
    pair_sum = float(mean @ mean) - float(np.square(weights) @ np.square(embeddings).sum(axis=1))
    return pair_sum / float(pair_weight)


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney statistic / (n_pos n_neg))."""
    if len(positives) == 0 or len(negatives) == 0:
        return None
    scores = np.concatenate([positives, negatives])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def monosemanticity_scores(
    con: duckdb.DuckDBPyConnection, features: Sequence[int], n_images: int | None = None
) -> list[ScoreRow]:
    """(feature, MS, images used, detail) for each feature, from its stored top images' embeddings."""
    queries.require(con, "feature_images")
    ids, matrix = queries.image_embeddings(con)
    position = {int(i): row for row, i in enumerate(ids)}
    rows: list[ScoreRow] = []
    for feature, (images, values) in top_image_sets(con, features, n_images).items():
        kept = [(position[i], v) for i, v in zip(images, values, strict=True) if i in position]
        if not kept:
            rows.append((feature, None, 0, {"missing_embeddings": len(images)}))
            continue
        index = np.array([k for k, _ in kept])
        score = monosemanticity(np.array([v for _, v in kept]), matrix[index])
        rows.append((feature, score, len(kept), {"missing_embeddings": len(images) - len(kept)}))
    return rows


def explanation_scores(
    con: duckdb.DuckDBPyConnection,
    explanations: dict[int, dict[str, Any]],
    embed_text: Callable[[str], np.ndarray],
    n_images: int = 20,
    seed: int = 0,
) -> list[ScoreRow]:
    """(feature, AUROC, positives, detail) of each explanation's CLIP text embedding: top images vs random ones."""
    ids, matrix = queries.image_embeddings(con)
    position = {int(i): row for row, i in enumerate(ids)}
    tops = top_image_sets(con, list(explanations), None)
    rng = np.random.default_rng(seed)
    rows: list[ScoreRow] = []
    for feature, explanation in explanations.items():
        top = set(tops[feature][0])
        images = [i for i in tops[feature][0] if i in position]
        shown = [int(i) for i in explanation.get("image_ids") or []]
        positives_ids = [i for i in shown if i in position] or images[:n_images]
        outside = np.array([row for i, row in position.items() if i not in top], dtype=np.int64)
        if not positives_ids or len(outside) == 0:
            rows.append((feature, None, 0, {"reason": "no embeddings of top or outside images"}))
            continue
        negatives = rng.choice(outside, size=min(len(positives_ids), len(outside)), replace=False)
        text = embed_text(str(explanation["explanation"]))
        text = text / max(float(np.linalg.norm(text)), 1e-12)
        pos = matrix[[position[i] for i in positives_ids]] @ text
        neg = matrix[negatives] @ text
        detail = {
            "explanation": explanation["explanation"],
            "model": explanation.get("model"),
            "n_negative": len(neg),
            "mean_positive": float(pos.mean()),
            "mean_negative": float(neg.mean()),
        }
        rows.append((feature, auroc(pos, neg), len(pos), detail))
    return rows


def score_features(
    db: Path,
    features: Sequence[int] | None = None,
    top: int | None = None,
    n_images: int | None = None,
    explanations: bool = False,
    cache: str | Path | None = None,
    device: object = "cpu",
) -> dict[str, list[ScoreRow]]:
    """Compute and store the Monosemanticity Score (and with explanations=True the CLIP AUROC of each
    explanation) of the chosen features (default: every alive feature)."""
    from saetui.naming.explain import choose_features

    side = Annotations(db)
    con = connect(db, read_only=True)
    try:
        if features is None and top is None:
            chosen = [int(f) for (f,) in con.execute("SELECT feature FROM features WHERE NOT dead").fetchall()]
        else:
            chosen = choose_features(con, features, top)
        results = {MONOSEMANTICITY: monosemanticity_scores(con, chosen, n_images)}
        side.set_scores(MONOSEMANTICITY, results[MONOSEMANTICITY])
        if explanations:
            wanted = set(chosen)
            explained = {f: e for f, e in side.latest_explanations().items() if f in wanted}
            if not explained:
                raise NotFoundError("no explanation to score among these features", "run `saetui explain` first")
            from saetui.stats.search import embed_text, text_model_dir

            model_dir = text_model_dir(con, cache)
            results[CLIP_AUROC] = explanation_scores(
                con, explained, lambda text: embed_text(model_dir, text, device), n_images or 20
            )
            side.set_scores(CLIP_AUROC, results[CLIP_AUROC])
    finally:
        con.close()
    return results
