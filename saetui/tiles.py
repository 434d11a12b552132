"""Tiles of images: a stored thumbnail decoded to a square, with a feature's patch heatmap over it, as PIL pixels.

The browser, the explainer's image grids and the HTML export all draw the same pixels from here; nothing imports
Textual or torch. Colour maps interpolate linearly between anchors.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from saetui.store.runs import TokenGrid

DECODE_SIDE = 448  # originals (when a database has no thumbnail) are decoded at about this size

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


def patch_grid(values: np.ndarray, grid: TokenGrid) -> np.ndarray:
    """The patch values of a per-token vector (0 = CLS, then patches row-major) as a [rows, cols] array."""
    patches = np.asarray(values[1 : 1 + grid.rows * grid.cols], dtype=np.float64)
    return patches.reshape(grid.rows, grid.cols)


def decode(data: bytes) -> Image.Image:
    """A stored thumbnail (or an original file's bytes) as a square RGB image (centre crop if needed)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (DECODE_SIDE, DECODE_SIDE))  # JPEG originals decode at a fraction of their size
        image = opened.convert("RGB")
    side = min(image.size)
    if image.width != image.height:
        left = (image.width - side) // 2
        top = (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image


def missing_image(size: tuple[int, int]) -> Image.Image:
    """A dark grey tile with a cross, shown when an image has neither a thumbnail nor a readable file."""
    image = Image.new("RGB", (64, 64), (48, 48, 52))
    pixels = np.asarray(image).copy()
    diagonal = np.arange(64)
    pixels[diagonal, diagonal] = (140, 140, 150)
    pixels[diagonal, 63 - diagonal] = (140, 140, 150)
    return Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST)


def overlay(image: Image.Image, values: np.ndarray, vmax: float, grid: TokenGrid) -> Image.Image:
    """Dim inactive patches and tint active ones by the feature's per-patch value (values: one per token)."""
    if grid.rows == 0:  # a pooled embedding has no patches: tint the whole image by its one value
        patches = np.full((1, 1), float(values[0]) if len(values) else 0.0)
    else:
        patches = np.clip(patch_grid(values, grid), 0, None)
    grid_values = patches
    strength = np.clip(grid_values / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(grid_values)
    mask = Image.fromarray((strength * 255).astype(np.uint8), "L").resize(image.size, Image.Resampling.BILINEAR)
    alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255.0
    colours = colour_map(np.asarray(mask, dtype=np.float64) / 255.0 * 0.75 + 0.25, HEAT).astype(np.float64)
    base = np.asarray(image, dtype=np.float64)
    dimmed = base * (0.3 + 0.7 * alpha)
    out = dimmed * (1 - 0.45 * alpha) + colours * (0.45 * alpha)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def render(
    data: bytes | None,
    size: tuple[int, int],
    values: np.ndarray | None = None,
    vmax: float = 0.0,
    grid: TokenGrid | None = None,
) -> Image.Image:
    """A tile's pixels: the decoded thumbnail, with the heatmap overlay when values are given, at size."""
    if data is None:
        return missing_image(size)
    try:
        image = decode(data)
    except (OSError, ValueError, Image.DecompressionBombError):
        return missing_image(size)
    if values is not None and grid is not None:
        image = overlay(image, values, vmax, grid)
    return image.resize(size, Image.Resampling.LANCZOS)
