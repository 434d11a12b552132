"""Live indexing: commits published as shard files beside the database, so it can be read while it grows.

With `saetui index --live` the writer holds the database file only to start the run and to finish it. Every
commit in between becomes one shard in `<db>.shards/`, written under a temporary name and published by an atomic
rename, so a reader sees whole commits only and a kill -9 leaves whole shards plus at most one partial temporary
file (deleted on the next start). A shard's name says which commits it holds: `<session>-<first>-<last>.duckdb`,
the writer's start time and the range of its commit numbers. The compactor (saetui.store.compaction) rewrites
runs of shards into one covering shard while the run goes on, and a shard whose commits another shard covers is a
leftover of a kill between that shard's publication and the deletion of its inputs: nobody reads it.

Readers that find published shards open an in-memory connection that attaches the database and every shard
read-only and shows each data table as the union of them (`union_connection`); the derived tables come from the
database alone. Finishing the run (or the next start after a kill) merges the shards into the database in one
transaction that also records their names, so shards a kill left after that commit are deleted, not merged again:
the single-file layout again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from saetui.store.connection import quiet
from saetui.store.schema import CodeLayout, create_schema

SHARDED_TABLES = ("images", "token_codes", "batch_moments", "skipped", "image_embeddings")
SUFFIX = ".duckdb"
TEMP_SUFFIX = ".tmp"
MERGED_KEY = "merged_shards"  # store_meta: the names of the shards the last merge moved into the database
_NAME = re.compile(r"(\d{20})-(\d{9})-(\d{9})")
_OLD_NAME = re.compile(r"(\d{12})-\d{20}")  # saetui before compaction: <first image id>-<time>, one commit each
OLD_SESSION = 0  # the session of those names, whose ranges (image ids) may repeat


@dataclass(frozen=True, slots=True)
class Shard:
    """One published shard: the writer session that wrote it, the commits it holds (first..last) and its file."""

    session: int
    first: int
    last: int
    path: Path

    @property
    def commits(self) -> int:
        """How many commits the shard holds."""
        return self.last - self.first + 1


def shard_dir(db: Path) -> Path:
    """The folder of a database's shards."""
    return db.with_name(db.name + ".shards")


def shard_path(db: Path, session: int, first: int, last: int) -> Path:
    """Where the shard of commits first..last of a writer session is published."""
    return shard_dir(db) / f"{session:020d}-{first:09d}-{last:09d}{SUFFIX}"


def new_session() -> int:
    """A writer session's number: its start time in nanoseconds (one writer at a time holds a database)."""
    return time.time_ns()


def _parse(path: Path) -> Shard | None:
    """The shard a published file name describes, or None for a file that is not one."""
    if path.suffix != SUFFIX:
        return None
    if found := _NAME.fullmatch(path.stem):
        return Shard(int(found[1]), int(found[2]), int(found[3]), path)
    if found := _OLD_NAME.fullmatch(path.stem):
        return Shard(OLD_SESSION, int(found[1]), int(found[1]), path)
    return None


def listing(db: Path) -> tuple[list[Shard], list[Shard]]:
    """The database's published shards in commit order, and the covered leftovers that nobody may read.

    Sorted by session, first commit and then the widest range first, a shard is covered when an earlier one of
    its session reaches as far (names are unique, so that one holds more); older saetui's shards never are.
    """
    folder = shard_dir(db)
    if not folder.is_dir():
        return [], []
    found = sorted(
        (shard for path in folder.iterdir() if (shard := _parse(path)) is not None),
        key=lambda shard: (shard.session, shard.first, -shard.last, shard.path),
    )
    whole: list[Shard] = []
    covered: list[Shard] = []
    for shard in found:
        previous = whole[-1] if whole else None
        if previous and shard.session == previous.session != OLD_SESSION and shard.last <= previous.last:
            covered.append(shard)
        else:
            whole.append(shard)
    return whole, covered


def published(db: Path) -> list[Path]:
    """The files of the database's published shards, in commit order (image order)."""
    return [shard.path for shard in listing(db)[0]]


def merged_names(con: duckdb.DuckDBPyConnection, schema: str | None = None) -> set[str]:
    """The shard names the database records as merged into it (schema: an attached database's name)."""
    table = f"{schema}.store_meta" if schema else "store_meta"
    try:
        rows = con.execute(f"SELECT value FROM {table} WHERE key = ?", [MERGED_KEY]).fetchall()
    except duckdb.CatalogException:  # a database the writer has not given a schema yet
        return set()
    return set(json.loads(rows[0][0])) if rows else set()


