"""Known-answer tests of the features / feature_images / histogram / error tables on a hand-built database."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

from harness.handbuilt import build_db
from saetui.stats import StatsOptions, compute_stats
from saetui.store.writer import BatchMoments

TOKENS = 3  # tokens per image: 0 = CLS, 1..2 = patches
N_FEATURES = 16  # 12..15 are the harness's fillers (k = 4 kept pairs per token, never active)
NO_LENS = StatsOptions(lens=False)


def _scenario() -> tuple[list[tuple[int, str, str | None]], list[tuple[int, int, int, float]]]:
    """20 images (10 cat, 10 dog) plus one unlabelled image 20, and activations with known statistics."""
    images = [(i, f"/img/{i}.jpg", "cat" if i < 10 else "dog") for i in range(20)] + [(20, "/img/20.jpg", None)]
    acts: list[tuple[int, int, int, float]] = []
    for i in range(20):
        acts.append((i, 1, 0, 1.0))  # f0: once per labelled image, equal weight -> entropy ln 2
        acts.append((i, 2, 3, -0.5))  # f3: kept but never positive -> dead
    for i in range(10):
        acts.append((i, 2, 1, 1.0 + i))  # f1: cats only -> entropy 0
    for i in range(5):
        acts.append((i, 0, 4, 2.0))  # f4: 5 labelled images -> NULL entropy
    acts += [(0, 1, 5, 2.0), (0, 2, 5, 3.0)]  # f5: two tokens of image 0
    acts += [(0, 0, 6, 5.0), (1, 1, 6, 7.0)]  # f6: CLS of image 0, patch of image 1
    for i in range(6):
        acts.append((i, 0, 7, 3.0))  # f7: 6 cats at 3 ...
        acts.append((10 + i, 0, 7, 1.0))  # ... 6 dogs at 1 -> p = 0.75 / 0.25
    acts.append((20, 0, 8, 9.0))  # f8: only the unlabelled image
    return images, acts


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    """The scenario database with stats computed (no lens)."""
    images, acts = _scenario()
    path = build_db(tmp_path / "hand.duckdb", images, acts, N_FEATURES, tokens_per_image=TOKENS)
    compute_stats(path, NO_LENS, progress=None)
    return path


def _feature(path: Path, feature: int) -> dict:
    """One features row as a dict."""
    con = duckdb.connect(str(path), read_only=True)
    cursor = con.execute("SELECT * FROM features WHERE feature = $f", {"f": feature})
    row = dict(zip([d[0] for d in cursor.description], cursor.fetchall()[0], strict=True))
    con.close()
    return row


def _rows(path: Path, sql: str) -> list[tuple]:
    """All rows of a query."""
    con = duckdb.connect(str(path), read_only=True)
    rows = con.sql(sql).fetchall()
    con.close()
    return rows


def test_one_row_per_feature_and_dead_flags(db: Path) -> None:
    """features has rows 0..n_features-1; never-stored and never-positive features are dead."""
    rows = _rows(db, "SELECT feature, dead FROM features ORDER BY feature")
    assert [r[0] for r in rows] == list(range(N_FEATURES))
    dead = {r[0] for r in rows if r[1]}
    assert dead == {2, 3, 9, 10, 11, 12, 13, 14, 15}
    assert _feature(db, 3)["frequency"] == 0 and _feature(db, 3)["max_value"] is None


def test_frequencies_by_hand(db: Path) -> None:
    """frequency = active tokens / stored tokens; image_frequency = images with an active token / images."""
    stored = 21 * TOKENS
    f0 = _feature(db, 0)
    assert f0["n_tokens"] == 20 and f0["frequency"] == pytest.approx(20 / stored)
    assert f0["n_images"] == 20 and f0["image_frequency"] == pytest.approx(20 / 21)
    f5 = _feature(db, 5)
    assert f5["n_tokens"] == 2 and f5["frequency"] == pytest.approx(2 / stored)
    assert f5["image_frequency"] == pytest.approx(1 / 21)
    assert f5["mean_value"] == pytest.approx(2.5) and f5["max_value"] == pytest.approx(3.0)


def test_label_entropy_by_hand(db: Path) -> None:
    """Even split -> ln 2 (normalised 1); one label -> 0; 3:1 weights -> the weighted entropy; < 10 -> NULL."""
    f0 = _feature(db, 0)
    assert f0["label_entropy"] == pytest.approx(math.log(2))
    assert f0["label_entropy_norm"] == pytest.approx(1.0)
    assert f0["n_labels"] == 2 and f0["n_labelled"] == 20
    f1 = _feature(db, 1)
    assert f1["label_entropy"] == pytest.approx(0.0) and f1["top_label"] == "cat" and f1["top_label_share"] == 1
    f7 = _feature(db, 7)
    assert f7["label_entropy"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert f7["top_label"] == "cat" and f7["top_label_share"] == pytest.approx(0.75)
    f4 = _feature(db, 4)
    assert f4["label_entropy"] is None and f4["label_entropy_norm"] is None and f4["n_labelled"] == 5
    f8 = _feature(db, 8)
    assert f8["label_entropy"] is None and f8["top_label"] is None and f8["n_images"] == 1


def test_entropy_uses_only_top_n(tmp_path: Path) -> None:
    """With N = 10 only the 10 strongest images count: 10 cats at 2 beat 10 dogs at 1 -> entropy 0."""
    images = [(i, f"{i}.jpg", "cat" if i < 10 else "dog") for i in range(20)]
    acts = [(i, 0, 0, 2.0 if i < 10 else 1.0) for i in range(20)]
    path = build_db(tmp_path / "n.duckdb", images, acts, 4, tokens_per_image=1, k=2)
    compute_stats(path, StatsOptions(lens=False, entropy_top=10, top_images=10), progress=None)
    row = _rows(path, "SELECT label_entropy, label_entropy_norm, n_labelled FROM features WHERE feature = 0")[0]
    assert row == (pytest.approx(0.0), pytest.approx(0.0), 10)


def test_top_images_order_and_scope(tmp_path: Path) -> None:
    """feature_images ranks by image-level activation; cls/patches options change which tokens count."""
    images, acts = _scenario()
    path = build_db(tmp_path / "scope.duckdb", images, acts, N_FEATURES, tokens_per_image=TOKENS)
    expected = {"all": [(1, 7.0), (0, 5.0)], "cls": [(0, 5.0)], "patches": [(1, 7.0)]}
    for scope, rows in expected.items():
        compute_stats(path, StatsOptions(lens=False, image_tokens=scope), progress=None)
        got = _rows(path, "SELECT image_id, value FROM feature_images WHERE feature = 6 ORDER BY rank")
        assert got == rows, scope
        # image_frequency is about any stored token, whatever the scope
        assert _feature(path, 6)["n_images"] == 2
    top_f1 = _rows(path, "SELECT image_id, rank FROM feature_images WHERE feature = 1 ORDER BY rank LIMIT 3")
    assert top_f1 == [(9, 1), (8, 2), (7, 3)]


def test_top_images_cut_to_m_keeps_exact_counts(tmp_path: Path) -> None:
    """Storing only the top M per feature leaves image_frequency exact; ties break by image id."""
    images = [(i, f"{i}.jpg", None) for i in range(50)]
    acts = [(i, 0, 0, float(i % 7)) for i in range(50)]
    path = build_db(tmp_path / "m.duckdb", images, acts, 4, tokens_per_image=1, k=2)
    compute_stats(path, StatsOptions(lens=False, top_images=5, entropy_top=5, chunk_images=8), progress=None)
    got = _rows(path, "SELECT image_id, value FROM feature_images ORDER BY rank")
    assert got == [(6, 6.0), (13, 6.0), (20, 6.0), (27, 6.0), (34, 6.0)]
    n_active = sum(1 for i in range(50) if i % 7)
    assert _feature(path, 0)["n_images"] == n_active


def test_histogram_bins(db: Path) -> None:
    """Token values land in log2 bins of width 1/4 octave: 2.0 and 3.0 of feature 5 in bins 4 and 6."""
    rows = _rows(db, "SELECT bin, lo, hi, count FROM feature_histograms WHERE feature = 5 ORDER BY bin")
    assert [(r[0], r[3]) for r in rows] == [(4, 1), (6, 1)]
    assert rows[0][1] == pytest.approx(2.0) and rows[0][2] == pytest.approx(2**1.25)
    assert sum(r[0] for r in _rows(db, "SELECT count FROM feature_histograms WHERE feature = 0")) == 20


def test_position_and_image_errors_by_hand(tmp_path: Path) -> None:
    """Mean sse, CLIP-Scope EV and saev NMSE per position and per image, and the dataset totals."""
    images = [(0, "a.jpg", "x"), (1, "b.jpg", "y")]
    errors = [(0, 0, 1.0, 4.0), (0, 1, 2.0, 4.0), (1, 0, 3.0, 4.0), (1, 1, 0.0, 0.0)]
    # 4 tokens, sum ||x||^2 = 20, sum x = (2, 0): mu = (0.5, 0), sum ||x - mu||^2 = 20 - 4 * 0.25 = 19
    moments = BatchMoments(tokens=4, sum_sq=20.0, sum_x=np.array([2.0, 0.0]))
    path = build_db(
        tmp_path / "e.duckdb", images, [(0, 0, 0, 1.0)], 4, errors=errors, tokens_per_image=2, k=2, moments=moments
    )
    compute_stats(path, NO_LENS, progress=None)
    variance = 19 / 4
    pos = _rows(path, 'SELECT token, "row", col, n, mean_sse, explained_variance, nmse FROM position_errors')
    assert pos[0] == (0, None, None, 2, 2.0, pytest.approx(0.5), pytest.approx(2.0 / variance))  # EV: (.75+.25)/2
    assert pos[1] == (1, 0, 0, 2, 1.0, pytest.approx(0.5), pytest.approx(1.0 / variance))  # total_ss 0: no EV
    img = _rows(path, "SELECT image_id, n_tokens, sse, mean_sse, explained_variance, nmse FROM image_errors")
    assert img[0] == (0, 2, 3.0, 1.5, pytest.approx((0.75 + 0.5) / 2), pytest.approx(1.5 / variance))
    assert img[1] == (1, 2, 3.0, 1.5, pytest.approx(0.25), pytest.approx(1.5 / variance))
    info = _rows(path, "SELECT mean_sse, explained_variance, token_variance, nmse FROM stats_info")[0]
    assert info == (1.5, pytest.approx((0.75 + 0.5 + 0.25) / 3), pytest.approx(variance), pytest.approx(6 / 19))


def test_rerun_is_a_no_op_and_append_recomputes(tmp_path: Path) -> None:
    """Unchanged data -> nothing recomputed; appended images -> the counts include them."""
    images, acts = _scenario()
    path = build_db(tmp_path / "r.duckdb", images, acts, N_FEATURES, tokens_per_image=TOKENS)
    assert compute_stats(path, NO_LENS, progress=None).computed
    assert not compute_stats(path, NO_LENS, progress=None).computed
    build_db(path, [(21, "/img/21.jpg", "dog")], [(21, 1, 0, 4.0)], N_FEATURES, tokens_per_image=TOKENS, source="more")
    assert compute_stats(path, NO_LENS, progress=None).computed
    f0 = _feature(path, 0)
    assert f0["n_images"] == 21 and f0["frequency"] == pytest.approx(21 / (22 * TOKENS))
    assert _rows(path, "SELECT image_id FROM feature_images WHERE feature = 0 AND rank = 1") == [(21,)]
