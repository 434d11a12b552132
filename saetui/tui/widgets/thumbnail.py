"""A focusable tile of the feature page's image grid: the thumbnail (filled in when rendered) and a caption."""

from __future__ import annotations

from typing import Any, ClassVar

from PIL.Image import Image
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from saetui.tui.messages import OpenImage

TILE_COLUMNS = 20  # image cells per tile
TILE_ROWS = 10


class ThumbTile(Widget, can_focus=True):
    """One top image: Enter or a click opens the image page with this feature's heatmap."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "open", "Open image", id="open-image")]
    DEFAULT_CSS = f"""
    ThumbTile {{ width: {TILE_COLUMNS + 2}; height: {TILE_ROWS + 4}; border: tall $background; }}
    ThumbTile:focus {{ border: tall $accent; }}
    ThumbTile .thumb-image {{ width: {TILE_COLUMNS}; height: {TILE_ROWS}; }}
    ThumbTile .thumb-caption {{ width: {TILE_COLUMNS}; height: 2; color: $text-muted; }}
    ThumbTile:focus .thumb-caption {{ color: $text; }}
    """

    def __init__(self, image_widget: type[Any] | None) -> None:
        """A blank tile drawing images with image_widget (a textual-image widget class, None for text only)."""
        super().__init__()
        self.image_widget = image_widget
        self.image_id: int | None = None
        self.feature: int | None = None
        self._caption = ""
        self._image: Image | None = None
        self._text: Any = None

    def compose(self) -> ComposeResult:
        """The image area and the caption."""
        if self.image_widget is not None:
            yield self.image_widget(None, classes="thumb-image")
        else:
            yield Static("", classes="thumb-image")
        yield Static("", classes="thumb-caption")

    def show(self, image_id: int, feature: int, value: float, label: str | None) -> None:
        """Describe a new image; its pixels arrive later through set_image."""
        self.image_id, self.feature = image_id, feature
        self._caption = f"#{image_id}  {value:.3g}\n{label or '(no label)'}"
        self._image, self._text = None, "…"
        self.tooltip = f"image {image_id} · {label or 'no label'} · max activation {value:.4g}"
        if self.is_mounted:
            self._apply()

    def set_image(self, image: Image | None, text: Any = None) -> None:
        """Show rendered pixels (or, with no image renderer, a text rendering)."""
        self._image, self._text = image, text
        if self.is_mounted:
            self._apply()

    def on_mount(self) -> None:
        """Show whatever was set before the tile was mounted."""
        self._apply()

    def _apply(self) -> None:
        """Push the caption and the image (or text) into the child widgets."""
        self.query_one(".thumb-caption", Static).update(self._caption)
        area = self.query_one(".thumb-image")
        if self.image_widget is not None:
            if area.image is not self._image:  # type: ignore[attr-defined]
                area.image = self._image  # type: ignore[attr-defined]
        else:
            area.update(self._text if self._text is not None else "")  # type: ignore[attr-defined]

    def action_open(self) -> None:
        """Open this image's page."""
        if self.image_id is not None:
            self.post_message(OpenImage(self.image_id, self.feature))

    def on_click(self, event: events.Click) -> None:
        """Clicking a tile opens it."""
        event.stop()
        self.focus()
        self.action_open()
