"""Colour maps and patch grids (rows x cols, from the run) drawn as text (half blocks): error and activation maps."""

from __future__ import annotations

import math

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text

from saetui.store.runs import TokenGrid

# Anchors of matplotlib's viridis (perceptually uniform, readable for colour-blind users) and of a
# black-red-yellow "heat" map for activations; both are interpolated linearly between anchors.
VIRIDIS = np.array(
    [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
     [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]],
    dtype=np.float64,
)  # fmt: skip
HEAT = np.array([[20, 20, 30], [110, 20, 40], [200, 50, 20], [250, 150, 20], [255, 240, 120]], dtype=np.float64)


def colour_map(values: np.ndarray, anchors: np.ndarray = VIRIDIS) -> np.ndarray:
    """Map values in [0, 1] (NaN allowed) to uint8 RGB by linear interpolation between anchors."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    position = v * (len(anchors) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(anchors) - 1)
    t = (position - low)[..., None]
    return np.rint(anchors[low] * (1 - t) + anchors[high] * t).astype(np.uint8)


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


def patch_grid(values: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """The patch values of a per-token vector (0 = CLS, then patches row-major) as a [rows, cols] array."""
    patches = np.asarray(values[1 : 1 + grid.rows * grid.cols], dtype=np.float64)
    return patches.reshape(grid.rows, grid.cols)


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
