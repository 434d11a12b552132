"""Pilot-driven flows through `saetui browse`: list, feature page, coactivation, history, search, image, SQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from textual.widgets import DataTable, Input, OptionList, Static, TextArea

from harness.browse_db import BrowseDb, build_browse_db, build_wide_features_db, shared_browse_db
from harness.tui import browser, screen_text, settle
from saetui.tui.messages import OpenFeature, OpenImage
from saetui.tui.navigation import Location
from saetui.tui.screens.feature import FeatureScreen
from saetui.tui.screens.features import FeaturesScreen
from saetui.tui.screens.help import HelpScreen
from saetui.tui.screens.image import ImageScreen
from saetui.tui.screens.overview import OverviewScreen
from saetui.tui.widgets.feature_links import FeatureLinks
from saetui.tui.widgets.feature_table import FeatureTable
from saetui.tui.widgets.thumbnail import ThumbTile


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> BrowseDb:
    """The shared browse database (built once per session)."""
    return shared_browse_db(tmp_path_factory.getbasetemp())


def _sql(db: BrowseDb, query: str) -> list[tuple]:
    """Rows of a query on the test database."""
    con = duckdb.connect(str(db.path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def _shown_features(table: FeatureTable) -> list[int]:
    """Feature ids in the order the table shows them."""
    assert table.rows is not None
    return [int(f) for f in table.rows.feature[table.order]]


async def test_list_opens_with_alive_features_sorted_by_frequency(db: BrowseDb) -> None:
    """The start page lists the alive features by frequency; s, r and d re-sort, reverse and show the dead."""
    app = browser(db.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, FeaturesScreen)
        table = app.screen.query_one(FeatureTable)
        expected = [f for (f,) in _sql(db, "SELECT feature FROM features WHERE NOT dead ORDER BY frequency DESC, 1")]
        assert _shown_features(table) == expected
        assert table.has_focus
        await pilot.press("s")  # label entropy, ascending, undefined last
        entropy = dict(_sql(db, "SELECT feature, label_entropy_norm FROM features"))
        shown = [entropy[f] for f in _shown_features(table)]
        defined = [e for e in shown if e is not None]
        assert defined == sorted(defined)
        assert all(e is None for e in shown[len(defined) :])
        await pilot.press("r")
        reversed_shown = [entropy[f] for f in _shown_features(table)]
        assert [e for e in reversed_shown if e is not None] == sorted(defined, reverse=True)
        await pilot.press("d")
        assert len(table.order) == db.n_features
        status = str(app.screen.query_one("#features-status", Static).render())
        assert f"{db.n_features} of {db.n_features} features" in status and "dead shown" in status


async def test_open_feature_follow_coactivation_back_and_forward(db: BrowseDb) -> None:
    """Enter opens a feature page with thumbnails; Enter on a coactivating feature opens it; b and f move."""
    messages: list[object] = []
    app = browser(db.path)
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await settle(pilot)
        first = app.screen.query_one(FeatureTable).current_feature
        await pilot.press("enter")
        await settle(pilot)
        page = app.screen
        assert isinstance(page, FeatureScreen) and page.feature == first
        assert f"Feature {first}" in str(page.query_one("#feature-header", Static).render())
        tiles = [t for t in page.query(ThumbTile) if t.display]
        top = _sql(db, f"SELECT image_id FROM feature_images WHERE feature = {first} ORDER BY rank")
        assert [t.image_id for t in tiles] == [i for (i,) in top[: len(tiles)]]
        assert all(t._image is not None for t in tiles)  # every tile got its pixels
        partner = _sql(db, f"SELECT other FROM coactivations WHERE feature = {first} AND rank_count = 1")[0][0]
        await pilot.press("c")
        assert page.query_one("#coactivating", FeatureLinks).has_focus
        await pilot.press("enter")
        await settle(pilot)
        assert [m.feature for m in messages if isinstance(m, OpenFeature)][-1] == partner
        assert page.feature == partner
        assert f"Feature {partner}" in str(page.query_one("#feature-header", Static).render())
        await pilot.press("b")
        await settle(pilot)
        assert page.feature == first
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, FeaturesScreen)
        await pilot.press("f", "f")
        await settle(pilot)
        assert isinstance(app.screen, FeatureScreen) and app.screen.feature == partner


async def test_next_and_previous_follow_the_list_order(db: BrowseDb) -> None:
    """n and p on a feature page open the neighbours of the feature in the list as sorted."""
    app = browser(db.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        order = _shown_features(app.screen.query_one(FeatureTable))
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert app.screen.feature == order[1]
        await pilot.press("n", "p", "p")
        await settle(pilot)
        assert app.screen.feature == order[0]


async def test_search_filters_by_label_and_jumps_to_an_id(db: BrowseDb) -> None:
    """/ then a label filters while typing; Enter goes back to the list; /17 Enter highlights feature 17."""
    app = browser(db.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        box = app.screen.query_one("#features-search", Input)
        assert box.display and box.has_focus
        await pilot.press(*"volcano")
        table = app.screen.query_one(FeatureTable)
        rows = dict((f, (t, lens)) for f, t, lens in _sql(db, "SELECT feature, top_label, lens_label FROM features"))
        shown = _shown_features(table)
        assert shown and all("volcano" in (rows[f][0] or "") + (rows[f][1] or "") for f in shown)
        expected = {f for f, (t, lens) in rows.items() if "volcano" in (t or "") + (lens or "")}
        assert set(shown) == expected - set(db.dead)
        await pilot.press("enter")
        assert table.has_focus
        await pilot.press("slash", *"#17", "enter")
        await settle(pilot)
        assert table.current_feature == 17
        assert not box.display
        await pilot.press("slash", *"99999", "enter")
        assert table.current_feature == 17  # a missing id only warns


async def test_search_jumps_to_a_dead_feature_by_showing_the_dead(db: BrowseDb) -> None:
    """Jumping to a dead feature turns 'hide dead' off so the row can be highlighted."""
    dead = db.dead[0]
    app = browser(db.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *str(dead), "enter")
        screen = app.screen
        assert isinstance(screen, FeaturesScreen)
        assert not screen.hide_dead and screen.table.current_feature == dead


async def test_free_text_search_ranks_features_with_the_clip_text_tower(db: BrowseDb) -> None:
    """/~text runs the CLIP text search in a worker and lists the matches by score."""
    app = browser(db.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"~a striped cat", "enter")
        await settle(pilot, rounds=6)
        screen = app.screen
        assert isinstance(screen, FeaturesScreen) and screen.scores is not None
        shown = _shown_features(screen.table)
        scores = [screen.scores[f] for f in shown]
        assert shown and scores == sorted(scores, reverse=True)
        assert "text search: 'a striped cat'" in str(screen.query_one("#features-status", Static).render())


async def test_free_text_search_degrades_to_a_message(tmp_path: Path) -> None:
    """Without lens embeddings the search says why and the list stays usable."""
    wide = build_wide_features_db(tmp_path / "wide.duckdb", n_features=2048)
    app = browser(wide)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"~a red bus", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FeaturesScreen) and screen.scores is None
        notes = [n.message for n in app._notifications]
        assert any("free-text search unavailable" in n for n in notes)
        assert len(screen.table.order) == int((~screen.rows.dead).sum())


async def test_open_image_from_a_thumbnail_and_change_the_heatmap(db: BrowseDb) -> None:
    """Enter on a tile opens the image page with that feature's heatmap; moving in the list changes it."""
    messages: list[object] = []
    feature = db.label_feature("volcano")
    app = browser(db.path, Location("feature", feature))
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await settle(pilot)
        await pilot.press("t", "enter")
        await settle(pilot)
        opened = [m for m in messages if isinstance(m, OpenImage)][-1]
        top = _sql(db, f"SELECT image_id FROM feature_images WHERE feature = {feature} AND rank = 1")[0][0]
        assert (opened.image_id, opened.feature) == (top, feature)
        page = app.screen
        assert isinstance(page, ImageScreen) and page.image_id == top and page.heat_feature == feature
        assert page._image_widget.image is not None
        strongest = _sql(
            db,
            f"SELECT feature FROM activations WHERE image_id = {top} AND value > 0 "
            "GROUP BY feature ORDER BY max(value) DESC, feature LIMIT 2",
        )
        links = page.query_one("#image-features", FeatureLinks)
        links.focus()
        links.highlighted = 1
        await settle(pilot)
        assert page.heat_feature == strongest[1][0]
        assert app.history.current == Location("image", top, strongest[1][0])
        assert f"Feature {strongest[1][0]} on this image" in str(page.query_one("#heat-title", Static).render())
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FeatureScreen) and app.screen.feature == strongest[1][0]


