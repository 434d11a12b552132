"""Similar directions: known neighbours by decoder-row cosine, precomputed lists equal to the on-demand answer."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import saetui
from harness.handbuilt import build_db
from harness.tiny import tiny_sae_tensors
from saetui.stats import SaeFiles, StatsOptions, compute_stats
from saetui.stats.directions import nearest, save_unit_rows

N_FEATURES = 64


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database whose SAE has dec[9] = 3 x dec[5] and dec[20] = -dec[5] (opposite direction)."""
    root = tmp_path_factory.mktemp("dirs")
    pre_b, enc, dec = tiny_sae_tensors(n_features=N_FEATURES)
    dec[9] = 3.0 * dec[5]
    dec[20] = -dec[5]
    state = OrderedDict([("pre_b", pre_b), ("enc", enc), ("dec", dec)])
    checkpoint = root / "sae.pt"
    torch.save({"model_state_dict": state, "d_in": 32, "n_features": N_FEATURES, "k": 4}, checkpoint)
    images = [(i, f"{i}.jpg", "a" if i % 2 else "b") for i in range(4)]
    acts = [(i, t, f, 1.0) for i in range(4) for t in range(2) for f in (5, 9, 20) if (i + t + f) % 2]
    path = build_db(root / "d.duckdb", images, acts, N_FEATURES, tokens_per_image=2)
    options = StatsOptions(lens=False, neighbours=8)
    compute_stats(path, options, cache=root / "cache", sae_files=SaeFiles(checkpoint, None), progress=None)
    return path


def test_parallel_row_is_the_nearest(db: Path) -> None:
    """A scaled copy of a decoder row is its first neighbour with cosine 1; the opposite row comes last."""
    with saetui.open(db) as api:
        near = api.neighbours(5, n=8)
        assert near["other"][0] == 9 and near["cosine"][0] == pytest.approx(1.0, abs=1e-5)
        everything = api.neighbours(5, n=N_FEATURES - 1)
        assert everything["other"][-1] == 20 and everything["cosine"][-1] == pytest.approx(-1.0, abs=1e-5)


def test_precomputed_lists_match_on_demand(db: Path) -> None:
    """feature_neighbours (top 8) equals the first 8 of the on-demand cosine ranking for every feature."""
    with saetui.open(db) as api:
        stored = api.sql("SELECT feature, rank, other, cosine FROM feature_neighbours ORDER BY feature, rank")
        assert stored.height == N_FEATURES * 8
        for feature in (0, 5, 31, 63):
            wide = api.neighbours(feature, n=20).head(8)
            mine = stored.filter(stored["feature"] == feature)
            assert mine["other"].to_list() == wide["other"].to_list()
            assert np.allclose(mine["cosine"].to_numpy(), wide["cosine"].to_numpy(), atol=1e-5)


def test_nearest_orders_and_excludes(tmp_path: Path) -> None:
    """nearest() returns cosines in descending order, ties by index, without the excluded row."""
    rows = np.load(save_unit_rows(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]), tmp_path / "u.npy"))
    index, cosine = nearest(rows, rows[0], 3, exclude=0)
    assert index.tolist() == [1, 3, 2] and np.allclose(cosine, [1.0, 1.0, 0.0])
