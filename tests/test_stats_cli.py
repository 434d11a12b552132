"""`saetui stats` on the command line: data lines on stdout, a no-op rerun, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.handbuilt import build_db
from saetui.commands.main import main


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    """A four-image database."""
    images = [(i, f"/img/{i}.jpg", "a" if i < 2 else "b") for i in range(4)]
    acts = [(i, t, i % 3, 1.0 + t) for i in range(4) for t in range(3)]
    return build_db(tmp_path / "cli.duckdb", images, acts, 8, tokens_per_image=3)


def _fields(out: str) -> dict[str, str]:
    """The `key value` lines on stdout."""
    return dict(line.split(" ", 1) for line in out.strip().splitlines())


def test_stats_prints_a_summary_and_reruns_as_a_no_op(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The first run computes (features alive/dead on stdout), the second says it is up to date."""
    assert main(["stats", "--db", str(db), "--no-lens"]) == 0
    captured = capsys.readouterr()
    fields = _fields(captured.out)
    assert fields["computed"] == "yes" and fields["images"] == "4" and fields["tokens"] == "12"
    assert fields["alive"] == "3" and fields["dead"] == "5" and fields["logit_lens"] == "no"
    assert "stats:" in captured.err
    assert main(["stats", "--db", str(db), "--no-lens"]) == 0
    captured = capsys.readouterr()
    assert _fields(captured.out)["computed"] == "no (up to date)"
    assert "up to date" in captured.err


def test_stats_errors(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing database exits 3, a bad option 2, missing SAE files for the lens 3, each with one line."""
    assert main(["stats", "--db", str(tmp_path / "none.duckdb")]) == 3
    assert main(["stats", "--db", str(db), "--no-lens", "--image-tokens", "middle"]) == 2
    assert main(["stats", "--db", str(db), "--cache-dir", str(tmp_path / "empty")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("saetui: error: ") for line in err)
    assert "--no-lens" in err[2]
