"""The note editor: a small modal over the feature page with the note's text and its tags."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static, TextArea

from saetui.store.annotations import SUGGESTED_TAGS, Note, clean_tags

EditedNote = tuple[str, list[str]]


class NoteEditor(ModalScreen[EditedNote | None]):
    """Edit one feature's note: ctrl+s saves (text and tags), escape leaves it unchanged."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="save-note", priority=True),
        Binding("escape", "cancel", "Cancel", id="cancel-note", priority=True),
    ]
    DEFAULT_CSS = """
    NoteEditor { align: center middle; }
    NoteEditor > Vertical {
        width: 72; max-width: 95%; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    NoteEditor TextArea { height: 8; }
    NoteEditor .note-help { color: $text-muted; }
    """

    def __init__(self, feature: int, note: Note | None) -> None:
        """An editor filled with the feature's current note (empty when it has none)."""
        super().__init__()
        self.feature = feature
        self.note = note

    def compose(self) -> ComposeResult:
        """Title, text area, tags input and the keys."""
        with Vertical():
            yield Static(f"Note on feature {self.feature}", classes="section-title")
            yield TextArea(self.note.text if self.note else "", id="note-text", soft_wrap=True)
            yield Input(
                ", ".join(self.note.tags) if self.note else "",
                placeholder=f"tags, e.g. {', '.join(SUGGESTED_TAGS[:3])}",
                id="note-tags",
            )
            yield Static(
                "ctrl+s (or Enter in the tags) saves · escape cancels · tab moves\n"
                f"suggested tags: {', '.join(SUGGESTED_TAGS)} · empty text and no tags delete the note",
                classes="note-help",
            )

    def on_mount(self) -> None:
        """Start typing in the text."""
        self.query_one("#note-text", TextArea).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the tags field saves."""
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        """Close with the text and tags."""
        text = self.query_one("#note-text", TextArea).text
        tags = list(clean_tags([self.query_one("#note-tags", Input).value]))
        self.dismiss((text, tags))

    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
