"""`saetui query`: read-only SQL over a saetui database, results on stdout (or -o FILE) in five formats."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import typer

from saetui.errors import NotFoundError, UsageError
from saetui.paths import default_db

HELP = """Run read-only SQL against a saetui database and print the result.

The SQL comes from the argument, or from stdin when the argument is '-' or missing. Several statements may be
given; the last one's result is printed. Statements that would change the database fail (exit 5) and change
nothing; so does bad SQL, with DuckDB's message.

The SQL sees the database only: it cannot read or write files (COPY ... TO, read_csv, ATTACH fail in one line);
-o FILE writes the result, and --allow-files lets the SQL read files (it still never writes one).

Tables and views: images, activations(image_id, token, feature, value), token_errors(image_id, token, sse,
total_ss, explained_variance), runs, skipped, batch_moments, plus the statistics tables of `saetui stats`, and
from the side file (saetui.notes.sqlite) notes, image_notes, explanations, feature_scores and sort_eval: copies,
so change notes with `saetui note`.

Formats: table (aligned text, at most 1,000 rows: a note on stderr says when rows were left out), csv, json (one
array), jsonl (one object per line), parquet (binary: needs -o FILE or a redirected stdout). DuckDB formats every
value, so all formats agree.
"""

EPILOG = """\b
Examples:
  saetui query "select count(*) from activations"
  saetui query "select label, count(*) n from images group by label order by n desc" --format csv
  echo "select * from runs" | saetui query --format jsonl
  saetui query "select * from activations where image_id = 7" -f parquet -o image7.parquet
"""


class Format(StrEnum):
    """Output formats of saetui query."""

    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


def register(app: typer.Typer) -> None:
    """Add the query command to the root app."""
    app.command(name="query", help=HELP, epilog=EPILOG)(query)


def query(
    sql: str | None = typer.Argument(None, help="SQL to run; '-' or nothing reads it from stdin.", show_default=False),
    db: Path | None = typer.Option(
        None, "--db", help="Database file [default: $SAETUI_DB, else ./saetui.duckdb].", show_default=False
    ),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="Output format."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the result to this file instead of stdout.", show_default=False
    ),
    allow_files: bool = typer.Option(
        False, "--allow-files", help="Let the SQL read files (read_csv, read_parquet, ...); it never writes any."
    ),
) -> None:
    """Run read-only SQL against a saetui database."""
    from saetui.store import output as result_output
    from saetui.store.connection import connect
    from saetui.store.sandbox import confine, refuse_file_writes

    text = _read_sql(sql)
    if fmt is Format.parquet and output is None and sys.stdout.isatty():
        raise UsageError("parquet output is binary", "write it to a file with -o FILE, or redirect stdout")
    if output is not None and not output.parent.exists():
        raise NotFoundError(f"folder {output.parent} does not exist", "create it or choose another -o")
    with tempfile.TemporaryDirectory(prefix="saetui-query-") as scratch_dir:
        scratch = Path(scratch_dir) / f"result.{fmt.value}"
        con = connect(db if db is not None else default_db(), read_only=True)
        try:
            if allow_files:
                refuse_file_writes(con, text)
            else:
                confine(con, writable=[output if output is not None else scratch])
            rel = result_output.run(con, text)
            if output is not None:
                if fmt in (Format.csv, Format.parquet) and rel is not None and rel.columns:
                    result_output.write_file(rel, fmt.value, output)
                    truncated = False
                else:
                    with output.open("wb") as stream:
                        truncated = result_output.write(rel, fmt.value, stream)
            else:
                truncated = _write_stdout(lambda stream: result_output.write(rel, fmt.value, stream, scratch))
        finally:
            con.close()
    if truncated:
        typer.echo(
            f"saetui: showing the first {result_output.TABLE_ROW_LIMIT:,} rows; use --format csv, json, jsonl or "
            "parquet (or add LIMIT) for all of them",
            err=True,
        )


def _read_sql(sql: str | None) -> str:
    """The SQL from the argument, or from stdin for '-' or no argument."""
    if sql is None or sql == "-":
        if sql is None and sys.stdin.isatty():
            raise UsageError("no SQL given", 'pass it as an argument, e.g. saetui query "select 1", or on stdin')
        sql = sys.stdin.read()
    if not sql.strip():
        raise UsageError("the SQL is empty", 'pass a statement, e.g. saetui query "select count(*) from images"')
    return sql


def _write_stdout(write: Callable[[BinaryIO], bool]) -> bool:
    """Run a writer on stdout's byte stream; a reader that went away (| head) ends the output quietly."""
    sys.stdout.flush()
    stream = sys.stdout.buffer
    try:
        truncated = write(stream)
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return False
    return truncated
