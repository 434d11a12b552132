"""`saetui browse` wiring: no torch at startup, one-line errors, and the command's options reach the app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.browse_db import BrowseDb, shared_browse_db
from saetui.commands.main import main

HEAVY = ("torch", "open_clip", "transformers")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> BrowseDb:
    """The shared browse database (built once per session)."""
    return shared_browse_db(tmp_path_factory.getbasetemp())


def _probe(code: str) -> dict:
    """Run code in a fresh interpreter whose last stdout line is JSON, and parse it."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_and_starting_the_app_imports_no_torch(db: BrowseDb) -> None:
    """The browse path (command module, renderer, database, app, first frame) leaves torch unimported."""
    code = f"""
import asyncio, json, sys
from saetui.commands.main import main  # registers every command, browse included
from saetui.tui.launch import build_app

app = build_app({str(db.path)!r}, "halfcell")

async def run():
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause()
        return len(app.screen.query_one("FeatureTable").order)

rows = asyncio.run(run())
print(json.dumps({{"rows": rows, "heavy": [m for m in {HEAVY!r} if m in sys.modules],
                  "textual_image": "textual_image" in sys.modules}}))
"""
    result = _probe(code)
    assert result["heavy"] == []
    assert result["rows"] == db.n_features - len(db.dead)
    assert result["textual_image"]


def test_images_none_does_not_import_textual_image(db: BrowseDb) -> None:
    """--images none skips textual-image (and its terminal probes) entirely."""
    code = f"""
import json, sys
from saetui.tui.launch import build_app
build_app({str(db.path)!r}, "none")
print(json.dumps({{"loaded": "textual_image" in sys.modules}}))
"""
    assert _probe(code) == {"loaded": False}


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """browse --help documents the options and shows examples."""
    assert main(["browse", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("--db", "--images", "--feature", "halfcell", "saetui browse --db"):
        assert text in out


def test_missing_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database that does not exist exits 3 with one error line and no traceback."""
    assert main(["browse", "--db", str(tmp_path / "none.duckdb"), "--images", "none"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("saetui: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_image_mode_is_a_usage_error(db: BrowseDb, capsys: pytest.CaptureFixture[str]) -> None:
    """--images must be one of the documented modes."""
    assert main(["browse", "--db", str(db.path), "--images", "ascii"]) == 2
    assert "unknown image mode 'ascii'" in capsys.readouterr().err


def test_options_reach_the_app(db: BrowseDb, monkeypatch: pytest.MonkeyPatch) -> None:
    """--db, --images (or $SAETUI_IMAGES), --feature and --compare are passed to the browser, which returns 0."""
    calls: list[tuple[object, ...]] = []

    def fake_browse(path: object, images: str, feature: int | None, compare: str | None) -> int:
        calls.append((path, images, feature, compare))
        return 0

    monkeypatch.setattr("saetui.tui.launch.browse", fake_browse)
    monkeypatch.setenv("SAETUI_IMAGES", "Unicode")
    assert main(["browse", "--db", str(db.path), "--feature", "7"]) == 0
    assert main(["browse", "--db", str(db.path), "--images", "halfcell", "--compare", "b.duckdb"]) == 0
    assert calls == [(str(db.path), "unicode", 7, None), (str(db.path), "halfcell", None, "b.duckdb")]
