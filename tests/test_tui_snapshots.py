"""SVG snapshots of every browser page at 80 x 24 and 160 x 50, with the half-cell renderer pinned.

Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at the
report. The database stores image paths under /data/imagenet-sample (files absent), so pages that show paths
look the same on every machine; cursors do not blink; textual-image's cell size is seeded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot

from harness.browse_db import BrowseDb, shared_browse_db
from harness.tui import browser, settle
from saetui.tui.navigation import Location

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 50), id="160x50")]
Snap = Callable[..., bool]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> BrowseDb:
    """The shared browse database (built once per session)."""
    return shared_browse_db(tmp_path_factory.getbasetemp())


def keys(*presses: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    """A run_before that waits for the first page, presses keys (settling after each) and settles again."""

    async def run(pilot: Pilot[None]) -> None:
        await settle(pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot)

    return run


@pytest.mark.parametrize("size", SIZES)
def test_features_list(snap_compare: Snap, db: BrowseDb, size: tuple[int, int]) -> None:
    """The start page: every alive feature by frequency, cursor on the first row."""
    assert snap_compare(browser(db.path), terminal_size=size, run_before=keys("down", "down"))


@pytest.mark.parametrize("size", SIZES)
def test_feature_page(snap_compare: Snap, db: BrowseDb, size: tuple[int, int]) -> None:
    """A label feature's page with half-cell thumbnails and heatmaps."""
    app = browser(db.path, Location("feature", db.label_feature("tabby cat")))
    assert snap_compare(app, terminal_size=size, run_before=keys())


@pytest.mark.parametrize("size", SIZES)
def test_image_page(snap_compare: Snap, db: BrowseDb, size: tuple[int, int]) -> None:
    """An image with the heatmap of the feature it was opened from, its features and its error map."""
    app = browser(db.path, Location("feature", db.label_feature("school bus")))
    assert snap_compare(app, terminal_size=size, run_before=keys("t", "enter"))


@pytest.mark.parametrize("size", SIZES)
def test_overview(snap_compare: Snap, db: BrowseDb, size: tuple[int, int]) -> None:
    """Run facts, counts, the frequency histogram and the position-error map."""
    assert snap_compare(browser(db.path, Location("overview")), terminal_size=size, run_before=keys())


@pytest.mark.parametrize("size", SIZES)
def test_sql_console(snap_compare: Snap, db: BrowseDb, size: tuple[int, int]) -> None:
    """The console after running its example query."""
    assert snap_compare(browser(db.path, Location("sql")), terminal_size=size, run_before=keys("ctrl+r"))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Snap, db: BrowseDb, size: tuple[int, int]) -> None:
    """The key sheet over the features list."""
    assert snap_compare(browser(db.path), terminal_size=size, run_before=keys("question_mark"))
