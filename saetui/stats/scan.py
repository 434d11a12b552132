"""The two streaming passes over the stored codes that fill the per-feature temp tables of a stats run, in threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


def split_chunks(chunks: list[tuple[int, int]], parts: int) -> list[list[tuple[int, int]]]:
    """Consecutive runs of chunks, one per thread (at most `parts`, none empty), in image order."""
    parts = max(1, min(parts, len(chunks)))
    bounds = np.linspace(0, len(chunks), parts + 1).round().astype(int)
    return [chunks[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


class _Counter:
    """Chunks done across threads, reported through the stats progress callback."""

    def __init__(self, stage: str, total: int, progress: Progress | None) -> None:
        """Nothing done yet."""
        self.stage, self.total, self.progress = stage, total, progress
        self.done = 0
        self._lock = threading.Lock()

    def step(self) -> None:
        """One more chunk done."""
        with self._lock:
            self.done += 1
            if self.progress is not None:
                self.progress(self.stage, self.done, self.total)


def _feature_pass(
    con: duckdb.DuckDBPyConnection,
    chunks: list[tuple[int, int]],
    n_features: int,
    options: StatsOptions,
    count: _Counter,
) -> tuple[FeatureTotals, TopImages, LogHistogram]:
    """Pass 1 over a run of chunks (its own cursor): totals, top-image candidates and histogram."""
    totals = FeatureTotals(n_features)
    tops = TopImages(n_features, options.top_images)
    histogram = LogHistogram(n_features, options.histogram_bins_per_octave)
    cursor = con.cursor()
    try:
        for pairs in active_pairs(cursor, chunks):
            histogram.add(pairs.feature, pairs.value)
            groups = group_pairs(pairs.image, pairs.feature, pairs.value, n_features)
            totals.add(groups)
            if options.image_tokens != "all":
                scope = pairs.token == 0 if options.image_tokens == "cls" else pairs.token > 0
                groups = group_pairs(pairs.image[scope], pairs.feature[scope], pairs.value[scope], n_features)
            tops.add(groups["feature"], groups["image"], groups["max"])
            count.step()
    finally:
        cursor.close()
    return totals, tops, histogram


def _coactivation_pass(
    con: duckdb.DuckDBPyConnection, chunks: list[tuple[int, int]], n_tokens: np.ndarray, sample: int, count: _Counter
) -> CoactivationSampler:
    """Pass 2 over a run of chunks (its own cursor): the sampled tokens of every feature."""
    sampler = CoactivationSampler(n_tokens, sample)
    cursor = con.cursor()
    try:
        for chunk in chunks:
            for position, features, active in token_rows(cursor, [chunk]):
                sampler.add(position, features, active)
            count.step()
    finally:
        cursor.close()
    return sampler


def scan_codes(
    con: duckdb.DuckDBPyConnection,
    chunks: list[tuple[int, int]],
    n_features: int,
    options: StatsOptions,
    progress: Progress | None,
    threads: int = 1,
) -> None:
    """Two streaming passes over the codes, each split over threads by image range and merged in image order
    (the result does not depend on the thread count); leaves temp tables _features, _feature_images,
    _histograms and _coactivations for the final swap."""
    runs = split_chunks(chunks, threads)
    with ThreadPoolExecutor(max_workers=max(1, len(runs))) as pool:
        count = _Counter("features", len(chunks), progress)
        parts = list(pool.map(lambda run: _feature_pass(con, run, n_features, options, count), runs))
        totals, tops, histogram = parts[0] if parts else (
            FeatureTotals(n_features), TopImages(n_features, options.top_images),
            LogHistogram(n_features, options.histogram_bins_per_octave),
        )  # fmt: skip
        for more_totals, more_tops, more_histogram in parts[1:]:
            totals.merge(more_totals)
            tops.merge(more_tops)
            histogram.merge(more_histogram)
        del parts
        count = _Counter("coactivation", len(chunks), progress)
        samplers = list(
            pool.map(
                lambda run: _coactivation_pass(con, run, totals.n_tokens, options.coactivation_sample, count), runs
            )
        )
    sampler = samplers[0] if samplers else CoactivationSampler(totals.n_tokens, options.coactivation_sample)
    for more in samplers[1:]:
        sampler.merge(more)
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
    partners = sampler.top_partners(options.coactivation_top, threads)
    partners["sample_tokens"] = partners.pop("sample")
    register_columns(con, "_coactivations", partners)
