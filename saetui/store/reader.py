"""Fast NumPy access to the compact token_codes table, for code that needs whole arrays rather than SQL rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from saetui.errors import DataError
from saetui.store.schema import CodeLayout, read_layout


@dataclass(frozen=True)
class TokenCodes:
    """Stored tokens as arrays: N rows of K slots, each row's pairs sorted by feature, unused slots (0, 0.0) after.

    K is the most pairs any row of the chunk holds; an unused slot has value 0, so it is never active.
    """

    image_id: np.ndarray  # [N] int32
    token: np.ndarray  # [N] int16
    features: np.ndarray  # [N, K] int32
    values: np.ndarray  # [N, K] float32
    sse: np.ndarray  # [N] float32
    total_ss: np.ndarray  # [N] float32


def code_layout(con: duckdb.DuckDBPyConnection) -> CodeLayout:
    """The code layout of a saetui database, or a DataError for any other database."""
    layout = read_layout(con)
    if layout is None:
        raise DataError("this database holds no saetui activations", "index images into it first: saetui index")
    return layout


def iter_token_codes(
    con: duckdb.DuckDBPyConnection,
    where: str = "",
    params: Sequence[object] = (),
    batch_rows: int = 65_536,
) -> Iterator[TokenCodes]:
    """Stream token_codes rows (optionally filtered by a SQL condition with ? parameters) in image order chunks."""
    layout = code_layout(con)
    condition = f"WHERE {where}" if where else ""
    query = (
        "SELECT image_id, token, feature_keys, feature_values, sse, total_ss FROM token_codes "
        f"{condition} ORDER BY image_id, token"
    )
    reader = con.cursor().sql(query, params=list(params) or None).to_arrow_reader(batch_rows)
    for batch in reader:
        if batch.num_rows:
            yield _decode(batch, layout)


def image_codes(con: duckdb.DuckDBPyConnection, image_id: int) -> TokenCodes:
    """Every stored token of one image (an image with nothing stored gives zero rows)."""
    chunks = list(iter_token_codes(con, "image_id = ?", [image_id]))
    if len(chunks) == 1:
        return chunks[0]
    if not chunks:
        empty = np.empty(0, np.float32)
        width = code_layout(con).k
        return TokenCodes(
            np.empty(0, np.int32),
            np.empty(0, np.int16),
            np.empty((0, width), np.int32),
            np.empty((0, width), np.float32),
            empty,
            empty,
        )
    width = max(chunk.features.shape[1] for chunk in chunks)
    return TokenCodes(
        np.concatenate([c.image_id for c in chunks]),
        np.concatenate([c.token for c in chunks]),
        np.concatenate([_widen(c.features, width) for c in chunks]),
        np.concatenate([_widen(c.values, width) for c in chunks]),
        np.concatenate([c.sse for c in chunks]),
        np.concatenate([c.total_ss for c in chunks]),
    )


def _widen(array: np.ndarray, width: int) -> np.ndarray:
    """[N, K] padded with zeros to [N, width]."""
    return np.pad(array, ((0, 0), (0, width - array.shape[1])))


def _padded(column: pa.Array, dtype: type) -> np.ndarray:
    """[N, K] array of a list column (fixed-size or variable), rows padded with zeros to the longest."""
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).astype(dtype).reshape(len(column), column.type.list_size)
    offsets = column.offsets.to_numpy()
    lengths = np.diff(offsets)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(dtype)
    width = int(lengths.max()) if len(lengths) else 0
    out = np.zeros((len(column), width), dtype=dtype)
    out[np.arange(width)[None, :] < lengths[:, None]] = flat
    return out


def _decode(batch: pa.RecordBatch, layout: CodeLayout) -> TokenCodes:
    """Turn one Arrow batch of token_codes rows into arrays, taking feature ids out of their keys."""
    keys = _padded(batch.column("feature_keys"), layout.key_dtype)
    return TokenCodes(
        image_id=batch.column("image_id").to_numpy(),
        token=batch.column("token").to_numpy(),
        features=layout.decode(keys),
        values=_padded(batch.column("feature_values"), np.float32),
        sse=batch.column("sse").to_numpy(),
        total_ss=batch.column("total_ss").to_numpy(),
    )
