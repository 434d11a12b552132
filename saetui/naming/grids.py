"""Image grids of a feature's top images (with its patch heatmap), as PIL images and data URLs for a model or a page.

A grid is what a person sees on the feature page: each top image's crop (the original file when readable, else
the stored 96 px thumbnail, upscaled) with the feature's per-patch values over it, scaled to the strongest value
among the images shown, laid out in rows of `columns` tiles with a thin gap.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import duckdb
import numpy as np
from PIL import Image

from saetui import tiles
from saetui.stats import queries
from saetui.store.runs import token_grid

GAP = 4  # pixels between tiles
BACKGROUND = (255, 255, 255)


def top_image_sets(
    con: duckdb.DuckDBPyConnection, features: Sequence[int], n: int | None = None
) -> dict[int, tuple[list[int], list[float]]]:
    """Each feature's stored top images up to rank n (all stored when None): (image ids, image-level values),
    strongest first; a feature without any gets two empty lists."""
    queries.require(con, "feature_images")
    limit = "" if n is None else f"AND rank <= {int(n)}"
    rows = con.execute(
        f"SELECT feature, image_id, value FROM feature_images WHERE feature IN (SELECT unnest(?::INTEGER[])) {limit} "
        "ORDER BY feature, rank",
        [[int(f) for f in features]],
    ).fetchall()
    tops: dict[int, tuple[list[int], list[float]]] = {int(f): ([], []) for f in features}
    for feature, image_id, value in rows:
        tops[int(feature)][0].append(int(image_id))
        tops[int(feature)][1].append(float(value))
    return tops


def top_image_ids(con: duckdb.DuckDBPyConnection, feature: int, n: int) -> list[int]:
    """The feature's n strongest images by image-level activation (from feature_images), strongest first."""
    return top_image_sets(con, [feature], n)[int(feature)][0]


def image_tiles(
    con: duckdb.DuckDBPyConnection,
    feature: int | None,
    image_ids: Sequence[int],
    side: int = 224,
    originals: bool = True,
) -> list[Image.Image]:
    """One square tile per image; with a feature, its heatmap over each (scaled to the strongest shown value)."""
    ids = [int(i) for i in image_ids]
    pixels = queries.image_bytes(con, ids, originals=originals)
    if feature is None:
        return [tiles.render(pixels.get(i), (side, side)) for i in ids]
    grid = token_grid(con)
    maps = queries.patch_maps(con, int(feature), ids, grid.n_tokens)
    vmax = max((float(np.max(values)) for values in maps.values()), default=0.0)
    return [tiles.render(pixels.get(i), (side, side), maps[i], vmax, grid) for i in ids]


def compose(parts: Sequence[Image.Image], columns: int = 3) -> Image.Image:
    """Tiles of one size laid out row by row, `columns` to a row, on a white background."""
    if not parts:
        raise ValueError("a grid needs at least one tile")
    width, height = parts[0].size
    rows = -(-len(parts) // columns)
    used = min(columns, len(parts))
    sheet = Image.new("RGB", (used * width + (used - 1) * GAP, rows * height + (rows - 1) * GAP), BACKGROUND)
    for index, part in enumerate(parts):
        row, column = divmod(index, columns)
        sheet.paste(part, (column * (width + GAP), row * (height + GAP)))
    return sheet


def feature_grid(
    con: duckdb.DuckDBPyConnection,
    feature: int,
    image_ids: Sequence[int],
    side: int = 224,
    columns: int = 3,
    heatmap: bool = True,
    originals: bool = True,
) -> Image.Image:
    """The grid of a feature's given images (e.g. its top 9 as 3 x 3), heatmaps on by default."""
    return compose(image_tiles(con, feature if heatmap else None, image_ids, side, originals), columns)


def encoded(image: Image.Image, kind: str = "JPEG", quality: int = 90) -> bytes:
    """An image encoded as JPEG (smaller, what a model is sent) or PNG."""
    buffer = io.BytesIO()
    if kind == "PNG":
        image.save(buffer, "PNG", optimize=True)
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def data_url(image: Image.Image, kind: str = "JPEG") -> str:
    """An image as a data: URL (what OpenAI-compatible image parts and self-contained HTML embed)."""
    mime = "image/png" if kind == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(encoded(image, kind)).decode('ascii')}"
