"""Browser-like navigation: where the user is (a Location) and the back/forward history of locations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Page = Literal["overview", "features", "feature", "image", "sql"]


@dataclass(frozen=True)
class Location:
    """A page and, for the feature and image pages, which feature or image it shows."""

    page: Page
    key: int | None = None
    feature: int | None = None  # on an image page: the feature whose heatmap is shown

    def title(self) -> str:
        """A short name for breadcrumbs and the help screen."""
        if self.page == "feature":
            return f"feature {self.key}"
        if self.page == "image":
            return f"image {self.key}"
        return {"overview": "overview", "features": "features", "sql": "SQL"}.get(self.page, self.page)


class History:
    """Visited locations with a cursor: visiting truncates the forward part, like a web browser."""

    def __init__(self, limit: int = 500) -> None:
        """An empty history keeping at most `limit` entries."""
        self.limit = limit
        self._entries: list[Location] = []
        self._index = -1

    @property
    def current(self) -> Location | None:
        """The location shown now."""
        return self._entries[self._index] if self._index >= 0 else None

    def visit(self, location: Location) -> None:
        """Record a new location (a repeat of the current one is ignored)."""
        if location == self.current:
            return
        del self._entries[self._index + 1 :]
        self._entries.append(location)
        if len(self._entries) > self.limit:
            del self._entries[0]
        self._index = len(self._entries) - 1

    def replace(self, location: Location) -> None:
        """Change the current entry in place (e.g. the heatmap feature chosen on an image page)."""
        if self._index >= 0:
            self._entries[self._index] = location

    def can_go_back(self) -> bool:
        """Whether there is an earlier location."""
        return self._index > 0

    def can_go_forward(self) -> bool:
        """Whether there is a later location."""
        return self._index < len(self._entries) - 1

    def back(self) -> Location | None:
        """Step back and return the location to show (None at the start)."""
        if not self.can_go_back():
            return None
        self._index -= 1
        return self._entries[self._index]

    def forward(self) -> Location | None:
        """Step forward and return the location to show (None at the end)."""
        if not self.can_go_forward():
            return None
        self._index += 1
        return self._entries[self._index]
