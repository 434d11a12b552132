"""Build and run the browser: pick the image renderer (before Textual owns the terminal), open the database."""

from __future__ import annotations

import os
from pathlib import Path

from saetui.tui.app import SaeTuiApp
from saetui.tui.data import BrowseData
from saetui.tui.navigation import Location
from saetui.tui.rendering import load_renderer

IMAGES_ENV = "SAETUI_IMAGES"


def default_image_mode() -> str:
    """--images default: $SAETUI_IMAGES, else auto."""
    return os.environ.get(IMAGES_ENV, "auto").strip().lower() or "auto"


def build_app(
    db: str | Path, images: str = "auto", feature: int | None = None, compare: str | Path | None = None
) -> SaeTuiApp:
    """The app over db (opened read-only), drawing images with the chosen renderer, optionally on a feature."""
    data = BrowseData(db, compare)
    try:
        renderer = load_renderer(images)
    except BaseException:
        data.close()
        raise
    start = Location("feature", feature) if feature is not None else Location("features")
    return SaeTuiApp(data, renderer, start)


def browse(db: str | Path, images: str = "auto", feature: int | None = None, compare: str | Path | None = None) -> int:
    """Run the browser until the user quits; returns the exit status."""
    app = build_app(db, images, feature, compare)
    try:
        app.run()
    finally:
        app.data.close()
    return app.return_code or 0
