"""What user SQL may touch: the database only by default; files to read only when the user opts in.

`saetui query` and the browser's SQL console run SQL that someone typed. DuckDB's own settings keep it inside the
database: `enable_external_access = false` stops every file read or write (COPY ... TO, read_csv, ATTACH, INSTALL),
and `allowed_paths` lets through exactly the result files saetui itself writes (-o FILE); DuckDB refuses to turn
external access back on, or to change the allowed paths, while the database is open. With file reads allowed
(--allow-files), statements that write files or attach databases are still refused by their parsed type, so -o
stays the one way to write results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from saetui.errors import DataError

FILE_WRITING = {
    duckdb.StatementType.COPY: "COPY",
    duckdb.StatementType.COPY_DATABASE: "COPY FROM DATABASE",
    duckdb.StatementType.EXPORT: "EXPORT DATABASE",
    duckdb.StatementType.ATTACH: "ATTACH",
}
FILES_HINT = "write results with -o FILE; pass --allow-files to let the SQL read files"


def confine(con: duckdb.DuckDBPyConnection, writable: Sequence[Path] = ()) -> None:
    """Stop the connection's SQL from reading or writing any file except the given result paths, for good.

    The setting belongs to the open database, so every connection of this process to it is confined alike; a
    database some other connection already confined stays as it is.
    """
    if con.execute("SELECT current_setting('enable_external_access')").fetchall()[0][0] is False:
        return
    if writable:
        paths = ", ".join("'" + str(Path(p).absolute()).replace("'", "''") + "'" for p in writable)
        con.execute(f"SET allowed_paths = [{paths}]")
    con.execute("SET enable_external_access = false")


def refuse_file_writes(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise a DataError for a statement that would write a file or attach a database, before anything runs."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error:
        return  # the runner reports the syntax error itself
    for statement in statements:
        name = FILE_WRITING.get(statement.type)
        if name is not None:
            raise DataError(
                f"saetui query does not run {name}: SQL may not write files or attach databases",
                "write results with -o FILE",
            )


def file_access_error(text: str) -> DataError | None:
    """The one-line error for DuckDB's refusal of a file access, or None for any other message."""
    if "file system operations are disabled" in text or "disabled by configuration" in text:
        return DataError("saetui query sees the database only: SQL may not read or write files", FILES_HINT)
    return None
