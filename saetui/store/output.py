"""Query results in saetui's output formats, with every value formatted by DuckDB so all formats agree.

- table: an aligned text table of DuckDB's VARCHAR rendering of each value (numbers right-aligned, NULL shown as
  NULL, cells cut at MAX_CELL characters); at most TABLE_ROW_LIMIT rows, the caller says so on stderr;
- csv: DuckDB's CSV writer (header, RFC 4180 quoting);
- jsonl / json: one JSON object per row from DuckDB's to_json (json wraps them in an array); FLOAT columns go through
  their shortest text form so 0.1 stays 0.1 as in csv and table instead of float32's 0.10000000149011612;
- parquet: DuckDB's Parquet writer, types kept.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import duckdb

from saetui.errors import DataError
from saetui.store.sandbox import file_access_error

TABLE_ROW_LIMIT = 1000
CHANGING = {
    duckdb.StatementType.INSERT: "INSERT",
    duckdb.StatementType.UPDATE: "UPDATE",
    duckdb.StatementType.DELETE: "DELETE",
    duckdb.StatementType.DROP: "DROP",
    duckdb.StatementType.ALTER: "ALTER",
}
MAX_CELL = 80
_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


def run(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run SQL (several statements allowed; the last one gives the result), with DuckDB's error as one line.

    Statements that change rows are refused before anything runs: the database is open read-only anyway, and the
    annotation tables are in-memory copies of the side file that `saetui note` changes.
    """
    try:
        for statement in con.extract_statements(sql):
            if statement.type in CHANGING:
                raise DataError(
                    f"saetui query is read-only: {CHANGING[statement.type]} statements change data",
                    "change notes with `saetui note`, everything else with the command that writes it",
                )
        return con.sql(sql)
    except duckdb.Error as exc:
        raise query_error(exc) from None


def query_error(exc: duckdb.Error) -> DataError:
    """DuckDB's message in one line, saying so when the statement tried to write."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) - set("^ ")]
    text = " ".join(kept) or type(exc).__name__
    refused = file_access_error(text)
    if refused is not None:
        return refused
    if "read-only mode" in text:
        return DataError(f"saetui query is read-only: {text}")
    return DataError(text)


def write(rel: duckdb.DuckDBPyRelation | None, fmt: str, out: BinaryIO, scratch: Path | None = None) -> bool:
    """Write a result in fmt to a binary stream; True when the table format left rows out.

    csv and parquet go through a file first: `scratch` (one a confined connection may write) or a temporary one.
    """
    if rel is None or not rel.columns:
        return False
    try:
        if fmt == "table":
            text, truncated = render_table(rel)
            out.write(text.encode())
            return truncated
        if fmt in ("json", "jsonl"):
            _write_json(rel, out, as_array=fmt == "json")
            return False
        with tempfile.TemporaryDirectory(prefix="saetui-query-") as tmp:
            path = scratch or Path(tmp) / f"result.{fmt}"
            write_file(rel, fmt, path)
            with path.open("rb") as source:
                shutil.copyfileobj(source, out)
        return False
    except duckdb.Error as exc:
        raise query_error(exc) from None


def write_file(rel: duckdb.DuckDBPyRelation, fmt: str, path: Path) -> None:
    """Write a csv or parquet result straight to a file with DuckDB's own writer."""
    try:
        if fmt == "csv":
            rel.write_csv(str(path), header=True)
        elif fmt == "parquet":
            rel.write_parquet(str(path))
        else:
            raise ValueError(f"write_file handles csv and parquet, not {fmt}")
    except duckdb.Error as exc:
        raise query_error(exc) from None


def render_table(rel: duckdb.DuckDBPyRelation) -> tuple[str, bool]:
    """An aligned text table of the first TABLE_ROW_LIMIT rows, and whether more rows were left out."""
    rows = rel.query("q", f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM q LIMIT {TABLE_ROW_LIMIT + 1}").fetchall()
    truncated = len(rows) > TABLE_ROW_LIMIT
    right = [str(kind).startswith(_NUMERIC) and not str(kind).endswith("]") for kind in rel.types]
    cells = [[_cell_lines(value) for value in row] for row in rows[:TABLE_ROW_LIMIT]]
    header = [[name] for name in rel.columns]
    widths = [max(len(line) for row in [header, *cells] for line in row[i]) for i in range(len(rel.columns))]
    lines = _row_lines(header, widths, right)
    lines.append("  ".join("-" * width for width in widths).rstrip())
    for row in cells:
        lines.extend(_row_lines(row, widths, right))
    return "\n".join(lines) + "\n", truncated


def _cell_lines(value: str | None) -> list[str]:
    """A value as the lines of its table cell, each cut at MAX_CELL characters."""
    if value is None:
        return ["NULL"]
    return [line if len(line) <= MAX_CELL else line[: MAX_CELL - 1] + "…" for line in value.split("\n")] or [""]


def _row_lines(row: list[list[str]], widths: list[int], right: list[bool]) -> list[str]:
    """The text lines of one table row whose cells may span several lines."""
    height = max(len(cell) for cell in row)
    lines = []
    for i in range(height):
        parts = []
        for cell, width, align_right in zip(row, widths, right, strict=True):
            text = cell[i] if i < len(cell) else ""
            parts.append(text.rjust(width) if align_right else text.ljust(width))
        lines.append("  ".join(parts).rstrip())
    return lines


def _write_json(rel: duckdb.DuckDBPyRelation, out: BinaryIO, as_array: bool) -> None:
    """One JSON object per row (lines), or all of them in one array."""
    first = True
    if as_array:
        out.write(b"[")
    for line in _json_lines(rel):
        if as_array:
            out.write(("\n" if first else ",\n").encode())
        out.write(line.encode())
        if not as_array:
            out.write(b"\n")
        first = False
    if as_array:
        out.write(b"\n]\n" if not first else b"]\n")


def _json_lines(rel: duckdb.DuckDBPyRelation) -> Iterator[str]:
    """The rows as JSON text from DuckDB's to_json, FLOAT columns through their shortest text form."""
    names = rel.query("q", "SELECT * FROM q").columns  # the names DuckDB gives inside a query (duplicates renamed)
    columns = []
    for name, kind in zip(names, rel.types, strict=True):
        quoted = '"' + name.replace('"', '""') + '"'
        columns.append(f"CAST(CAST({quoted} AS VARCHAR) AS DOUBLE) AS {quoted}" if str(kind) == "FLOAT" else quoted)
    query = f"SELECT CAST(to_json(r) AS VARCHAR) AS line FROM (SELECT {', '.join(columns)} FROM q) r"
    for batch in rel.query("q", query).to_arrow_reader(10_000):
        yield from batch.column(0).to_pylist()
