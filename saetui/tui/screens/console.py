"""The SQL console: a query box and a results table over the same read-only connection as the rest."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static, TextArea

from saetui.errors import SaetuiError
from saetui.tui.messages import QueryFinished
from saetui.tui.navigation import Location
from saetui.tui.screens.base import PageScreen

ROW_LIMIT = 1000
EXAMPLE = "SELECT feature, frequency, top_label FROM features WHERE NOT dead ORDER BY frequency DESC LIMIT 20"


class SqlScreen(PageScreen):
    """Type SQL, Ctrl+R (or F5) runs it; Escape leaves the editor so the page keys work again."""

    page_title = "SQL"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r,f5", "run_query", "Run", id="run-query", priority=True),
        Binding("escape", "leave_editor", "Leave editor", show=False),
        Binding("e", "edit", "Edit", id="edit-query"),
    ]

    def __init__(self) -> None:
        """An idle console."""
        super().__init__()
        self.running: str | None = None

    def compose_page(self) -> ComposeResult:
        """Editor, status line, results."""
        yield TextArea(EXAMPLE, id="sql-editor", soft_wrap=True, show_line_numbers=False)
        yield Static("Ctrl+R or F5 runs · read-only · at most 1,000 rows shown", id="sql-status")
        yield DataTable(id="sql-results", zebra_stripes=True)

    def on_mount(self) -> None:
        """No blinking cursor: over SSH every blink is a redraw."""
        self.query_one("#sql-editor", TextArea).cursor_blink = False

    def apply_target(self, location: Location) -> None:
        """Focus the editor when the console opens."""
        self.query_one("#sql-editor", TextArea).focus()

    def action_edit(self) -> None:
        """Focus the editor."""
        self.query_one("#sql-editor", TextArea).focus()

    def action_leave_editor(self) -> None:
        """Move the focus to the results so single-key bindings work."""
        self.query_one("#sql-results", DataTable).focus()

    def action_run_query(self) -> None:
        """Run the editor's SQL in a worker (a running query is cancelled first)."""
        sql = self.query_one("#sql-editor", TextArea).text.strip()
        if not sql:
            return
        if self.running is not None:
            self.browser.data.interrupt("sql")
        self.running = sql
        self.query_one("#sql-status", Static).update("running…")
        self.run_query(sql)

    @work(thread=True, exclusive=True, group="sql", exit_on_error=False)
    def run_query(self, sql: str) -> None:
        """Execute on a fresh read-only cursor."""
        try:
            result = self.browser.data.run_sql(sql, ROW_LIMIT)
        except SaetuiError as error:
            self.post_message(QueryFinished(sql, None, error.one_line()))
            return
        self.post_message(QueryFinished(sql, result))

    @on(QueryFinished)
    def show_result(self, message: QueryFinished) -> None:
        """Fill the table or show the error line."""
        if message.sql != self.running:
            return
        self.running = None
        status = self.query_one("#sql-status", Static)
        table = self.query_one("#sql-results", DataTable)
        if message.result is None:
            status.update(Text(f"error: {message.error}", "red"))
            return
        result = message.result
        table.clear(columns=True)
        table.add_columns(*result.columns)
        table.add_rows([tuple("NULL" if v is None else v for v in row) for row in result.rows])
        more = f" (first {len(result.rows):,} shown)" if result.truncated else ""
        slow = f" · {result.seconds:.1f} s" if result.seconds >= 1 else ""  # only slow queries are worth a number
        status.update(f"{len(result.rows):,} rows{more} · {len(result.columns)} columns{slow}")
