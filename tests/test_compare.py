"""`saetui compare`: known answers on hand-built databases, and real indexes of the ImageNet sample.

Hand-built: two databases over the same six images whose top-image sets are chosen by hand, so every Jaccard,
match, mutual pair and summary figure is known. Real: the tiny layer20 stand-in's final checkpoint and its
early checkpoint (differently seeded random SAEs) indexed on the same 16 sample images; a database compared
with itself pairs every alive feature with itself at Jaccard 1, the two SAEs give a far lower figure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from harness.badimages import SAMPLE
from harness.fakehub import FakeHub, FetchedCache, copy_cache
from harness.handbuilt import build_db
from harness.tiny import EARLY_TOKENS
from saetui.commands.main import main
from saetui.compare import FeatureSets, best_matches
from saetui.errors import DataError
from saetui.stats import StatsOptions, compute_stats

IMAGES = [(i, f"/data/{i}.jpg", None) for i in range(6)]
LIMIT = "16"


def run_cli(*args: str) -> tuple[int, str, str]:
    """main(args) in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def compare_json(*args: str) -> dict[str, Any]:
    """`saetui compare ARGS --json`, parsed."""
    code, out, err = run_cli("compare", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def handbuilt(path: Path, activations: list[tuple[int, int, int, float]], images: list = IMAGES) -> Path:
    """A database of the six images with the given activations (token 0) and its statistics."""
    build_db(path, images, activations, n_features=16)
    compute_stats(path, StatsOptions(lens=False, top_images=100), progress=None)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A: f0 on {0,1,2} (values 3,2,1), f1 on {3,4}, f2 on {0}; B: g5 on {0,1}, g6 on {2,3,4} (3,2,1), g7 on {5}."""
    a = handbuilt(
        tmp_path / "a.duckdb",
        [(0, 0, 0, 3.0), (1, 0, 0, 2.0), (2, 0, 0, 1.0), (3, 0, 1, 1.0), (4, 0, 1, 0.5), (0, 0, 2, 0.7)],
    )
    b = handbuilt(
        tmp_path / "b.duckdb",
        [(0, 0, 5, 1.0), (1, 0, 5, 1.0), (2, 0, 6, 3.0), (3, 0, 6, 2.0), (4, 0, 6, 1.0), (5, 0, 7, 1.0)],
    )
    return a, b


def test_handbuilt_known_answer(pair: tuple[Path, Path]) -> None:
    a, b = pair
    report = compare_json(str(a), str(b), "--threshold", "0.6")
    matches = {m["feature"]: (m["match_feature"], m["jaccard"], m["overlap"], m["mutual"]) for m in report["matches"]}
    assert matches == {
        0: (5, pytest.approx(2 / 3), 2, True),
        1: (6, pytest.approx(2 / 3), 2, True),
        2: (5, pytest.approx(1 / 2), 1, False),
    }
    assert (report["alive_a"], report["alive_b"], report["images"]) == (3, 3, 6)
    assert report["mean_jaccard"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert report["mean_jaccard_b_to_a"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)  # g7 shares no image
    assert report["mutual_pairs"] == 2
    assert report["share_above_threshold"] == pytest.approx(2 / 3)


def test_top_k_keeps_the_highest_ranked_images(pair: tuple[Path, Path]) -> None:
    a, b = pair
    report = compare_json(str(a), str(b), "--top", "2")
    matches = {m["feature"]: (m["match_feature"], m["jaccard"], m["overlap"]) for m in report["matches"]}
    # f0 -> {0, 1} = g5 exactly; f1 {3, 4} vs g6's top two {2, 3}; f2 {0} vs g5 {0, 1}.
    assert matches == {0: (5, 1.0, 2), 1: (6, pytest.approx(1 / 3), 1), 2: (5, 0.5, 1)}


def test_matches_are_stored_in_a_or_in_out(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    out = tmp_path / "matches.duckdb"
    code, _, err = run_cli("compare", str(a), str(b), "--out", str(out))
    assert code == 0, err
    con = duckdb.connect(str(out), read_only=True)
    try:
        rows = con.execute("SELECT * FROM feature_matches ORDER BY feature").fetchall()
        info = con.execute("SELECT top, alive_a, mutual_pairs, b FROM compare_info").fetchall()
    finally:
        con.close()
    assert [(f, m, o, u) for f, m, _, o, u in rows] == [(0, 5, 2, True), (1, 6, 2, True), (2, 5, 1, False)]
    assert info == [(100, 3, 2, str(b))]
    assert not _tables(a) & {"feature_matches", "compare_info"}  # --out leaves A untouched
    code, out_text, err = run_cli("compare", str(a), str(b))
    assert code == 0, err
    assert "mutual best pairs: 2" in out_text
    assert {"feature_matches", "compare_info"} <= _tables(a)


def _tables(db: Path) -> set[str]:
    """The table names of a database."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()


def test_different_image_sets_are_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    other = handbuilt(tmp_path / "other.duckdb", [(6, 0, 5, 1.0)], [*IMAGES, (6, "/data/6.jpg", None)])
    code, out, err = run_cli("compare", str(a), str(other))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "index different images (0 only in the first, 1 only in the second" in err


def test_missing_statistics_say_to_run_stats(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    bare = build_db(tmp_path / "bare.duckdb", IMAGES, [(0, 0, 1, 1.0)], n_features=16)
    code, _, err = run_cli("compare", str(a), str(bare))
    assert code == 3 and "has no feature_images table" in err and f"run `saetui stats --db {bare}`" in err
    code, _, err = run_cli("compare", str(a), str(a), "--top", "101")
    assert code == 2 and "keeps only the top 100 images per feature" in err


def test_ties_prefer_overlap_then_the_same_id() -> None:
    # A f0 = {0}, f1 = {0, 1}; B g0 = {0, 1}, g1 = {0, 1}: f1 ties at Jaccard 1 between g0 and g1 -> g1 (same id);
    # f0 ties at 1/2 between g0 and g1 -> g0 (same id). Seen from B: g0 -> f1 (1 beats 1/2), g1 -> f1 (same id).
    a = FeatureSets(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    b = FeatureSets(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), 2)
    forward, backward = best_matches(a, b, 2)
    assert forward.match.tolist() == [0, 1] and forward.jaccard.tolist() == [0.5, 1.0]
    assert backward.match.tolist() == [1, 1] and backward.jaccard.tolist() == [1.0, 1.0]
    # Without a same-id candidate, the higher overlap wins over the smaller id: g0 = {0}, g1 = {0, 1, 2, 3}
    # against f5 = {0, 1}: Jaccard 1/2 each, overlaps 1 and 2.
    c = FeatureSets(np.array([5, 5]), np.array([0, 1]), 6)
    d = FeatureSets(np.array([0, 1, 1, 1, 1]), np.array([0, 0, 1, 2, 3]), 2)
    assert best_matches(c, d, 4)[0].match[5] == 1


def _brute_force(a: list[set[int]], b: list[set[int]]) -> list[tuple[int, float, int]]:
    """Best match of every set of a among b by the documented rules, pair by pair in Python."""
    result = []
    for f, s in enumerate(a):
        candidates = [(len(s & t) / len(s | t), len(s & t), g == f, -g) for g, t in enumerate(b) if s & t]
        if not candidates:
            result.append((-1, 0.0, 0))
            continue
        jaccard, overlap, _, neg_g = max(candidates)
        result.append((-neg_g, jaccard, overlap))
    return result


def test_blocked_matching_equals_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n_images = 12

    def random_sets(n: int) -> list[set[int]]:
        """n random image sets of 0..4 images (empty ones are dead features)."""
        return [set(rng.choice(n_images, rng.integers(0, 5), replace=False).tolist()) for _ in range(n)]

    def packed(sets: list[set[int]]) -> FeatureSets:
        """The sets as sorted (feature, image) pairs."""
        pairs = sorted((f, i) for f, s in enumerate(sets) for i in s)
        return FeatureSets(np.array([f for f, _ in pairs]), np.array([i for _, i in pairs]), len(sets))

    a_sets, b_sets = random_sets(40), random_sets(30)
    monkeypatch.setattr("saetui.compare.MAX_CELLS", 90)  # blocks of 3 A features: the column merge is exercised
    forward, backward = best_matches(packed(a_sets), packed(b_sets), n_images)
    for matches, expected in ((forward, _brute_force(a_sets, b_sets)), (backward, _brute_force(b_sets, a_sets))):
        got = list(zip(matches.match.tolist(), matches.jaccard.tolist(), matches.overlap.tolist(), strict=True))
        assert got == [(m, pytest.approx(j), o) for m, j, o in expected]


@pytest.fixture(scope="module")
def indexed(
    fake_hub: FakeHub, fetched_layer20: FetchedCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Two indexes of the first 16 sample images: layer20's final checkpoint and its early one."""
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("compare")
    cache = copy_cache(fetched_layer20.cache_dir, root / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", fake_hub.url)
        patch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "HF_TOKEN_PATH", str(root / "hf_home" / "token"))
        patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(root / "hf_home" / "stored_tokens"))
        for key in list(os.environ):
            if key.startswith(("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "SAETUI_")):
                patch.delenv(key)
        patch.setenv("SAETUI_CACHE", str(cache))
        patch.setenv("SAETUI_CONFIG", str(root / "config.toml"))
        for name, checkpoint in (("final", "latest"), ("early", str(EARLY_TOKENS))):
            db = root / f"{name}.duckdb"
            code, _, err = run_cli(
                "index", str(SAMPLE), "--limit", LIMIT, "--db", str(db), "--checkpoint", checkpoint, "--device", "cpu"
            )
            assert code == 0, err
        yield root


def test_a_database_compared_with_itself_pairs_every_feature_with_itself(indexed: Path) -> None:
    db = indexed / "final.duckdb"
    report = compare_json(str(db), str(db), "--no-store")
    assert report["alive_a"] == report["alive_b"] > 100
    assert all(m["match_feature"] == m["feature"] and m["jaccard"] == 1.0 and m["mutual"] for m in report["matches"])
    assert (report["mean_jaccard"], report["share_above_threshold"]) == (1.0, 1.0)
    assert report["mutual_pairs"] == report["alive_a"]


def test_differently_seeded_saes_match_less(indexed: Path) -> None:
    args = ("--no-store", "--top", "3", "--threshold", "1")
    same = compare_json(str(indexed / "final.duckdb"), str(indexed / "final.duckdb"), *args)
    report = compare_json(str(indexed / "final.duckdb"), str(indexed / "early.duckdb"), *args)
    assert (same["mean_jaccard"], same["share_above_threshold"], same["mutual_pairs"]) == (1.0, 1.0, 443)
    # Measured on these 16 images (top-3 sets): mean best-match Jaccard 0.805, 145 mutual pairs among 443 alive
    # features, 56% of them find their exact top-3 set in B. With so few images, 427 random features of B still
    # cover most 3-sets, so the Jaccard stays high; mutual pairs and exact matches drop the most.
    assert (report["alive_a"], report["alive_b"]) == (443, 427)
    assert report["mean_jaccard"] == pytest.approx(0.805, abs=0.01)
    assert report["mutual_pairs"] == 145
    assert report["share_above_threshold"] == pytest.approx(0.555, abs=0.01)


def test_browse_shows_the_stored_best_match_of_each_feature(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """`browse --compare B` reads the matches `saetui compare A B` stored in A, with B's top label of the match."""
    from saetui.tui.data import BrowseData

    a, b = pair
    with pytest.raises(DataError, match="holds no feature matches"):
        BrowseData(a, compare=b)
    code, _, err = run_cli("compare", str(a), str(b))
    assert code == 0, err
    data = BrowseData(a, compare=b)
    try:
        first = data.best_match(0)
        assert first is not None
        assert (first.feature, first.overlap, first.mutual) == (5, 2, True)
        assert first.jaccard == pytest.approx(2 / 3)
        assert first.database == b.name
        assert data.best_match(2).mutual is False
        assert data.feature_page(0).match == first
    finally:
        data.close()
    other = tmp_path / "other.duckdb"
    shutil.copy(b, other)
    with pytest.raises(DataError, match="computed against"):
        BrowseData(a, compare=other)
    plain = BrowseData(a)
    try:
        assert plain.best_match(0) is None
    finally:
        plain.close()
