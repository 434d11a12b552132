"""The annotations side file: notes, tags, explanations and scores kept beside a database, never inside it.

`saetui.duckdb` gets `saetui.notes.sqlite` next to it (SQLite in WAL mode, so the browser, `saetui note` and a
running `saetui explain` can all write while readers read, and nobody needs DuckDB's write lock: `browse` stays
read-only on the codes and `saetui stats --force` cannot touch what people wrote). Every read-only connection
saetui opens loads the side file into an in-memory catalogue `annotations` on its search path, so SQL sees the
tables by their plain names and joins them with `features`:

- notes(feature, text, tags, author, updated_at) and image_notes(image_id, text, tags, author, updated_at);
- explanations(feature, explanation, model, prompt_version, endpoint, image_ids, prompt_tokens,
  completion_tokens, seconds, created_at), one row per feature, model and prompt version;
- feature_scores(feature, score, value, n, detail, computed_at), one row per feature and score name;
- sort_eval(model, prompt_version, seed, trial, feature_a, feature_b, held_out, truth, answer, correct,
  created_at), one row per Sort Eval trial.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from saetui.errors import DataError, UsageError

CATALOG = "annotations"
SIDE_SUFFIX = ".notes.sqlite"
SIDE_SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000
SUGGESTED_TAGS = ("interesting", "polysemantic", "dead-end", "monosemantic", "todo")
NOTE_KINDS = {"feature": "notes", "image": "image_notes"}

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notes (
    feature INTEGER PRIMARY KEY, text TEXT NOT NULL, tags TEXT NOT NULL, author TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS image_notes (
    image_id INTEGER PRIMARY KEY, text TEXT NOT NULL, tags TEXT NOT NULL, author TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS explanations (
    feature INTEGER NOT NULL, explanation TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
    endpoint TEXT NOT NULL, image_ids TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
    seconds REAL, created_at TEXT NOT NULL, PRIMARY KEY (feature, model, prompt_version));
CREATE TABLE IF NOT EXISTS feature_scores (
    feature INTEGER NOT NULL, score TEXT NOT NULL, value REAL, n INTEGER, detail TEXT, computed_at TEXT NOT NULL,
    PRIMARY KEY (feature, score));
CREATE TABLE IF NOT EXISTS sort_eval (
    model TEXT NOT NULL, prompt_version TEXT NOT NULL, seed INTEGER NOT NULL, trial INTEGER NOT NULL,
    feature_a INTEGER NOT NULL, feature_b INTEGER NOT NULL, held_out INTEGER NOT NULL, truth TEXT NOT NULL,
    answer TEXT, correct INTEGER, created_at TEXT NOT NULL, PRIMARY KEY (model, prompt_version, seed, trial));
"""

# The DuckDB form of each table: (column, DuckDB type, how a SQLite value becomes a DuckDB one).
_TAGS = "tags"
DUCKDB_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "notes": (
        ("feature", "INTEGER"), ("text", "VARCHAR"), ("tags", "VARCHAR[]"), ("author", "VARCHAR"),
        ("updated_at", "TIMESTAMP"),
    ),
    "image_notes": (
        ("image_id", "BIGINT"), ("text", "VARCHAR"), ("tags", "VARCHAR[]"), ("author", "VARCHAR"),
        ("updated_at", "TIMESTAMP"),
    ),
    "explanations": (
        ("feature", "INTEGER"), ("explanation", "VARCHAR"), ("model", "VARCHAR"), ("prompt_version", "VARCHAR"),
        ("endpoint", "VARCHAR"), ("image_ids", "BIGINT[]"), ("prompt_tokens", "INTEGER"),
        ("completion_tokens", "INTEGER"), ("seconds", "DOUBLE"), ("created_at", "TIMESTAMP"),
    ),
    "feature_scores": (
        ("feature", "INTEGER"), ("score", "VARCHAR"), ("value", "DOUBLE"), ("n", "INTEGER"), ("detail", "VARCHAR"),
        ("computed_at", "TIMESTAMP"),
    ),
    "sort_eval": (
        ("model", "VARCHAR"), ("prompt_version", "VARCHAR"), ("seed", "INTEGER"), ("trial", "INTEGER"),
        ("feature_a", "INTEGER"), ("feature_b", "INTEGER"), ("held_out", "BIGINT"), ("truth", "VARCHAR"),
        ("answer", "VARCHAR"), ("correct", "BOOLEAN"), ("created_at", "TIMESTAMP"),
    ),
}  # fmt: skip
_JSON_LISTS = {"tags", "image_ids"}