def discard_partial(db: Path) -> None:
    """Delete temporary shards a killed writer or compactor left (never published, so no reader saw them)."""
    folder = shard_dir(db)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.endswith(TEMP_SUFFIX) or path.name.endswith(TEMP_SUFFIX + ".wal"):
                path.unlink(missing_ok=True)


def discard(temporary: Path) -> None:
    """Delete an unpublished shard and its write-ahead log."""
    temporary.unlink(missing_ok=True)
    temporary.with_name(temporary.name + ".wal").unlink(missing_ok=True)


def new_shard(final: Path, layout: CodeLayout) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A connection to a fresh temporary shard with the database's schema, to be published as final; its path."""
    final.parent.mkdir(exist_ok=True)
    temporary = final.with_name(final.name + TEMP_SUFFIX)
    discard(temporary)
    con = quiet(duckdb.connect(str(temporary)))
    create_schema(con, layout)
    return con, temporary


def publish(
    con: duckdb.DuckDBPyConnection, temporary: Path, final: Path, before_rename: Callable[[], None] = lambda: None
) -> None:
    """Checkpoint and close the shard, then rename it into place (atomic: readers see it whole or not at all).

    before_rename waits for the writer's earlier shards to be published, so the published ones are a prefix of
    the run's commits; a shard that may not follow them is deleted unpublished.
    """
    con.execute("CHECKPOINT")
    con.close()
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    try:
        before_rename()
    except BaseException:
        discard(temporary)
        raise
    os.replace(temporary, final)


def copy_rows(
    con: duckdb.DuckDBPyConnection, sources: list[Path], before_commit: Callable[[], None] = lambda: None
) -> None:
    """Insert every row of the shards' data tables, in their order, into con's tables in one transaction;
    before_commit runs inside it, just before its COMMIT."""
    con.execute("BEGIN TRANSACTION")
    try:
        for i, source in enumerate(sources):
            con.execute(f"ATTACH '{source}' AS _shard{i} (READ_ONLY)")
            for table in SHARDED_TABLES:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _shard{i}.{table}")
        before_commit()
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # an interrupted connection may have rolled back already
            con.execute("ROLLBACK")
        raise
    finally:
        for i in range(len(sources)):
            with contextlib.suppress(duckdb.Error):  # a failed ATTACH leaves nothing to detach
                con.execute(f"DETACH _shard{i}")


def merge(con: duckdb.DuckDBPyConnection, db: Path) -> int:
    """Move the published shards' rows into the database in one transaction that records their names, then
    delete them, with the covered leftovers and the shards an earlier merge already moved; how many it moved."""
    shards, covered = listing(db)
    done = merged_names(con)
    moving = [shard for shard in shards if shard.path.name not in done]
    if moving:
        names = json.dumps([shard.path.name for shard in moving])
        copy_rows(
            con,
            [shard.path for shard in moving],
            lambda: con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [MERGED_KEY, names]),
        )
    for shard in shards + covered:
        shard.path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the single-file layout again: no empty folder left beside it
        shard_dir(db).rmdir()
    return len(moving)


def union_connection(db: Path, attempts: int = 20) -> duckdb.DuckDBPyConnection | None:
    """An in-memory connection showing the database plus its published shards, or None when there are none.

    A shard merged or compacted (and deleted) between listing and attaching means the writer moved on: list again.
    """
    for attempt in range(attempts):
        shards = published(db)
        if not shards:
            return None
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"ATTACH '{db}' AS stored (READ_ONLY)")
            done = merged_names(con, "stored")
            shards = [shard for shard in shards if shard.name not in done]
            for i, shard in enumerate(shards):
                con.execute(f"ATTACH '{shard}' AS shard{i} (READ_ONLY)")
        except duckdb.IOException:
            con.close()
            if attempt + 1 == attempts or all(shard.exists() for shard in shards):
                raise
            continue
        return _union_views(con, len(shards))
    return None


def _union_views(con: duckdb.DuckDBPyConnection, n_shards: int) -> duckdb.DuckDBPyConnection:
    """Views over the attached database and shards: each data table as their union, the rest as stored."""
    query = "SELECT table_name FROM duckdb_tables() WHERE database_name = 'stored'"
    for (name,) in con.execute(query).fetchall():
        parts = [f"SELECT * FROM stored.{name}"]
        if name in SHARDED_TABLES:
            parts += [f"SELECT * FROM shard{i}.{name}" for i in range(n_shards)]
        con.execute(f"CREATE VIEW {name} AS {' UNION ALL BY NAME '.join(parts)}")
    views = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'stored' AND NOT internal"
    ).fetchall()
    for _name, sql in views:  # activations, token_errors: the same definitions, over the union
        con.execute(sql)
    return con
