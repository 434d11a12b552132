"""The frame every page shares: a one-line top bar (where you are), the page body and the key footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from saetui.tui.navigation import Location

if TYPE_CHECKING:
    from saetui.tui.app import SaeTuiApp


class TopBar(Static):
    """'saetui · database · page' on the left, the image renderer and history hints on the right."""

    DEFAULT_CSS = """
    TopBar { dock: top; height: 1; background: $panel; color: $text; padding: 0 1; }
    """


class PageScreen(Screen[None]):
    """A browser page: the app sets `target` and the page shows it when it becomes current."""

    page_title = ""

    def __init__(self) -> None:
        """A page with nothing requested yet."""
        super().__init__()
        self.target: Location | None = None

    @property
    def browser(self) -> SaeTuiApp:
        """The app, typed."""
        return cast("SaeTuiApp", self.app)

    def compose(self) -> ComposeResult:
        """Top bar, the page's widgets, footer."""
        yield TopBar(id="top-bar")
        yield from self.compose_page()
        yield Footer()

    def compose_page(self) -> ComposeResult:
        """The page body (subclasses)."""
        yield from ()

    def on_screen_resume(self) -> None:
        """Show the requested location whenever the page becomes current."""
        self.update_top_bar()
        if self.target is not None:
            self.apply_target(self.target)

    def update_top_bar(self) -> None:
        """Redraw the breadcrumb for the current location."""
        location = self.target.title() if self.target is not None else self.page_title
        history = self.browser.history
        arrows = ("‹b " if history.can_go_back() else "   ") + (" f›" if history.can_go_forward() else "   ")
        right = f"images: {self.browser.renderer.name}  {arrows}"
        left = f"saetui · {self.browser.data.path.name} · {location}"
        width = max(0, self.app.size.width - 2 - len(right) - 1)
        self.query_one(TopBar).update(left[:width].ljust(width) + " " + right)

    def apply_target(self, location: Location) -> None:
        """Load and show a location (subclasses)."""
