"""Opening a saetui DuckDB file: read-only by default, with DuckDB's lock and file errors turned into one line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from saetui.errors import DatabaseLockedError, DataError, NotFoundError, UsageError
from saetui.paths import DEFAULT_DB
from saetui.store.annotations import load_into

_LOCK_PID = re.compile(r"\(PID (\d+)\)")


def wal_path(path: str | os.PathLike[str]) -> Path:
    """The write-ahead log DuckDB keeps next to a database file."""
    return Path(f"{os.fspath(path)}.wal")


def refuse_folder(path: str | os.PathLike[str]) -> Path:
    """The database path, or a UsageError when it names a folder (the same line and exit code in every command)."""
    db = Path(path)
    if db.is_dir():
        raise UsageError(f"database {db} is a folder, not a file", f"pass a file path, e.g. {db / DEFAULT_DB}")
    return db


def connect(path: str | os.PathLike[str], read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the database at path; read-only by default (with the annotation tables), a missing file an error then."""
    db = refuse_folder(path)
    if read_only and not db.exists():
        raise NotFoundError(f"database {db} does not exist", "index images first: saetui index SOURCE --db PATH")
    if not read_only and not db.parent.exists():
        raise NotFoundError(f"folder {db.parent} does not exist", "create it or choose another --db")
    try:
        if not read_only:
            return quiet(duckdb.connect(str(db), read_only=False))
        from saetui.store.shards import union_connection  # a database growing under `index --live`: its shards

        con = union_connection(db) or duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as exc:
        raise _translate_open_error(db, exc) from None
    except duckdb.ConnectionException as exc:
        raise DatabaseLockedError(
            f"{db} is already open in this process with other settings ({_first_line(exc)})"
        ) from None
    except duckdb.ResourceInUseException as exc:  # a live run's writer and a reader in one process
        raise DatabaseLockedError(f"{db} is open elsewhere in this process ({_first_line(exc)})") from None
    load_into(con, db)  # notes, explanations and scores from the side file, as plain table names
    return con


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The connection without DuckDB's progress bar, which long merges and compactions would print into
    `saetui index`'s own progress."""
    con.execute("SET enable_progress_bar = false")
    return con


def remove_database(path: str | os.PathLike[str]) -> None:
    """Delete a database file and its write-ahead log (what --overwrite does), unless another process has it open."""
    db = refuse_folder(path)
    if db.exists():
        _refuse_if_locked(db)
    for file in (db, wal_path(db)):
        try:
            file.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(
                f"cannot delete {file}: {exc.strerror}", "close what uses it or choose another --db"
            ) from None


def _refuse_if_locked(db: Path) -> None:
    """Raise DatabaseLockedError while a writer in another process holds db; any other file may go."""
    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.IOException as exc:
        if "Could not set lock" in str(exc):
            raise _translate_open_error(db, exc) from None
    except duckdb.Error:
        return  # not a DuckDB file, or open in this process: deleting it is what was asked


def _translate_open_error(db: Path, exc: duckdb.IOException) -> Exception:
    """Turn DuckDB's IO error on open into the saetui error that says what to do."""
    text = str(exc)
    if "Could not set lock" in text:
        match = _LOCK_PID.search(text)
        holder = f" (PID {match.group(1)})" if match else ""
        return DatabaseLockedError(f"{db} is open in another process{holder}: wait for it or close it")
    if "not a valid DuckDB database" in text:
        return DataError(f"{db} is not a DuckDB database", "choose another --db")
    if "database does not exist" in text or "No such file" in text:
        return NotFoundError(f"database {db} does not exist", "index images first: saetui index SOURCE --db PATH")
    return DataError(f"cannot open {db}: {_first_line(exc)}", "check the file, or choose another --db")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