@dataclass(frozen=True)
class Note:
    """What someone wrote about one feature (or image): free text and tags."""

    key: int
    text: str
    tags: tuple[str, ...]
    author: str | None
    updated_at: str

    def fields(self) -> dict[str, Any]:
        """text, tags (a list), author and updated_at as a JSON-ready dict."""
        return {"text": self.text, "tags": list(self.tags), "author": self.author, "updated_at": self.updated_at}


def side_path(db: str | os.PathLike[str]) -> Path:
    """The annotations file of a database: saetui.duckdb -> saetui.notes.sqlite, beside it."""
    path = Path(db)
    return path.with_name(path.stem + SIDE_SUFFIX) if path.suffix else path.with_name(path.name + SIDE_SUFFIX)


def now() -> str:
    """The current UTC time as ISO 8601 text (what every annotation row records)."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags as lower-case words without blanks or repeats, in the order given (commas split a string)."""
    seen: list[str] = []
    for raw in tags:
        for part in str(raw).split(","):
            tag = "-".join(part.strip().lower().split())
            if tag and tag not in seen:
                seen.append(tag)
    return tuple(seen)


def _install_schema(con: sqlite3.Connection) -> None:
    """Create whatever tables of the side file's schema are missing, and record its version."""
    con.executescript(_SQLITE_SCHEMA)
    con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SIDE_SCHEMA_VERSION)])


