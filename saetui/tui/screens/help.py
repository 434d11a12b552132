"""The ? help: every key of the app and of the page underneath, the search syntax, and the image renderer."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

SEARCH_HELP = (
    ("dog", "features whose top label or logit-lens label contains 'dog' (filters while you type)"),
    ("123 or #123", "jump to feature 123"),
    ("~a red car", "free-text search: CLIP text embedding vs lens directions (needs the model files)"),
    ("Escape", "clear the search"),
)
IMAGES_HELP = (
    "Images use textual-image: kitty graphics (kitty), sixel (xterm -ti vt340, WezTerm, foot, mlterm), "
    "else coloured half blocks. Choose with --images auto|kitty|sixel|halfcell|unicode|none or $SAETUI_IMAGES. "
    "Over slow SSH or inside tmux use halfcell (tmux needs `set -g allow-passthrough on` for kitty/sixel)."
)


def _key_table(title: str, bindings: list[Binding]) -> Table:
    """A two-column table of keys and what they do."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    seen: set[str] = set()
    for binding in bindings:
        if binding.action in seen or not binding.description:
            continue
        seen.add(binding.action)
        keys = ", ".join(_pretty(k) for k in binding.key.split(","))
        table.add_row(keys, binding.description)
    return table


def _pretty(key: str) -> str:
    """A key name as printed on the keyboard."""
    names = {"question_mark": "?", "slash": "/", "colon": ":", "escape": "Esc", "enter": "Enter"}
    return names.get(key.strip(), key.strip())


class HelpScreen(ModalScreen[None]):
    """A scrollable sheet over the current page; any of Esc, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="close-help"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 100; height: 90%; border: thick $accent; padding: 0 1;
        background: $surface; }
    """

    def __init__(self, page: Screen[None], app_bindings: list[Binding], renderer: str) -> None:
        """Help for `page`, with the app-wide bindings and the active image renderer."""
        super().__init__()
        self.page = page
        self.app_bindings = app_bindings
        self.renderer = renderer

    def compose(self) -> ComposeResult:
        """One static holding every table."""
        page_bindings = [b for b in self.page.BINDINGS if isinstance(b, Binding)]
        page_bindings += [
            Binding("enter", "open", "Open the highlighted feature, image or tile"),
            Binding("tab,shift+tab", "focus", "Move between parts of the page"),
        ]
        search = Table(title="Search (/)", title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
        search.add_column(style="bold cyan", no_wrap=True)
        search.add_column()
        for key, text in SEARCH_HELP:
            search.add_row(key, text)
        body = Group(
            Text("saetui browse — keys (the mouse works too: click rows, tiles and lists, scroll with the wheel)\n"),
            _key_table("Everywhere", self.app_bindings),
            Text(""),
            _key_table("This page", page_bindings),
            Text(""),
            search,
            Text(""),
            Text(f"Images: {self.renderer}. {IMAGES_HELP}", style="dim"),
        )
        with VerticalScroll():
            yield Static(body)
