"""Coactivation: hand-counted pairs, the exact on-demand query, and the sampled estimate's accuracy."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from harness.handbuilt import build_db
from saetui.stats import StatsOptions, compute_stats
from saetui.stats.queries import coactivation

# image 0: token 0 -> f1 f2; token 1 -> f1 f2 f3; token 2 -> f1 (f2 kept but negative)
# image 1: token 0 -> f2 f3; token 1 -> f1
ACTS = [
    (0, 0, 1, 1.0), (0, 0, 2, 1.0),
    (0, 1, 1, 1.0), (0, 1, 2, 2.0), (0, 1, 3, 1.0),
    (0, 2, 1, 1.0), (0, 2, 2, -1.0),
    (1, 0, 2, 1.0), (1, 0, 3, 1.0),
    (1, 1, 1, 3.0),
]  # fmt: skip
# n_tokens: f1 4, f2 3, f3 2; both active: (1,2) 2 tokens, (1,3) 1, (2,3) 2
EXPECTED = {
    (1, 2): (2, 2 / 4, 2 / 5),
    (1, 3): (1, 1 / 4, 1 / 5),
    (2, 1): (2, 2 / 3, 2 / 5),
    (2, 3): (2, 2 / 3, 2 / 3),
    (3, 1): (1, 1 / 2, 1 / 5),
    (3, 2): (2, 2 / 2, 2 / 3),
}


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    """The two-image database with stats."""
    path = build_db(tmp_path / "co.duckdb", [(0, "a", "x"), (1, "b", "y")], ACTS, 8, tokens_per_image=3)
    compute_stats(path, StatsOptions(lens=False), progress=None)
    return path


def test_precomputed_pairs_by_hand(db: Path) -> None:
    """Every pair's count, P(g|f) and Jaccard match the hand count and are flagged exact."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT feature, other, count, p_given, jaccard, exact, sample_tokens FROM coactivations"
    ).fetchall()
    con.close()
    got = {(f, g): (c, p, j) for f, g, c, p, j, _, _ in rows}
    assert got.keys() == EXPECTED.keys()
    for pair, (count, p, jaccard) in EXPECTED.items():
        assert got[pair] == (count, pytest.approx(p), pytest.approx(jaccard)), pair
    assert all(exact for *_, exact, _ in rows)
    assert {(f, n) for f, _, _, _, _, _, n in rows} == {(1, 4), (2, 3), (3, 2)}


def test_ranks_by_count_and_jaccard(db: Path) -> None:
    """Feature 2's partners: by count a tie (1 and 3, broken by id), by Jaccard 3 first."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT other, rank_count, rank_jaccard FROM coactivations WHERE feature = 2 ORDER BY other"
    ).fetchall()
    con.close()
    assert rows == [(1, 1, 2), (3, 2, 1)]


def test_exact_query_token_and_image_level(db: Path) -> None:
    """The on-demand query gives the same token counts, and image-level counts of shared images."""
    con = duckdb.connect(str(db), read_only=True)
    token = coactivation(con, 1, level="token", exact=True)
    image = coactivation(con, 1, level="image", exact=True)
    con.close()
    assert token.select("other", "count").rows() == [(2, 2), (3, 1)]
    assert token["p_given"].to_list() == [pytest.approx(0.5), pytest.approx(0.25)]
    assert token["jaccard"].to_list() == [pytest.approx(0.4), pytest.approx(0.2)]
    assert image.select("other", "count").rows() == [(2, 2), (3, 2)]
    assert image["jaccard"].to_list() == [pytest.approx(1.0), pytest.approx(1.0)]


def test_sampled_estimate_is_close_and_flagged(tmp_path: Path) -> None:
    """A feature with more active tokens than the sample gets estimated P(g|f) within a few standard errors."""
    rng = np.random.default_rng(0)
    acts = []
    n_images, tokens = 40, 50
    for image in range(n_images):
        for token in range(tokens):
            acts.append((image, token, 0, 1.0))  # f0 everywhere
            if rng.random() < 0.3:
                acts.append((image, token, 1, 1.0))  # f1 on ~30% of tokens
            if rng.random() < 0.05:
                acts.append((image, token, 2, 1.0))  # f2 on ~5%
    images = [(i, str(i), None) for i in range(n_images)]
    path = build_db(tmp_path / "s.duckdb", images, acts, 8, tokens_per_image=tokens)
    compute_stats(path, StatsOptions(lens=False, coactivation_sample=400), progress=None)
    con = duckdb.connect(str(path), read_only=True)
    exact = dict(coactivation(con, 0, n=10, exact=True).select("other", "count").rows())
    rows = con.execute(
        "SELECT other, count, p_given, exact, sample_tokens FROM coactivations WHERE feature = 0"
    ).fetchall()
    small = con.execute("SELECT bool_and(exact) FROM coactivations WHERE feature = 2").fetchall()[0][0]
    con.close()
    n0 = n_images * tokens
    for other, count, p_given, is_exact, sample in rows:
        truth = exact[other] / n0
        assert not is_exact and 300 < sample < 500
        assert abs(p_given - truth) < 4 * np.sqrt(truth * (1 - truth) / sample)
        assert count == round(p_given * n0)
    assert small  # f2 has ~100 active tokens: fewer than the sample, so exact
