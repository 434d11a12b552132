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
    """Stored tokens as arrays: N rows, each with its k (feature, value) pairs sorted by feature."""

    image_id: np.ndarray  # [N] int32
    token: np.ndarray  # [N] int16
    features: np.ndarray  # [N, k] int32
    values: np.ndarray  # [N, k] float32
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
    k = code_layout(con).k
    if not chunks:
        empty = np.empty(0, np.float32)
        return TokenCodes(
            np.empty(0, np.int32),
            np.empty(0, np.int16),
            np.empty((0, k), np.int32),
            np.empty((0, k), np.float32),
            empty,
            empty,
        )
    return TokenCodes(*(np.concatenate(parts) for parts in zip(*(_fields(c) for c in chunks), strict=True)))


def _fields(codes: TokenCodes) -> tuple[np.ndarray, ...]:
    """The arrays of a TokenCodes in field order."""
    return codes.image_id, codes.token, codes.features, codes.values, codes.sse, codes.total_ss


def _decode(batch: pa.RecordBatch, layout: CodeLayout) -> TokenCodes:
    """Turn one Arrow batch of token_codes rows into arrays, taking feature ids out of their keys."""
    k = layout.k
    keys = batch.column("feature_keys").flatten().to_numpy().reshape(-1, k)
    values = batch.column("feature_values").flatten().to_numpy().reshape(-1, k)
    return TokenCodes(
        image_id=batch.column("image_id").to_numpy(),
        token=batch.column("token").to_numpy(),
        features=layout.decode(keys),
        values=values,
        sse=batch.column("sse").to_numpy(),
        total_ss=batch.column("total_ss").to_numpy(),
    )
