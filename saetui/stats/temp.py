"""Numpy columns as DuckDB temp tables (through Arrow), the hand-over format between the stats passes."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa


def register_columns(
    con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, np.ndarray | list | pa.Array]
) -> None:
    """Expose numpy columns to SQL as a temp table."""
    table = pa.table({key: value if isinstance(value, pa.Array) else pa.array(value) for key, value in columns.items()})
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def nullable(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """An Arrow array with NaN (and where null is True) as NULL."""
    mask = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), dtype=bool)
    if null is not None:
        mask = mask | null
    return pa.array(values, mask=mask)
