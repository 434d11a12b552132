"""The notebook API: saetui.open(path) and its DataFrames; the README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import saetui
from harness.handbuilt import random_db
from harness.tiny import tiny_sae_bytes
from saetui.errors import DataError, NotFoundError, UsageError
from saetui.stats import SaeFiles, StatsOptions, compute_stats

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random database named saetui.duckdb (the README example's default) with stats and decoder rows."""
    root = tmp_path_factory.mktemp("api")
    checkpoint = root / "sae.pt"
    checkpoint.write_bytes(tiny_sae_bytes())
    path = random_db(root / "saetui.duckdb")
    compute_stats(
        path, StatsOptions(lens=False), cache=root / "cache", sae_files=SaeFiles(checkpoint, None), progress=None
    )
    return path


def test_import_saetui_stays_light() -> None:
    """`import saetui` loads neither the API's dependencies nor torch until saetui.open is used."""
    probe = "import sys, saetui; print(sorted(m for m in ('polars', 'duckdb', 'torch') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_dataframes(db_path: Path) -> None:
    """Each method returns a polars DataFrame with the documented columns and consistent numbers."""
    with saetui.open(db_path) as db:
        feats = db.features(order_by="frequency", descending=True, alive_only=True)
        assert isinstance(feats, pl.DataFrame) and not feats["dead"].any()
        assert feats["frequency"].is_sorted(descending=True)
        f = int(feats["feature"][0])
        top = db.top_images(f, n=5)
        assert top.columns == ["rank", "image_id", "value", "label", "path"]
        assert top["rank"].to_list() == [1, 2, 3, 4, 5] and top["value"].is_sorted(descending=True)
        co = db.coactivation(f, n=4)
        assert co.columns == ["other", "count", "p_given", "jaccard", "exact", "top_label"] and co.height == 4
        exact = db.coactivation(f, n=4, exact=True)
        assert exact["exact"].all() and exact["count"].is_sorted(descending=True)
        by_image = db.coactivation(f, n=3, level="image", order="jaccard")
        assert by_image["jaccard"].is_sorted(descending=True)
        near = db.neighbours(f, n=3)
        assert near.columns == ["other", "cosine", "top_label"] and f not in near["other"].to_list()
        assert db.lens(f).columns == ["rank", "label", "score", "prob"]
        hist = db.histogram(f)
        assert int(hist["count"].sum()) == db.feature(f)["n_tokens"]
        image_id = int(top["image_id"][0])
        strongest = db.image_features(image_id, n=50)
        assert f in strongest["feature"].to_list()
        patch = db.patch_map(f, image_id)
        assert patch.shape == (257,) and np.isclose(patch.max(), top["value"][0])
        assert db.position_errors().height == 257
        assert db.image_errors().height == 30
        assert db.sql("SELECT count(*) AS n FROM images")["n"][0] == 30
        assert db.run()["sae_name"] == "layer20" and db.stats_info()["top_images"] == 200


def test_errors(db_path: Path, tmp_path: Path) -> None:
    """Bad input raises saetui's one-line errors; the connection is read-only."""
    with pytest.raises(NotFoundError):
        saetui.open(tmp_path / "missing.duckdb")
    with saetui.open(db_path) as db:
        with pytest.raises(NotFoundError):
            db.feature(10_000)
        with pytest.raises(UsageError):
            db.features(order_by="nonsense")
        with pytest.raises(UsageError):
            db.coactivation(1, level="patch")
        with pytest.raises(DataError):
            db.sql("DROP TABLE images")
        assert db.sql("SELECT count(*) AS n FROM images")["n"][0] == 30


def _readme_examples() -> list[str]:
    """The README's python code blocks that use saetui.open."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return [block for block in blocks if "saetui.open(" in block]


def test_readme_example_runs(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's API example runs unchanged next to a saetui.duckdb."""
    examples = _readme_examples()
    assert examples, "README.md has no ```python block using saetui.open( (the notebook API example)"
    monkeypatch.chdir(db_path.parent)
    for code in examples:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102