async def test_sql_console_runs_read_only_queries(db: BrowseDb) -> None:
    """: opens the console; Ctrl+R runs the query; errors and writes give one red line."""
    app = browser(db.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await settle(pilot)
        editor = app.screen.query_one("#sql-editor", TextArea)
        assert editor.has_focus
        editor.text = "SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label NULLS LAST"
        await pilot.press("ctrl+r")
        await settle(pilot)
        table = app.screen.query_one("#sql-results", DataTable)
        expected = _sql(db, "SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label NULLS LAST")
        assert table.row_count == len(expected)
        assert [str(c.label) for c in table.columns.values()] == ["label", "n"]
        assert table.get_row_at(0) == [expected[0][0], str(expected[0][1])]
        editor.text = "CREATE TABLE x (a INTEGER)"
        await pilot.press("ctrl+r")
        await settle(pilot)
        status = str(app.screen.query_one("#sql-status", Static).render())
        assert status.startswith("error:") and "read-only" in status.lower()
        editor.text = "SELECT * FROM no_such_table"
        await pilot.press("f5")
        await settle(pilot)
        assert "no_such_table" in str(app.screen.query_one("#sql-status", Static).render())


async def test_overview_shows_counts_and_maps(db: BrowseDb) -> None:
    """o opens the overview with image, feature and error summaries."""
    app = browser(db.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        counts = str(app.screen.query_one("#counts", Static).render())
        alive = db.n_features - len(db.dead)
        assert f"images   {48}" in counts and f"{alive} alive" in counts and f"{len(db.dead)} dead" in counts
        errors = str(app.screen.query_one("#position-errors", Static).render())
        assert "CLS" in errors and "explained variance" in errors


async def test_help_opens_and_closes_and_q_quits_cleanly(db: BrowseDb) -> None:
    """? shows the keys over the page (navigation keys are inert there); Esc closes it; q exits with 0."""
    app = browser(db.path)
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "Back" in text and "Sort" in text and "~a red car" in text
        await pilot.press("o")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, FeaturesScreen)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code in (0, None)
    assert app._exit_renderables == []


async def test_mouse_click_opens_a_row_and_a_tile(db: BrowseDb) -> None:
    """A click highlights a row, a second click opens it; clicking a tile opens its image."""
    app = browser(db.path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(FeatureTable)
        second = _shown_features(table)[1]
        await pilot.click(FeatureTable, offset=(5, 2))
        assert table.current_feature == second and isinstance(app.screen, FeaturesScreen)
        await pilot.click(FeatureTable, offset=(5, 2))
        await settle(pilot)
        assert isinstance(app.screen, FeatureScreen) and app.screen.feature == second
        tile = next(t for t in app.screen.query(ThumbTile) if t.display)
        await pilot.click(tile)
        await settle(pilot)
        assert isinstance(app.screen, ImageScreen) and app.screen.image_id == tile.image_id


async def test_browsing_works_after_the_image_files_are_deleted(tmp_path: Path) -> None:
    """Thumbnails come from the database: with the originals gone, tiles and the image page still draw."""
    small = build_browse_db(tmp_path / "db", n_images=12, n_features=128, k=4)
    assert all(p.is_file() for p in small.image_paths)
    shutil.rmtree(small.image_dir)
    feature = int(_sql(small, "SELECT feature FROM features WHERE NOT dead ORDER BY n_images DESC, 1 LIMIT 1")[0][0])
    app = browser(small.path, Location("feature", feature))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tiles = [t for t in app.screen.query(ThumbTile) if t.display]
        assert tiles and all(t._image is not None for t in tiles)
        pixels = np.asarray(tiles[0]._image)
        assert pixels.std() > 5  # a real picture, not the grey 'missing' tile
        await pilot.press("t", "enter")
        await settle(pilot)
        page = app.screen
        assert isinstance(page, ImageScreen)
        assert page.page is not None and not page.page.file_exists
        assert "file missing" in str(page.query_one("#image-header", Static).render())
        assert np.asarray(page._image_widget.image).std() > 5


async def test_the_list_handles_65536_features_without_a_widget_per_row(tmp_path: Path) -> None:
    """A CLIP-Scope-wide features table loads into one line-API widget; End reaches the last row."""
    wide = build_wide_features_db(tmp_path / "wide.duckdb")
    app = browser(wide)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FeaturesScreen)
        await pilot.press("d")
        assert len(screen.table.order) == 65536
        assert len(list(screen.walk_children())) < 40
        await pilot.press("end")
        assert screen.table.current_feature == _shown_features(screen.table)[-1]
        line = "".join(segment.text for segment in screen.table.render_line(screen.table.size.height - 1))
        assert str(screen.table.current_feature) in line


async def test_the_image_page_lists_features_even_without_an_image_renderer(db: BrowseDb) -> None:
    """With --images none the tiles and the image page draw token maps as text."""
    app = browser(db.path, Location("feature", db.label_feature("daisy")), mode="none")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tiles = [t for t in app.screen.query(ThumbTile) if t.display]
        assert tiles and all(t._text is not None and "▀" in str(t._text) for t in tiles)
        await pilot.press("t", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ImageScreen)
        options = app.screen.query_one("#image-features", OptionList)
        assert options.option_count > 0
