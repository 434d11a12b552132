"""The features list: every feature, sortable, with dead ones hideable, jump-to-id and label/free-text search."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from saetui.errors import SaetuiError
from saetui.tui.data import FeatureRows
from saetui.tui.messages import FeaturesLoaded, LoadFailed, TextSearchFinished
from saetui.tui.navigation import Location
from saetui.tui.screens.base import PageScreen
from saetui.tui.widgets.feature_table import DEFAULT_DESCENDING, SORT_KEYS, SORT_TITLES, FeatureTable, order_rows

SEARCH_HINT = "label, class, note, #tag or explanation · 123 jumps to a feature · ~free text (CLIP text search)"


class FeaturesScreen(PageScreen):
    """All features in a virtual table; the list state (sort, filter) survives leaving and coming back."""

    page_title = "features"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("r", "reverse", "Reverse", id="reverse"),
        Binding("d", "toggle_dead", "Dead", id="toggle-dead"),
        Binding("escape", "clear_search", "Clear", show=False),
    ]

    def __init__(self) -> None:
        """An empty list; rows arrive from a worker on first show."""
        super().__init__()
        self.rows: FeatureRows | None = None
        self.sort_key = "frequency"
        self.descending = True
        self.hide_dead = True
        self.label_filter = ""
        self.text_query = ""
        self.scores: np.ndarray | None = None
        self.search_requested = False
        self.loading = False

    def compose_page(self) -> ComposeResult:
        """Status line, search box (hidden until /), the table."""
        yield Static("loading features…", id="features-status")
        yield Input(placeholder=SEARCH_HINT, id="features-search")
        yield FeatureTable(id="features-table")

    @property
    def table(self) -> FeatureTable:
        """The table widget."""
        return self.query_one(FeatureTable)

    @property
    def search_box(self) -> Input:
        """The search input."""
        return self.query_one("#features-search", Input)

    def on_mount(self) -> None:
        """Start loading the rows and hide the search box."""
        box = self.search_box
        box.display = False
        box.cursor_blink = False  # over SSH every blink is a redraw
        self.table.focus()

    def apply_target(self, location: Location) -> None:
        """Load the rows once; open the search box when asked for."""
        if self.rows is None and not self.loading:
            self.loading = True
            self.load_rows()
        if self.search_requested:
            self.search_requested = False
            self.open_search()

    @work(thread=True, exclusive=True, group="features", exit_on_error=False)
    def load_rows(self) -> None:
        """Fetch the features table (a worker: never blocks input)."""
        try:
            rows = self.browser.data.feature_rows()
        except SaetuiError as error:
            self.post_message(LoadFailed("features", error.one_line()))
            return
        self.post_message(FeaturesLoaded(rows))

    @on(FeaturesLoaded)
    def show_rows(self, message: FeaturesLoaded) -> None:
        """Fill the table."""
        self.rows = message.rows
        self.loading = False
        if self.hide_dead and not bool((~message.rows.dead).any()):
            self.hide_dead = False
        self.refresh_rows()

    @on(LoadFailed)
    def show_failure(self, message: LoadFailed) -> None:
        """Say why there is no list."""
        self.loading = False
        self.query_one("#features-status", Static).update(f"cannot show {message.what}: {message.error}")

    def refresh_rows(self) -> None:
        """Re-apply sort and filters and redraw."""
        if self.rows is None:
            return
        mask = None
        if self.scores is not None:
            mask = ~np.isnan(self.scores)
        elif self.label_filter:
            mask = self.rows.matching(self.label_filter)
        key = "score" if self.scores is not None else self.sort_key
        descending = True if self.scores is not None else self.descending
        order = order_rows(self.rows, key, descending, self.hide_dead, mask, self.scores)
        self.table.set_rows(self.rows, order, self.scores)
        self.update_status(len(order))

    def reload_annotations(self) -> None:
        """Re-read notes and explanations from the side file into the loaded rows (after an edit) and redraw."""
        if self.rows is not None:
            self.rows = self.rows.with_annotations(*self.browser.data.feature_annotations())
            self.refresh_rows()

    def update_status(self, shown: int) -> None:
        """The line above the table: counts, sort, filters."""
        assert self.rows is not None
        total = len(self.rows)
        dead = int(self.rows.dead.sum())
        parts = [f"{shown:,} of {total:,} features ({total - dead:,} alive)"]
        if self.scores is not None:
            parts.append(f"text search: {self.text_query!r}")
        else:
            arrow = "↓" if self.descending else "↑"
            parts.append(f"sorted by {SORT_TITLES[self.sort_key]} {arrow}")
        if self.label_filter and self.scores is None:
            parts.append(f"label contains {self.label_filter!r}")
        parts.append("dead hidden" if self.hide_dead else "dead shown")
        self.query_one("#features-status", Static).update(" · ".join(parts))

    def neighbour(self, feature: int, step: int) -> int | None:
        """The feature before/after `feature` in the list as currently sorted and filtered."""
        return self.table.neighbour(feature, step) if self.rows is not None else None

    def action_cycle_sort(self) -> None:
        """Next sort key (frequency → entropy → max → lens~causal agreement and notes, if stored → id)."""
        self.scores = None
        shown = {"agreement": self.rows is not None and self.rows.has_effects}
        shown["notes"] = self.rows is not None and self.rows.has_notes
        keys = [k for k in SORT_KEYS if shown.get(k, True)]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)] if self.sort_key in keys else keys[0]
        self.descending = DEFAULT_DESCENDING[self.sort_key]
        self.refresh_rows()

    def action_reverse(self) -> None:
        """Flip the sort direction."""
        self.descending = not self.descending
        self.refresh_rows()

    def action_toggle_dead(self) -> None:
        """Show or hide dead features."""
        self.hide_dead = not self.hide_dead
        self.refresh_rows()

    def open_search(self) -> None:
        """Show and focus the search box."""
        box = self.search_box
        box.display = True
        box.focus()
        box.select_all()  # typing replaces the previous search

    def action_clear_search(self) -> None:
        """Drop the label filter / text search and hide the box."""
        self.label_filter = ""
        self.text_query = ""
        self.scores = None
        box = self.search_box
        box.value = ""
        box.display = False
        self.table.focus()
        self.refresh_rows()

    @on(Input.Changed, "#features-search")
    def filter_live(self, event: Input.Changed) -> None:
        """Label filters apply while typing; ids and free text wait for Enter."""
        text = event.value.strip()
        if text.startswith("~") or text.lstrip("#").isdigit():
            return
        self.scores = None
        self.label_filter = text
        self.refresh_rows()

    @on(Input.Submitted, "#features-search")
    def submit_search(self, event: Input.Submitted) -> None:
        """Jump to an id, run a free-text search, or keep the label filter and go back to the list."""
        text = event.value.strip()
        if text.lstrip("#").isdigit():
            self.jump_to(int(text.lstrip("#")))
            return
        if text.startswith("~") and text[1:].strip():
            self.text_query = text[1:].strip()
            self.query_one("#features-status", Static).update(f"searching for {self.text_query!r}…")
            self.run_text_search(self.text_query)
            return
        if not text:
            self.action_clear_search()
            return
        self.table.focus()

    def jump_to(self, feature: int) -> None:
        """Highlight a feature, clearing filters that hide it; say so when it does not exist."""
        if self.rows is None:
            return
        if not self.table.move_to_feature(feature):
            exists = bool((self.rows.feature == feature).any())
            if not exists:
                self.notify(f"feature {feature} does not exist", severity="warning")
                return
            self.label_filter, self.scores, self.text_query = "", None, ""
            if bool(self.rows.dead[np.flatnonzero(self.rows.feature == feature)[0]]):
                self.hide_dead = False
            self.refresh_rows()
            self.table.move_to_feature(feature)
        box = self.search_box
        box.value = ""
        box.display = False
        self.table.focus()

    @work(thread=True, exclusive=True, group="text-search", exit_on_error=False)
    def run_text_search(self, query: str) -> None:
        """Free-text search through the CLIP text tower (imports torch on first use; runs in a worker)."""
        try:
            hits = self.browser.data.text_search(query)
        except SaetuiError as error:
            self.post_message(TextSearchFinished(query, [], error.one_line()))
            return
        except Exception as error:  # noqa: BLE001 - a failing optional model must not take the browser down
            self.post_message(TextSearchFinished(query, [], f"{type(error).__name__}: {error}"))
            return
        self.post_message(TextSearchFinished(query, hits))

    @on(TextSearchFinished)
    def show_text_search(self, message: TextSearchFinished) -> None:
        """Show the matches ordered by score, or say why the search could not run."""
        if self.rows is None or message.query != self.text_query:
            return
        if message.error is not None:
            self.text_query = ""
            self.notify(f"free-text search unavailable: {message.error}", severity="error", timeout=8)
            self.refresh_rows()
            return
        scores = np.full(len(self.rows), np.nan)
        position = {int(f): i for i, f in enumerate(self.rows.feature)}
        for feature, score in message.hits:
            if feature in position:
                scores[position[feature]] = score
        self.scores = scores
        self.refresh_rows()
        self.table.cursor = 0
        self.table.focus()
