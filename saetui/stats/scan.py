"""The two streaming passes over the stored codes that fill the per-feature temp tables of a stats run."""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np

from saetui.stats.accumulators import FeatureTotals, TopImages, group_pairs
from saetui.stats.coactivation import CoactivationSampler
from saetui.stats.histogram import LogHistogram
from saetui.stats.labels import label_entropy
from saetui.stats.options import StatsOptions
from saetui.stats.temp import nullable, register_columns
from saetui.stats.tokens import active_pairs, token_rows

Progress = Callable[[str, int, int], None]


def label_codes(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, list[str]]:
    """Per image id its label's code (-1 = none) with codes in alphabetical label order, and the labels."""
    rows = con.execute("SELECT image_id, label FROM images").fetchall()
    labels = sorted({label for _, label in rows if label is not None})
    index = {label: i for i, label in enumerate(labels)}
    codes = np.full(max((image_id for image_id, _ in rows), default=-1) + 1, -1, dtype=np.int64)
    for image_id, label in rows:
        if label is not None:
            codes[image_id] = index[label]
    return codes, labels


def scan_codes(
    con: duckdb.DuckDBPyConnection,
    chunks: list[tuple[int, int]],
    n_features: int,
    options: StatsOptions,
    progress: Progress | None,
) -> None:
    """Two streaming passes over the codes; leaves temp tables _features, _feature_images, _histograms and
    _coactivations for the final swap."""
    totals = FeatureTotals(n_features)
    tops = TopImages(n_features, options.top_images)
    histogram = LogHistogram(n_features, options.histogram_bins_per_octave)
    for done, pairs in enumerate(active_pairs(con, chunks), start=1):
        histogram.add(pairs.feature, pairs.value)
        groups = group_pairs(pairs.image, pairs.feature, pairs.value, n_features)
        totals.add(groups)
        if options.image_tokens != "all":
            scope = pairs.token == 0 if options.image_tokens == "cls" else pairs.token > 0
            groups = group_pairs(pairs.image[scope], pairs.feature[scope], pairs.value[scope], n_features)
        tops.add(groups["feature"], groups["image"], groups["max"])
        if progress is not None:
            progress("features", done, len(chunks))
    sampler = CoactivationSampler(totals.n_tokens, options.coactivation_sample)
    for done, chunk in enumerate(chunks, start=1):
        for position, features, active in token_rows(con, [chunk]):
            sampler.add(position, features, active)
        if progress is not None:
            progress("coactivation", done, len(chunks))
    top = tops.result()
    codes, labels = label_codes(con)
    entropy = label_entropy(
        top["feature"],
        top["rank"],
        top["value"],
        codes[top["image_id"]] if len(codes) else np.zeros(0, np.int64),
        n_features,
        options.entropy_top,
        options.entropy_min_labelled,
        len(labels),
    )
    label_array = np.asarray(labels + [None], dtype=object)  # code -1 -> None
    alive = totals.n_tokens > 0
    register_columns(
        con,
        "_features",
        {
            "feature": np.arange(n_features, dtype=np.int32),
            "n_tokens": totals.n_tokens,
            "n_images": totals.n_images,
            "sum_value": totals.sum,
            "max_value": nullable(totals.max, ~alive),
            "label_entropy": nullable(entropy["label_entropy"]),
            "label_entropy_norm": nullable(entropy["label_entropy_norm"]),
            "top_label": label_array[entropy["top_label"]].tolist(),
            "top_label_share": nullable(entropy["top_label_share"]),
            "n_labels": entropy["n_labels"].astype(np.int32),
            "n_labelled": entropy["n_labelled"].astype(np.int32),
        },
    )
    register_columns(con, "_feature_images", top)
    register_columns(
        con,
        "_feature_labels",
        {
            "feature": entropy["share_feature"].astype(np.int32),
            "label": label_array[entropy["share_label"]].tolist(),
            "share": entropy["share"],
            "n_images": entropy["share_images"].astype(np.int32),
        },
    )
    register_columns(con, "_histograms", histogram.rows())
    partners = sampler.top_partners(options.coactivation_top)
    partners["sample_tokens"] = partners.pop("sample")
    register_columns(con, "_coactivations", partners)
