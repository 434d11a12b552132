"""The note editor in the browser: e on a feature page, ctrl+s saves to the side file, SQL and the list see it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, Static, TextArea

from harness.browse_db import BrowseDb, shared_browse_db
from harness.tui import browser, screen_text, settle
from saetui.store.annotations import Annotations, side_path
from saetui.store.connection import connect
from saetui.tui.navigation import Location
from saetui.tui.screens.feature import FeatureScreen
from saetui.tui.screens.features import FeaturesScreen
from saetui.tui.screens.note_editor import NoteEditor
from saetui.tui.widgets.feature_table import FeatureTable


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A private copy of the shared browse database (the editor writes a side file next to it)."""
    shared: BrowseDb = shared_browse_db(tmp_path_factory.getbasetemp())
    copy = tmp_path / "browse.duckdb"
    shutil.copy(shared.path, copy)
    return copy


def _notes_in_sql(db: Path) -> list[tuple]:
    """The notes table as `saetui query` sees it, joined with features."""
    con = connect(db)
    try:
        return con.execute(
            "SELECT n.feature, n.text, n.tags, f.top_label IS NOT NULL FROM notes n JOIN features f USING (feature)"
        ).fetchall()
    finally:
        con.close()


async def test_a_note_written_in_the_browser_reaches_sql_the_list_and_search(db: Path) -> None:
    """e opens the editor, ctrl+s saves text and tags; the header, the list column, / search and SQL show them."""
    app = browser(db)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(pilot)
        feature = app.screen.query_one(FeatureTable).current_feature
        assert feature is not None
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FeatureScreen)
        await pilot.press("e")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, NoteEditor)
        assert editor.query_one("#note-text", TextArea).has_focus
        await pilot.press(*"stripes on the left", "tab", *"Interesting, dead end")
        await pilot.press("ctrl+s")
        await settle(pilot)
        page = app.screen
        assert isinstance(page, FeatureScreen)
        header = str(page.query_one("#feature-header", Static).render())
        assert "#interesting #dead-end stripes on the left" in header
        stored = Annotations(db).note(feature)
        assert stored is not None and stored.text == "stripes on the left"
        assert stored.tags == ("interesting", "dead-end")
        assert _notes_in_sql(db) == [(feature, "stripes on the left", ["interesting", "dead-end"], True)]
        # the SQL console of the running browser sees the new note too
        result = app.data.run_sql("SELECT feature, text FROM notes")
        assert result.rows == ((str(feature), "stripes on the left"),)

        await pilot.press("l")
        await settle(pilot)
        features = app.screen
        assert isinstance(features, FeaturesScreen)
        assert "#interesting #dead-end stripes" in screen_text(app)
        await pilot.press("slash", *"#dead-end")
        table = features.query_one(FeatureTable)
        assert [int(f) for f in table.rows.feature[table.order]] == [feature]
        await pilot.press("escape")
        while features.sort_key != "notes":
            await pilot.press("s")
        assert int(table.rows.feature[table.order[0]]) == feature  # noted features sort first


async def test_escape_leaves_the_note_unchanged_and_empty_saves_delete(db: Path) -> None:
    """Escape cancels; saving empty text and no tags deletes the note (and its side-file row)."""
    Annotations(db).set_note(3, "old text", ["todo"])
    app = browser(db, Location("feature", 3))
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(pilot)
        assert "#todo old text" in str(app.screen.query_one("#feature-header", Static).render())
        await pilot.press("e")
        await pilot.pause()
        await pilot.press(*" more", "escape")
        await settle(pilot)
        assert Annotations(db).note(3).text == "old text"
        await pilot.press("e")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, NoteEditor)
        editor.query_one("#note-text", TextArea).text = ""
        editor.query_one("#note-tags", Input).value = ""
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert Annotations(db).note(3) is None
        assert "old text" not in str(app.screen.query_one("#feature-header", Static).render())
    assert side_path(db).name == "browse.notes.sqlite"


async def test_explanations_show_in_the_list_and_on_the_page(db: Path) -> None:
    """A stored explanation appears as '≈ text' in the list's note column and on the feature page with its model."""
    Annotations(db).add_explanation(
        {"feature": 4, "explanation": "volcanic smoke", "model": "vlm-x", "prompt_version": "v1",
         "endpoint": "http://127.0.0.1:1/v1", "image_ids": [1], "prompt_tokens": 1, "completion_tokens": 1,
         "seconds": 0.1, "created_at": "2026-12-01T00:00:00"}
    )  # fmt: skip
    app = browser(db)
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"volcanic smoke")
        table = app.screen.query_one(FeatureTable)
        assert [int(f) for f in table.rows.feature[table.order]] == [4]
        assert "≈ volcanic smoke" in screen_text(app)
        await pilot.press("enter", "enter")
        await settle(pilot)
        header = str(app.screen.query_one("#feature-header", Static).render())
        assert "explanation volcanic smoke" in header and "vlm-x" in header
