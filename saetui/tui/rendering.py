"""Images in the terminal: the textual-image renderer choice, and thumbnail/heatmap rendering with an LRU cache.

textual-image probes the terminal when it is imported (sixel, then the kitty graphics protocol, then the cell size
in pixels), and the probe cannot run once Textual owns stdin, so `load_renderer` must run before `App.run()`.
Only the browse command calls it; `--images` (or $SAETUI_IMAGES) pins a renderer and `none` skips the import.
Its logger is silenced first: terminals that never answer the probes make it log tracebacks at WARNING.

A pinned renderer needs no detection, and version 0.12 (the last for Python 3.11) waits 0.1 s for every probe a
terminal does not answer (0.3 s at each start in tmux or over plain SSH; slow links also see stray replies,
textual-image issue #148). So for a pinned renderer the import runs with stdin hidden, which makes the probes
fail at once without writing anything (textual-image's own tests do the same); kitty and sixel still measure
the cell size first, since they draw in pixels.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from saetui.errors import UsageError

MODES: tuple[str, ...] = ("auto", "kitty", "sixel", "halfcell", "unicode", "none")


@dataclass(frozen=True)
class Renderer:
    """How images reach the terminal: the resolved method, its textual-image widget class and the cell size."""

    name: str  # kitty | sixel | halfcell | unicode | none
    widget: type[Any] | None
    cell_width: int = 10
    cell_height: int = 20

    def pixels(self, columns: int, rows: int) -> tuple[int, int]:
        """Pixel size of an image shown in columns x rows cells, so textual-image draws it without rescaling."""
        if self.name == "halfcell":
            return columns, rows * 2
        if self.name in ("unicode", "none"):
            return columns, rows
        return columns * self.cell_width, rows * self.cell_height


def silence_textual_image() -> None:
    """Keep textual-image's probe warnings (tracebacks on terminals that do not answer) off the screen."""
    logging.getLogger("textual_image").setLevel(logging.ERROR)


def load_renderer(mode: str) -> Renderer:
    """Import textual-image (probing the terminal once) and pick the widget for mode (auto = its detection)."""
    if mode not in MODES:
        raise UsageError(f"unknown image mode {mode!r}", f"use one of {', '.join(MODES)}")
    if mode == "none":
        return Renderer("none", None)
    silence_textual_image()
    _import_textual_image(detect=mode == "auto", cell_size=mode in ("auto", "kitty", "sixel"))
    import textual_image.renderable as renderables
    import textual_image.widget as widgets
    from textual_image._terminal import get_cell_size

    classes: dict[str, type[Any]] = {
        "kitty": widgets.TGPImage,
        "sixel": widgets.SixelImage,
        "halfcell": widgets.HalfcellImage,
        "unicode": widgets.UnicodeImage,
    }
    if mode == "auto":
        detected = {
            renderables.TGPImage: "kitty",
            renderables.SixelImage: "sixel",
            renderables.HalfcellImage: "halfcell",
            renderables.UnicodeImage: "unicode",
        }
        mode = detected.get(renderables.Image, "halfcell")
    cell = get_cell_size()
    return Renderer(mode, classes[mode], int(cell.width), int(cell.height))


def _import_textual_image(detect: bool, cell_size: bool) -> None:
    """Import textual-image, probing the terminal only for what the chosen mode needs."""
    if detect or "textual_image.widget" in sys.modules:
        import textual_image.widget  # noqa: F401 - the import is the probe

        return
    from textual_image._terminal import get_cell_size

    if cell_size:
        get_cell_size()  # cached for the widget module's own call below
    stdin = sys.__stdin__
    sys.__stdin__ = None  # type: ignore[misc]
    try:
        import textual_image.widget  # noqa: F401
    finally:
        sys.__stdin__ = stdin  # type: ignore[misc]


class ImageCache:
    """A thread-safe LRU of rendered PIL images (workers fill it, the UI thread reads it)."""

    def __init__(self, maxsize: int = 512) -> None:
        """An empty cache holding at most maxsize images."""
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Number of cached images."""
        return len(self._items)

    def get(self, key: Hashable, make: Callable[[], Image.Image]) -> Image.Image:
        """The cached image for key, made (outside the lock) and stored when absent."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = make()
        with self._lock:
            self._items[key] = image
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return image
