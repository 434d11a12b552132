"""Property test: statistics of random multi-run databases equal a plain SQL recomputation of the README definitions.

The databases have what real ones have: several runs (appended sources, resumed and limited runs), image ids with
gaps far wider than 32,768 (the span that overflowed the old packed sort key at 65,536 features), chunks of the
stats pass that straddle those gaps, negative kept values, unlabelled images and ties.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.handbuilt import settings as run_settings
from saetui.stats import StatsOptions, compute_stats
from saetui.store.writer import ImageRecord, IndexWriter

N_FEATURES = 65_536  # real CLIP-Scope width: image ranks x features overflow 31 bits past 32,768 images
K = 4
TOKENS = 3
LABELS = ("ant", "bee", "cat", None)
TOP, ENTROPY_TOP, MIN_LABELLED = 6, 4, 2


@st.composite
def databases(draw: st.DrawFn) -> list[dict[str, object]]:
    """Runs of images: each with a gap before its first id (the first gap always > 32,768) and random codes."""
    runs = []
    next_id = 0
    for run in range(draw(st.integers(1, 3))):
        gap = draw(st.integers(32_769, 200_000)) if run == 0 else draw(st.integers(0, 150_000))
        n_images = draw(st.integers(1, 9))
        ids = next_id + gap + np.cumsum(draw(st.lists(st.integers(1, 40_000), min_size=n_images, max_size=n_images)))
        next_id = int(ids[-1]) + 1
        seed = draw(st.integers(0, 2**32 - 1))
        runs.append(
            {
                "ids": ids.tolist(),
                "seed": seed,
                "labels": draw(st.lists(st.sampled_from(LABELS), min_size=n_images, max_size=n_images)),
            }
        )
    return runs


def _write(path: Path, runs: list[dict[str, object]]) -> None:
    """Write each run as its own source through the IndexWriter, in batches of at most 4 images."""
    for number, run in enumerate(runs):
        rng = np.random.default_rng(run["seed"])
        ids, labels = run["ids"], run["labels"]
        # Few distinct features (some of them high ids) so features share images and ties happen.
        pool = np.array([0, 1, 2, 3, 7, 4_095, 32_768, 65_535] + list(rng.integers(0, N_FEATURES, 4)))
        with IndexWriter.open(path, run_settings(N_FEATURES, K), source=f"src{number}", source_items=len(ids)) as w:
            for start in range(0, len(ids), 4):
                batch = ids[start : start + 4]
                shape = (len(batch), TOKENS, K)
                features = np.stack(
                    [[rng.choice(np.unique(pool), K, replace=False) for _ in range(TOKENS)] for _ in batch]
                ).astype(np.int32)
                values = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, 3.5], size=shape).astype(np.float32)
                values += rng.integers(0, 3, size=shape) * np.float32(0.25)
                records = [
                    ImageRecord(i, f"/r{number}/{i}.jpg", labels[start + j], 224, 224, f"h{i}", start + j, None)
                    for j, i in enumerate(batch)
                ]
                ones = np.ones(shape[:2], np.float32)
                w.write_batch(records, np.arange(TOKENS), features, values, ones, 4 * ones)
            w.finish_run()


def _sql_features(con: duckdb.DuckDBPyConnection) -> dict[int, tuple]:
    """README definitions in SQL: active tokens, frequency, image_frequency, mean and max active value."""
    rows = con.sql(
        """WITH totals AS (SELECT (SELECT count(*) FROM token_errors) AS tokens,
                                  (SELECT count(*) FROM images) AS images)
           SELECT feature, count(*), count(DISTINCT image_id), count(*) / any_value(tokens),
                  count(DISTINCT image_id) / any_value(images), avg(value), max(value)
           FROM activations, totals WHERE value > 0 GROUP BY feature"""
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def _sql_top_images(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Top images per feature by image-level activation (max over stored tokens), ties by smaller image id."""
    return con.sql(
        f"""SELECT feature, rank, image_id, value FROM (
              SELECT feature, image_id, max(value) AS value,
                     row_number() OVER (PARTITION BY feature ORDER BY max(value) DESC, image_id) AS rank
              FROM activations WHERE value > 0 GROUP BY feature, image_id)
            WHERE rank <= {TOP} ORDER BY feature, rank"""
    ).fetchall()


