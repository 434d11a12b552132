"""The columns of the features table `saetui stats` writes (the README documents each)."""

from __future__ import annotations

FEATURE_COLUMNS: tuple[str, ...] = (
    "feature",
    "n_tokens",
    "n_images",
    "frequency",
    "image_frequency",
    "mean_value",
    "max_value",
    "label_entropy",
    "label_entropy_norm",
    "top_label",
    "top_label_share",
    "n_labels",
    "n_labelled",
    "lens_label",
    "lens_score",
    "dead",
)
