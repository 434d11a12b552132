"""`saetui show`: a readable text card, valid JSON with --json, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.handbuilt import random_db
from harness.tiny import tiny_sae_bytes
from saetui.commands.main import main
from saetui.stats import SaeFiles, StatsOptions, compute_stats

FEATURE = 100  # fires on the "cat" images' patches in random_db


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random database with stats and cached decoder rows (tiny SAE checkpoint, no lens)."""
    root = tmp_path_factory.mktemp("show")
    checkpoint = root / "sae.pt"
    checkpoint.write_bytes(tiny_sae_bytes())
    path = random_db(root / "show.duckdb")
    compute_stats(
        path, StatsOptions(lens=False), cache=root / "cache", sae_files=SaeFiles(checkpoint, None), progress=None
    )
    return path


def test_text_card(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The card names the feature, its stats, top images with paths, labels, partners and neighbours."""
    assert main(["show", str(FEATURE), "--db", str(db), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"feature {FEATURE}")
    for heading in ("frequency", "label entropy", "top images", "coactivating features", "similar directions"):
        assert heading in out
    assert "/data/cat/" in out
    assert "(not computed: run `saetui stats` with the model files)" in out
    top_block = out.split("top images")[1].split("\n\n")[0]
    assert len([line for line in top_block.splitlines() if "/data/" in line]) == 3


def test_json_card(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json is one valid JSON object with the same pieces; numbers agree with the features table."""
    assert main(["show", str(FEATURE), "--db", str(db), "--json", "--related", "5"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["feature"] == FEATURE
    assert card["stats"]["top_label"] == "cat" and not card["stats"]["dead"]
    assert [r["rank"] for r in card["top_images"]] == list(range(1, 11))
    assert card["top_labels"][0]["label"] == "cat"
    assert len(card["coactivation"]["partners"]) == 5
    assert len(card["neighbours"]) == 5 and card["neighbours_note"] is None
    assert all(-1.0 <= r["cosine"] <= 1.0 for r in card["neighbours"])
    assert sum(b["count"] for b in card["histogram"]) == card["stats"]["n_tokens"]


def test_unknown_feature_and_missing_db(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Errors are one line with the documented exit code."""
    assert main(["show", "99999", "--db", str(db)]) == 3
    assert "feature 99999 does not exist" in capsys.readouterr().err
    assert main(["show", "1", "--db", str(tmp_path / "none.duckdb")]) == 3


def test_show_imports_no_torch(db: Path) -> None:
    """The card (neighbours included) is built without importing torch."""
    probe = (
        "import sys\n"
        "from saetui.commands.main import main\n"
        f"code = main(['show', '{FEATURE}', '--db', {str(db)!r}, '--json'])\n"
        "sys.stderr.write(f'RESULT {code} {\"torch\" in sys.modules}\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "RESULT 0 False" in done.stderr
    json.loads(done.stdout)