def _sql_entropy(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[float | None, str | None]]:
    """Label entropy (nats) and top label over the top-N images' activation-weighted label shares."""
    shares = con.sql(
        f"""WITH top AS (
              SELECT feature, image_id, max(value) AS value,
                     row_number() OVER (PARTITION BY feature ORDER BY max(value) DESC, image_id) AS rank
              FROM activations WHERE value > 0 GROUP BY feature, image_id),
            labelled AS (SELECT t.feature, i.label, t.value FROM top t JOIN images i USING (image_id)
                         WHERE t.rank <= {ENTROPY_TOP} AND i.label IS NOT NULL)
            SELECT feature, label, sum(value) / sum(sum(value)) OVER (PARTITION BY feature)
            FROM labelled GROUP BY feature, label ORDER BY feature, label"""
    ).fetchall()
    out: dict[int, tuple[float | None, str | None]] = {}
    for feature in {row[0] for row in shares}:
        mine = [row for row in shares if row[0] == feature]
        n_labelled = con.sql(
            f"""SELECT count(*) FROM (SELECT image_id, max(value) v FROM activations WHERE feature = {feature}
                AND value > 0 GROUP BY image_id ORDER BY v DESC, image_id LIMIT {ENTROPY_TOP}) t
                JOIN images USING (image_id) WHERE label IS NOT NULL"""
        ).fetchall()[0][0]
        entropy = -sum(p * math.log(p) for _, _, p in mine if p > 0)
        best = max(p for _, _, p in mine)
        top_label = min(label for _, label, p in mine if p == best)
        out[feature] = (entropy if n_labelled >= MIN_LABELLED else None, top_label)
    return out


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(runs=databases(), chunk_images=st.integers(1, 7), threads=st.integers(1, 4))
def test_stats_equal_sql_recomputation(
    tmp_path_factory, runs: list[dict[str, object]], chunk_images: int, threads: int
) -> None:
    """features, feature_images and label entropy equal SQL over activations, whatever the id gaps, chunks and
    scan threads."""
    path = tmp_path_factory.mktemp("property") / "multi.duckdb"
    _write(path, runs)
    options = StatsOptions(
        lens=False,
        top_images=TOP,
        entropy_top=ENTROPY_TOP,
        entropy_min_labelled=MIN_LABELLED,
        chunk_images=chunk_images,
    )
    compute_stats(path, options, progress=None, threads=threads)
    con = duckdb.connect(str(path), read_only=True)
    try:
        ids = [row[0] for row in con.sql("SELECT image_id FROM images ORDER BY 1").fetchall()]
        assert max(b - a for a, b in zip([-1, *ids], ids, strict=False)) > 32_768  # the gap this test is about
        expected = _sql_features(con)
        got = {
            r[0]: r[1:]
            for r in con.sql(
                "SELECT feature, n_tokens, n_images, frequency, image_frequency, mean_value, max_value "
                "FROM features WHERE n_tokens > 0"
            ).fetchall()
        }
        assert got.keys() == expected.keys()
        for feature, want in expected.items():
            assert got[feature][:2] == want[:2], feature
            # Frequencies and means are quotients of exact sums of float32 values: equal to float64 rounding.
            assert np.allclose(got[feature][2:], want[2:], rtol=1e-12, atol=0), feature
        top = con.sql("SELECT feature, rank, image_id, value FROM feature_images ORDER BY feature, rank").fetchall()
        assert top == _sql_top_images(con)
        valid_ids = set(ids)
        assert all(image_id in valid_ids for _, _, image_id, _ in top)
        entropy = {
            r[0]: (r[1], r[2]) for r in con.sql("SELECT feature, label_entropy, top_label FROM features").fetchall()
        }
        for feature, (want_h, want_label) in _sql_entropy(con).items():
            got_h, got_label = entropy[feature]
            assert got_label == want_label, feature
            assert (got_h is None) == (want_h is None), feature
            if want_h is not None:
                assert math.isclose(got_h, want_h, rel_tol=1e-9, abs_tol=1e-12), feature
    finally:
        con.close()


DERIVED = ("features", "feature_images", "feature_labels", "feature_histograms", "coactivations")


def _derived(path: Path) -> dict[str, list[tuple]]:
    """Every row of the derived tables the scans fill, in a fixed order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {name: con.sql(f"SELECT * FROM {name} ORDER BY ALL").fetchall() for name in DERIVED}
    finally:
        con.close()


def test_scan_threads_do_not_change_any_table(tmp_path: Path) -> None:
    """One thread and three threads over 9 chunks give identical rows in every derived table (no tolerance)."""
    path = tmp_path / "threads.duckdb"
    runs = [{"ids": list(range(5, 41)), "seed": 7, "labels": [LABELS[i % 4] for i in range(36)]}]
    _write(path, runs)
    options = StatsOptions(lens=False, top_images=TOP, entropy_top=ENTROPY_TOP, entropy_min_labelled=MIN_LABELLED,
                           chunk_images=4, coactivation_sample=8)  # fmt: skip
    compute_stats(path, options, progress=None, threads=1)
    single = _derived(path)
    compute_stats(path, options, progress=None, threads=3, force=True)
    assert _derived(path) == single
    assert all(single[name] for name in DERIVED)
