"""Helpers for driving the browser in tests: a pinned half-cell renderer and waiting for workers to settle."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from saetui.tui.app import SaeTuiApp
from saetui.tui.data import BrowseData
from saetui.tui.navigation import Location
from saetui.tui.rendering import Renderer, load_renderer

CELL = (10, 20)  # textual-image cell size in pixels, seeded so nothing queries the terminal


def pinned_renderer(mode: str = "halfcell") -> Renderer:
    """The renderer for mode, with textual-image's terminal probes disabled (stdin None, seeded cell size).

    textual-image probes the terminal when first imported; under pytest stdout may be a real TTY, so stdin is
    hidden during the import (probes fail at once) and the cell size is fixed, as textual-image's own tests do.
    """
    from textual_image._terminal import CellSize, get_cell_size

    get_cell_size._result = CellSize(*CELL)  # type: ignore[attr-defined]
    stdin = sys.__stdin__
    sys.__stdin__ = None  # type: ignore[misc]
    try:
        return load_renderer(mode)
    finally:
        sys.__stdin__ = stdin  # type: ignore[misc]


def browser(db: Path, start: Location | None = None, mode: str = "halfcell") -> SaeTuiApp:
    """An app over db with the pinned renderer."""
    return SaeTuiApp(BrowseData(db), pinned_renderer(mode), start)


async def settle(pilot: Pilot[None], rounds: int = 3) -> None:
    """Let workers finish and their messages be handled (a few rounds: results start further workers)."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()


def screen_text(app: SaeTuiApp) -> str:
    """The characters on screen now, one line per row (what the user reads, without colours)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)
