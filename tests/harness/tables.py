"""Reading a test database: the rows of a query on a plain read-only DuckDB connection."""

from __future__ import annotations

from pathlib import Path

import duckdb


def rows(db: Path, sql: str, params: list[object] | None = None) -> list[tuple]:
    """All rows of a query on a read-only connection (closed afterwards)."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()
