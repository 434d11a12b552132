"""Colour maps and patch grids (rows x cols, from the run) drawn as text (half blocks): error and activation maps."""

from __future__ import annotations

import math

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text

from saetui.tiles import VIRIDIS, colour_map


def normalise(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Scale values to [0, 1] between vmin and vmax (defaults: their finite min and max)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.zeros_like(values, dtype=np.float64)
    low = float(finite.min()) if vmin is None else vmin
    high = float(finite.max()) if vmax is None else vmax
    if high <= low:
        return np.where(np.isfinite(values), 1.0 if high > 0 else 0.0, np.nan)
    return (values - low) / (high - low)


def _rgb(pixel: np.ndarray) -> Color:
    """A Rich colour from an RGB triple."""
    return Color.from_rgb(int(pixel[0]), int(pixel[1]), int(pixel[2]))


def grid_text(grid: np.ndarray, anchors: np.ndarray = VIRIDIS, scale: int = 1) -> Text:
    """A [rows, cols] array in [0, 1] drawn with upper-half blocks: each patch is scale columns x scale half-rows."""
    colours = colour_map(grid, anchors)
    missing = ~np.isfinite(grid)
    size = grid.shape[0] * scale
    width = grid.shape[1] * scale if grid.ndim == 2 else 0
    text = Text(no_wrap=True, overflow="crop")
    for row in range(0, size, 2):
        for col in range(width):
            upper = (row // scale, col // scale)
            lower = ((row + 1) // scale, col // scale)
            fg = None if missing[upper] else _rgb(colours[upper])
            bg = None if lower[0] >= grid.shape[0] or missing[lower] else _rgb(colours[lower])
            text.append("▀" if fg is not None else " ", Style(color=fg, bgcolor=bg))
        if row + 2 < size:
            text.append("\n")
    return text


def swatch(value: float, anchors: np.ndarray = VIRIDIS) -> Style:
    """A background style for one value in [0, 1] (used for the CLS cell and legends)."""
    colour = colour_map(np.array([value if math.isfinite(value) else 0.0]), anchors)[0]
    return Style(bgcolor=_rgb(colour))


def legend(low: str, high: str, anchors: np.ndarray = VIRIDIS, width: int = 12) -> Text:
    """A one-line colour bar with its end labels."""
    text = Text(f"{low} ", no_wrap=True)
    for i in range(width):
        text.append(" ", swatch(i / max(width - 1, 1), anchors))
    text.append(f" {high}")
    return text
