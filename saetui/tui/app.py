"""The `saetui browse` app: pages, browser-like history and the app-wide keys; data comes from workers only."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar

from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from saetui.tui.data import BrowseData
from saetui.tui.messages import OpenFeature, OpenImage
from saetui.tui.navigation import History, Location
from saetui.tui.rendering import ImageCache, Renderer
from saetui.tui.screens.features import FeaturesScreen
from saetui.tui.screens.help import HelpScreen
from saetui.tui.steer_panel import Steering


def _page(module: str, name: str) -> Callable[[], Screen[None]]:
    """A factory that imports a page's module on first use (keeps them out of the time to the first frame)."""

    def make() -> Screen[None]:
        return getattr(importlib.import_module(f"saetui.tui.screens.{module}"), name)()

    return make


class SaeTuiApp(App[None]):
    """Browse one saetui database: features list, feature pages, image pages, overview and a SQL console."""

    TITLE = "saetui"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (140, "-wide")]
    # One mode per page: switching modes keeps every page (and its state) alive, like browser tabs.
    DEFAULT_MODE = "features"
    MODES: ClassVar[dict[str, Any]] = {name: name for name in ("overview", "features", "feature", "image", "sql")}
    SCREENS: ClassVar[dict[str, Any]] = {
        "overview": _page("overview", "OverviewScreen"),
        "features": FeaturesScreen,
        "feature": _page("feature", "FeatureScreen"),
        "image": _page("image", "ImageScreen"),
        "sql": _page("console", "SqlScreen"),
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("slash", "search", "Search", id="search"),
        Binding("b,backspace,alt+left", "back", "Back", id="back"),
        Binding("f,alt+right", "forward", "Forward", id="forward"),
        Binding("l", "go('features')", "List", id="features-list"),
        Binding("o", "go('overview')", "Overview", id="overview"),
        Binding("colon", "go('sql')", "SQL", id="sql-console"),
    ]

    def __init__(self, data: BrowseData, renderer: Renderer, start: Location | None = None) -> None:
        """An app over an open database, drawing images with renderer, starting at `start` (the features list)."""
        super().__init__()
        self.data = data
        self.renderer = renderer
        self.start = start or Location("features")
        self.history = History()
        self.image_cache = ImageCache()
        self.steering = Steering(data.path)  # loads the model only when the image page first steers

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the help sheet is open only its own keys and quitting work."""
        return not (isinstance(self.screen, HelpScreen) and action in {"back", "forward", "go", "search", "help"})

    def on_mount(self) -> None:
        """Open the start page."""
        self.navigate(self.start)

    def on_unmount(self) -> None:
        """Stop queries still running so the process can exit at once."""
        self.data.interrupt()
        self.steering.close()

    def navigate(self, location: Location, record: bool = True) -> None:
        """Show a location on its page (pages keep their state between visits)."""
        if record:
            self.history.visit(location)
        screen = self.get_screen(location.page)
        screen.target = location  # type: ignore[attr-defined]
        if self.current_mode == location.page:
            screen.on_screen_resume()  # type: ignore[attr-defined]
        else:
            self.switch_mode(location.page)

    def open_feature(self, feature: int) -> None:
        """Go to a feature's page."""
        self.navigate(Location("feature", feature))

    def adjacent_feature(self, feature: int, step: int) -> int | None:
        """The feature step rows away in the features list (by id when the list is not loaded)."""
        features = self.get_screen("features")
        assert isinstance(features, FeaturesScreen)
        found = features.neighbour(feature, step)
        if found is not None or features.rows is not None:
            return found
        return feature + step if feature + step >= 0 else None

    @on(OpenFeature)
    def _open_feature(self, message: OpenFeature) -> None:
        """A widget asked for a feature page."""
        self.open_feature(message.feature)

    @on(OpenImage)
    def _open_image(self, message: OpenImage) -> None:
        """A widget asked for an image page."""
        self.navigate(Location("image", message.image_id, message.feature))

    def action_go(self, page: str) -> None:
        """Switch to a page by name (overview, features, sql)."""
        self.navigate(Location(page))  # type: ignore[arg-type]

    def action_back(self) -> None:
        """Previous location."""
        location = self.history.back()
        if location is not None:
            self.navigate(location, record=False)

    def action_forward(self) -> None:
        """Next location."""
        location = self.history.forward()
        if location is not None:
            self.navigate(location, record=False)

    def action_search(self) -> None:
        """Go to the features list and focus its search box."""
        features = self.get_screen("features")
        assert isinstance(features, FeaturesScreen)
        features.search_requested = True
        self.navigate(Location("features"))

    def action_help(self) -> None:
        """Show the keys of this page and of the app."""
        if isinstance(self.screen, HelpScreen):
            return
        bindings = [b for b in self.BINDINGS if isinstance(b, Binding)]
        self.push_screen(HelpScreen(self.screen, bindings, self.renderer.name))