def _create(path: Path) -> None:
    """Create the side file whole: schema and WAL mode in a private file, then linked into place, so a reader never
    meets a file without its tables (and two first writers never replace each other's file)."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(temporary)) as con:
            con.execute("PRAGMA journal_mode = WAL")
            _install_schema(con)
            con.commit()
        try:
            os.link(temporary, path)
        except FileExistsError:  # another writer created it first: use theirs
            return
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class Annotations:
    """The side file of one database, opened for reading and writing (created on first write)."""

    def __init__(self, db: str | os.PathLike[str]) -> None:
        """Remember where the side file is; nothing is opened yet."""
        self.db = Path(db)
        self.path = side_path(self.db)

    @contextmanager
    def connection(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A short-lived SQLite connection: for writing (the file and its schema created on first use, committed
        on success), or read-only, which never writes the file (an absent file reads as empty tables)."""
        if write:
            if not self.path.parent.is_dir():
                raise DataError(f"folder {self.path.parent} does not exist", "create it or choose another --db")
            if not self.path.exists():
                _create(self.path)
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        elif self.path.exists():
            con = _read_only(self.path)
        else:
            con = sqlite3.connect(":memory:")
        with closing(con):
            try:
                if write:
                    con.execute("PRAGMA journal_mode = WAL")
                if write or not self.path.exists():
                    _install_schema(con)
                yield con
                if write:
                    con.commit()
            except sqlite3.OperationalError as exc:
                raise _sqlite_error(self.path, exc) from None
            except sqlite3.DatabaseError as exc:
                raise DataError(f"{self.path} is not a saetui annotations file ({exc})", "move it aside") from None

    # ---- notes -----------------------------------------------------------------------------------------------

    def set_note(self, key: int, text: str, tags: Sequence[str] = (), kind: str = "feature") -> Note:
        """Write (or replace) the note of a feature or image; empty text and no tags delete it."""
        table = _note_table(kind)
        column = "feature" if kind == "feature" else "image_id"
        tags = clean_tags(tags)
        note = Note(int(key), text.strip(), tags, _author(), now())
        with self.connection(write=True) as con:
            if not note.text and not note.tags:
                con.execute(f"DELETE FROM {table} WHERE {column} = ?", [note.key])
            else:
                con.execute(
                    f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?)",
                    [note.key, note.text, json.dumps(list(tags)), note.author, note.updated_at],
                )
        return note

    def note(self, key: int, kind: str = "feature") -> Note | None:
        """The note of one feature or image, if any."""
        column = "feature" if kind == "feature" else "image_id"
        with self.connection() as con:
            row = con.execute(f"SELECT * FROM {_note_table(kind)} WHERE {column} = ?", [int(key)]).fetchone()
        return None if row is None else Note(int(row[0]), row[1], tuple(json.loads(row[2])), row[3], row[4])

    def notes(self, kind: str = "feature") -> list[Note]:
        """Every note of a kind, by id."""
        with self.connection() as con:
            rows = con.execute(f"SELECT * FROM {_note_table(kind)} ORDER BY 1").fetchall()
        return [Note(int(r[0]), r[1], tuple(json.loads(r[2])), r[3], r[4]) for r in rows]

    # ---- explanations, scores, Sort Eval ---------------------------------------------------------------------

    def add_explanation(self, row: dict[str, Any]) -> None:
        """Store one explanation (replacing that feature's earlier one for the same model and prompt version)."""
        with self.connection(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO explanations VALUES (:feature, :explanation, :model, :prompt_version, "
                ":endpoint, :image_ids, :prompt_tokens, :completion_tokens, :seconds, :created_at)",
                {**row, "image_ids": json.dumps([int(i) for i in row["image_ids"]])},
            )

    def explained(self, model: str, prompt_version: str) -> set[int]:
        """Features that already have an explanation from this model and prompt version."""
        with self.connection() as con:
            rows = con.execute(
                "SELECT feature FROM explanations WHERE model = ? AND prompt_version = ?", [model, prompt_version]
            ).fetchall()
        return {int(f) for (f,) in rows}

    def latest_explanations(self, feature: int | None = None) -> dict[int, dict[str, Any]]:
        """Each feature's most recent explanation (any model) as a dict; only that feature's when one is given."""
        where, params = ("WHERE feature = ?", [int(feature)]) if feature is not None else ("", [])
        with self.connection() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(f"SELECT * FROM explanations {where} ORDER BY created_at, rowid", params).fetchall()
        return {int(r["feature"]): {**dict(r), "image_ids": json.loads(r["image_ids"])} for r in rows}

    def set_scores(self, score: str, rows: Iterable[tuple[int, float | None, int, dict[str, Any]]]) -> int:
        """Store (feature, value, n, detail) rows of one score, replacing those features' earlier values."""
        stamp = now()
        values = [(int(f), v, int(n), json.dumps(d), stamp) for f, v, n, d in rows]
        with self.connection(write=True) as con:
            con.executemany(
                "INSERT OR REPLACE INTO feature_scores VALUES (?, ?, ?, ?, ?, ?)",
                [(f, score, v, n, d, t) for f, v, n, d, t in values],
            )
        return len(values)

    def scores(self, score: str) -> dict[int, float | None]:
        """feature -> value of one stored score."""
        with self.connection() as con:
            rows = con.execute("SELECT feature, value FROM feature_scores WHERE score = ?", [score]).fetchall()
        return {int(f): v for f, v in rows}

    def feature_scores(self, feature: int) -> dict[str, float | None]:
        """score name -> value of one feature."""
        with self.connection() as con:
            rows = con.execute("SELECT score, value FROM feature_scores WHERE feature = ?", [int(feature)]).fetchall()
        return dict(rows)

    def add_trial(self, row: dict[str, Any]) -> None:
        """Store one Sort Eval trial."""
        with self.connection(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO sort_eval VALUES (:model, :prompt_version, :seed, :trial, :feature_a, "
                ":feature_b, :held_out, :truth, :answer, :correct, :created_at)",
                row,
            )

    def trials(self, model: str, prompt_version: str, seed: int) -> dict[int, dict[str, Any]]:
        """The stored trials of one Sort Eval run (model, prompt version, seed), by trial number."""
        with self.connection() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(
                "SELECT * FROM sort_eval WHERE model = ? AND prompt_version = ? AND seed = ?",
                [model, prompt_version, seed],
            ).fetchall()
        return {int(r["trial"]): dict(r) for r in rows}

    # ---- the DuckDB view -------------------------------------------------------------------------------------

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """A table's rows with JSON lists decoded, in the column order of DUCKDB_TABLES."""
        columns = [name for name, _ in DUCKDB_TABLES[table]]
        with self.connection() as con:
            rows = con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
        lists = [i for i, name in enumerate(columns) if name in _JSON_LISTS]
        if not lists:
            return rows
        decoded = []
        for row in rows:
            values = list(row)
            for i in lists:
                values[i] = json.loads(values[i]) if values[i] is not None else None
            decoded.append(tuple(values))
        return decoded


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; in a folder we may not write (no room for WAL's shared-memory file) the file is
    read as immutable, i.e. as it stands."""
    uri = path.resolve().as_uri()
    con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        con.close()
        return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def _note_table(kind: str) -> str:
    """The SQLite table of a note kind."""
    if kind not in NOTE_KINDS:
        raise UsageError(f"unknown note kind {kind!r}", "use feature or image")
    return NOTE_KINDS[kind]


def _author() -> str | None:
    """Who is writing (the login name), if the system knows."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _sqlite_error(path: Path, exc: sqlite3.OperationalError) -> DataError:
    """SQLite's operational error as saetui's one line."""
    text = str(exc)
    if "locked" in text:
        return DataError(f"{path} stayed locked for {BUSY_TIMEOUT_MS // 1000} s", "try again in a moment")
    if "readonly" in text or "unable to open" in text:
        return DataError(f"cannot write {path}: {text}", "check the folder's permissions")
    return DataError(f"{path}: {text}")


def load_into(con: duckdb.DuckDBPyConnection, db: str | os.PathLike[str]) -> None:
    """(Re)load the side file into the connection's in-memory `annotations` catalogue and put it on the path."""
    side = Annotations(db)
    attached = con.execute("SELECT 1 FROM duckdb_databases() WHERE database_name = ?", [CATALOG]).fetchall()
    if not attached:
        con.execute(f"ATTACH ':memory:' AS {CATALOG} (READ_WRITE)")
    for table, columns in DUCKDB_TABLES.items():
        declared = ", ".join(f"{name} {kind}" for name, kind in columns)
        con.execute(f"CREATE OR REPLACE TABLE {CATALOG}.{table} ({declared})")
        rows = side.rows(table) if side.path.exists() else []
        if rows:
            _insert(con, table, columns, rows)
    use(con)


def _insert(
    con: duckdb.DuckDBPyConnection, table: str, columns: tuple[tuple[str, str], ...], rows: list[tuple[Any, ...]]
) -> None:
    """Append rows to an annotation table through one Arrow table (thousands of rows in milliseconds)."""
    import pyarrow as pa

    names = [name for name, _ in columns]
    data = pa.table({name: pa.array([row[i] for row in rows]) for i, name in enumerate(names)})
    view = f"_annotations_{table}"
    con.register(view, data)
    try:
        casts = ", ".join(f"CAST({name} AS {kind})" for name, kind in columns)
        con.execute(f"INSERT INTO {CATALOG}.{table} SELECT {casts} FROM {view}")
    finally:
        con.unregister(view)


def use(con: duckdb.DuckDBPyConnection) -> None:
    """Let a connection or cursor name the annotation tables without the catalogue prefix."""
    con.execute(f"SET search_path = 'main,{CATALOG}.main'")
