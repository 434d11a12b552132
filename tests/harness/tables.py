"""Reading a test database: the rows of a query on a plain read-only DuckDB connection, or on saetui's own."""

from __future__ import annotations

from pathlib import Path

import duckdb

from saetui.store.connection import connect


def rows(db: Path, sql: str, params: list[object] | None = None) -> list[tuple]:
    """All rows of a query on a read-only connection (closed afterwards)."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def saetui_rows(db: Path, sql: str) -> list[tuple]:
    """All rows of a query on saetui's read-only connection: a live run's published shards, a killed writer's
    log replayed in memory, and the annotation tables included."""
    con = connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
