"""Streaming the stored codes: the active pairs of whole images, a chunk of image ids at a time, as numpy arrays."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np

from saetui.store.reader import iter_token_codes

BATCH_ROWS = 1 << 17  # token rows per Arrow batch
TOKEN_STRIDE = 1 << 16  # a token's position = image_id * TOKEN_STRIDE + token


@dataclass(frozen=True)
class ActivePairs:
    """The active (value > 0) pairs of a chunk of whole images, in (image_id, token) order."""

    image: np.ndarray  # int64
    token: np.ndarray  # int64
    feature: np.ndarray  # int64
    value: np.ndarray  # float32


def image_chunks(con: duckdb.DuckDBPyConnection, chunk_images: int) -> list[tuple[int, int]]:
    """Half-open image_id ranges [lo, hi) that each hold about chunk_images indexed images."""
    ids = con.sql("SELECT image_id FROM images ORDER BY image_id").fetchnumpy()["image_id"]
    if len(ids) == 0:
        return []
    starts = ids[::chunk_images].astype(np.int64)
    ends = np.append(starts[1:], np.int64(ids[-1]) + 1)
    return [(int(lo), int(hi)) for lo, hi in zip(starts, ends, strict=True)]


def active_pairs(con: duckdb.DuckDBPyConnection, chunks: list[tuple[int, int]]) -> Iterator[ActivePairs]:
    """Per chunk of image ids, every active pair of its images (read from the compact token_codes table)."""
    for lo, hi in chunks:
        parts: list[tuple[np.ndarray, ...]] = []
        for codes in iter_token_codes(con, "image_id >= ? AND image_id < ?", [lo, hi], BATCH_ROWS):
            active = codes.values > 0
            per_row = active.sum(axis=1)
            parts.append(
                (
                    np.repeat(codes.image_id.astype(np.int64), per_row),
                    np.repeat(codes.token.astype(np.int64), per_row),
                    codes.features[active].astype(np.int64),
                    codes.values[active],
                )
            )
        if parts:
            yield ActivePairs(*(np.concatenate(column) for column in zip(*parts, strict=True)))
        else:
            empty = np.zeros(0, dtype=np.int64)
            yield ActivePairs(empty, empty, empty, np.zeros(0, dtype=np.float32))


def token_rows(
    con: duckdb.DuckDBPyConnection, chunks: list[tuple[int, int]]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per Arrow batch of stored tokens: (position [N], features [N, k], active [N, k]) in token order."""
    for lo, hi in chunks:
        for codes in iter_token_codes(con, "image_id >= ? AND image_id < ?", [lo, hi], BATCH_ROWS):
            position = codes.image_id.astype(np.int64) * TOKEN_STRIDE + codes.token.astype(np.int64)
            yield position, codes.features, codes.values > 0
