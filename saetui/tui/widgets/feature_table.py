"""The features list: a line-API ScrollView that draws only visible rows, so 65,536 features cost nothing to mount."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from saetui.tui.charts import number, percent
from saetui.tui.data import FeatureRows
from saetui.tui.messages import OpenFeature

SORT_KEYS: tuple[str, ...] = ("frequency", "entropy", "max", "agreement", "notes", "id")
NOTE_TITLE = "note · ≈explanation"
SORT_TITLES = {
    "frequency": "frequency",
    "entropy": "label entropy",
    "max": "max activation",
    "agreement": "lens~causal agreement (lens most wrong first)",
    "notes": "notes (noted, then explained, then the rest)",
    "id": "id",
    "score": "text match",
}
DEFAULT_DESCENDING = {
    "frequency": True, "entropy": False, "max": True, "agreement": False, "notes": True, "id": False,
    "score": True,
}  # fmt: skip


def order_rows(
    rows: FeatureRows,
    key: str,
    descending: bool,
    hide_dead: bool,
    mask: np.ndarray | None = None,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    """Row indices to show: filtered by mask and deadness, sorted by key (missing values last, ties by id)."""
    keep = np.ones(len(rows), dtype=bool) if mask is None else mask.copy()
    if hide_dead:
        keep &= ~rows.dead
    index = np.flatnonzero(keep)
    column = {
        "frequency": rows.frequency,
        "entropy": rows.entropy,
        "max": rows.max_value,
        "agreement": rows.agreement if rows.agreement is not None else np.full(len(rows), np.nan),
        "notes": annotated(rows),
        "id": rows.feature.astype(np.float64),
        "score": scores if scores is not None else np.zeros(len(rows)),
    }[key][index]
    primary = -column if descending else column
    primary = np.where(np.isnan(primary), np.inf, primary)
    return index[np.lexsort((rows.feature[index], primary))]


def annotated(rows: FeatureRows) -> np.ndarray:
    """1 for a feature with a note, 0.5 with only an explanation, NaN for neither (the notes sort key)."""
    value = np.full(len(rows), np.nan)
    if rows.explanation is not None:
        value[rows.explanation.astype(bool)] = 0.5
    if rows.note is not None:
        value[rows.note.astype(bool)] = 1.0
    return value


class FeatureTable(ScrollView, can_focus=True):
    """All features as rows; Enter or a click on the highlighted row opens one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown,space", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "open", "Open", id="open-feature"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "feature-table--header",
        "feature-table--cursor",
        "feature-table--dead",
        "feature-table--label",
        "feature-table--lens",
    }
    DEFAULT_CSS = """
    FeatureTable { height: 1fr; overflow-x: hidden; }
    FeatureTable > .feature-table--header { text-style: bold; background: $panel; }
    FeatureTable > .feature-table--cursor { background: $accent 40%; }
    FeatureTable:focus > .feature-table--cursor { background: $accent; color: $text; }
    FeatureTable > .feature-table--dead { color: $text-disabled; }
    FeatureTable > .feature-table--label { color: $text; }
    FeatureTable > .feature-table--lens { color: $text-muted; }
    """

    cursor: reactive[int] = reactive(0, always_update=True)
    """Position of the highlighted row in the shown order."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty table; set_rows fills it."""
        super().__init__(id=id)
        self.rows: FeatureRows | None = None
        self.order = np.zeros(0, dtype=np.int64)
        self.scores: np.ndarray | None = None

    @property
    def current_feature(self) -> int | None:
        """The feature id on the highlighted row."""
        if self.rows is None or len(self.order) == 0:
            return None
        return int(self.rows.feature[self.order[min(self.cursor, len(self.order) - 1)]])

    def set_rows(self, rows: FeatureRows, order: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Show `order` (row indices into rows), keeping the highlighted feature when it is still shown."""
        keep = self.current_feature
        self.rows, self.order, self.scores = rows, order, scores
        self.virtual_size = Size(0, len(order) + 1)
        if keep is None or not self.move_to_feature(keep):
            self.cursor = 0
        self.refresh()

    def move_to_feature(self, feature: int) -> bool:
        """Highlight a feature if it is in the shown rows."""
        if self.rows is None:
            return False
        hits = np.flatnonzero(self.rows.feature[self.order] == feature)
        if len(hits) == 0:
            return False
        self.cursor = int(hits[0])
        return True

    def neighbour(self, feature: int, step: int) -> int | None:
        """The feature `step` rows after (or before) a feature in the shown order."""
        if self.rows is None or len(self.order) == 0:
            return None
        hits = np.flatnonzero(self.rows.feature[self.order] == feature)
        if len(hits) == 0:
            return None
        position = int(hits[0]) + step
        if not 0 <= position < len(self.order):
            return None
        return int(self.rows.feature[self.order[position]])

    def validate_cursor(self, cursor: int) -> int:
        """Keep the cursor on a row."""
        return max(0, min(cursor, len(self.order) - 1)) if len(self.order) else 0

    def watch_cursor(self, cursor: int) -> None:
        """Scroll so the highlighted row stays visible and redraw."""
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_offset.y)
        if cursor < top:
            self.scroll_to(y=cursor, animate=False, immediate=True)
        elif cursor >= top + visible:
            self.scroll_to(y=cursor - visible + 1, animate=False, immediate=True)
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        """Keep the virtual width equal to the view."""
        self.virtual_size = Size(0, len(self.order) + 1)

    def action_cursor(self, step: int) -> None:
        """Move the highlight by step rows."""
        self.cursor += step

    def action_page(self, direction: int) -> None:
        """Move the highlight by a page."""
        self.cursor += direction * max(1, self.scrollable_content_region.height - 2)

    def action_edge(self, end: int) -> None:
        """Jump to the first (0) or last (1) row."""
        self.cursor = len(self.order) - 1 if end else 0

    def action_open(self) -> None:
        """Open the highlighted feature."""
        feature = self.current_feature
        if feature is not None:
            self.post_message(OpenFeature(feature))

    def on_click(self, event: events.Click) -> None:
        """A click highlights a row; a click on the highlighted row (or a double click) opens it."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0:
            return
        row = int(self.scroll_offset.y) + offset.y - 1
        if not 0 <= row < len(self.order):
            return
        if row == self.cursor or event.chain >= 2:
            self.cursor = row
            self.action_open()
        else:
            self.cursor = row

    def _columns(self, width: int) -> list[tuple[str, int, str]]:
        """(title, width, align) of each column for a view width; labels share what is left."""
        fixed = [("feature", 7, "right"), ("freq", 8, "right"), ("images", 8, "right"), ("max", 7, "right")]
        fixed.append(("H/Hmax", 7, "right"))
        if self.rows is not None and self.rows.has_effects:
            fixed.append(("lens~c", 6, "right"))
        if self.scores is not None:
            fixed.append(("match", 6, "right"))
        rest = max(8, width - sum(w + 1 for _, w, _ in fixed) - 1)
        notes = self.rows is not None and self.rows.has_notes
        if notes:
            note = rest // 2
            rest -= note + 1
        labels: list[tuple[str, int, str]] = [("top label", rest, "left")]
        if width >= 110:
            lens = rest // 3
            labels = [("top label", rest - lens - 1, "left"), ("logit lens", lens, "left")]
        return [*fixed, *labels, *([(NOTE_TITLE, note, "left")] if notes else [])]

    def _cells(self, row: int, columns: list[tuple[str, int, str]]) -> list[str]:
        """The text of each shown column for a row index into rows."""
        assert self.rows is not None
        r = self.rows

        def note() -> str:
            """The note, else the explanation marked with ≈."""
            if r.note is not None and r.note[row]:
                return str(r.note[row])
            explained = str(r.explanation[row]) if r.explanation is not None else ""
            return f"≈ {explained}" if explained else ""

        text = {
            "feature": lambda: str(int(r.feature[row])),
            "freq": lambda: percent(float(r.frequency[row])),
            "images": lambda: percent(float(r.image_frequency[row])),
            "max": lambda: number(float(r.max_value[row])),
            "H/Hmax": lambda: "–" if np.isnan(r.entropy[row]) else f"{r.entropy[row]:.2f}",
            "lens~c": lambda: "–" if np.isnan(r.agreement[row]) else f"{r.agreement[row]:.0%}",
            "match": lambda: f"{self.scores[row]:.3f}" if self.scores is not None else "",
            "top label": lambda: r.label(r.top_label, row),
            "logit lens": lambda: r.label(r.lens_label, row),
            NOTE_TITLE: note,
        }
        return [text[title]() for title, _, _ in columns]

    @staticmethod
    def _fit(text: str, width: int, align: str) -> str:
        """Pad or cut text to width."""
        if len(text) > width:
            return text[: max(0, width - 1)] + "…"
        return text.rjust(width) if align == "right" else text.ljust(width)

    def render_line(self, y: int) -> Strip:
        """Line 0 is the fixed header; line y > 0 is shown row scroll_y + y - 1."""
        width = self.scrollable_content_region.width
        columns = self._columns(width)
        if y == 0:
            header = " ".join(self._fit(t, w, a) for t, w, a in columns)
            style = self.get_component_rich_style("feature-table--header")
            return Strip([Segment(self._fit(" " + header, width, "left"), style)], width)
        position = int(self.scroll_offset.y) + y - 1
        base = self.rich_style
        if self.rows is None or not 0 <= position < len(self.order):
            return Strip.blank(width, base)
        row = int(self.order[position])
        cells = self._cells(row, columns)
        if position == self.cursor:
            style = base + self.get_component_rich_style("feature-table--cursor")
            line = " " + " ".join(self._fit(c, w, a) for c, (_, w, a) in zip(cells, columns, strict=False))
            return Strip([Segment(self._fit(line, width, "left"), style)], width)
        numbers = base + (self.get_component_rich_style("feature-table--dead") if self.rows.dead[row] else Style())
        segments = [Segment(" ", base)]
        for i, (cell, (_, w, a)) in enumerate(zip(cells, columns, strict=False)):
            if i:
                segments.append(Segment(" ", base))
            title = columns[i][0]
            style = numbers
            if title == "top label" and not self.rows.dead[row]:
                style = base + self.get_component_rich_style("feature-table--label")
            elif title in ("logit lens", NOTE_TITLE):
                style = base + self.get_component_rich_style("feature-table--lens")
            segments.append(Segment(self._fit(cell, w, a), style))
        return Strip(segments).adjust_cell_length(width, base)
