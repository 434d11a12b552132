"""Live indexing: commits published as shard files beside the database, so it can be read while it grows.

With `saetui index --live` the writer holds the database file only to start the run and to finish it. Every
commit in between becomes one shard `<db>.shards/<first image id>-<time>.duckdb`, written under a temporary name
and published by an atomic rename, so a reader sees whole commits only and a kill -9 leaves whole shards plus at
most one partial temporary file (deleted on the next start). Readers that find published shards open an in-memory
connection that attaches the database and every shard read-only and shows each data table as the union of them
(`union_connection`); the derived tables come from the database alone. Finishing the run (or the next start after
a kill) merges the shards into the database in one transaction and deletes them: the single-file layout again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from saetui.store.schema import CodeLayout, create_schema

SHARDED_TABLES = ("images", "token_codes", "batch_moments", "skipped", "image_embeddings")
SUFFIX = ".duckdb"
TEMP_SUFFIX = ".tmp"


def shard_dir(db: Path) -> Path:
    """The folder of a database's shards."""
    return db.with_name(db.name + ".shards")


def published(db: Path) -> list[Path]:
    """The published shards of a database, in image order (their names are the first image id, zero-padded)."""
    folder = shard_dir(db)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix == SUFFIX)


def discard_partial(db: Path) -> None:
    """Delete temporary shards a killed writer left (never published, so no reader saw them)."""
    folder = shard_dir(db)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.endswith(TEMP_SUFFIX) or path.name.endswith(TEMP_SUFFIX + ".wal"):
                path.unlink(missing_ok=True)


def new_shard(db: Path, layout: CodeLayout, first_image_id: int) -> tuple[duckdb.DuckDBPyConnection, Path, Path]:
    """A connection to a fresh temporary shard with the database's schema, its temporary and its final path."""
    folder = shard_dir(db)
    folder.mkdir(exist_ok=True)
    final = folder / f"{first_image_id:012d}-{time.time_ns():020d}{SUFFIX}"  # unique, and sorts in image order
    temporary = final.with_name(final.name + TEMP_SUFFIX)
    temporary.unlink(missing_ok=True)
    con = duckdb.connect(str(temporary))
    create_schema(con, layout)
    return con, temporary, final


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
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, final)


def merge(con: duckdb.DuckDBPyConnection, db: Path) -> int:
    """Move every published shard's rows into the database (one transaction) and delete the shards."""
    shards = published(db)
    if not shards:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        for i, shard in enumerate(shards):
            con.execute(f"ATTACH '{shard}' AS _shard{i} (READ_ONLY)")
            for table in SHARDED_TABLES:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _shard{i}.{table}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for i in range(len(shards)):
            with contextlib.suppress(duckdb.Error):  # a failed ATTACH leaves nothing to detach
                con.execute(f"DETACH _shard{i}")
    for shard in shards:
        shard.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the single-file layout again: no empty folder left beside it
        shard_dir(db).rmdir()
    return len(shards)


def union_connection(db: Path, attempts: int = 3) -> duckdb.DuckDBPyConnection | None:
    """An in-memory connection showing the database plus its published shards, or None when there are none.

    A shard merged (and deleted) between listing and attaching means the writer just finished: list again.
    """
    for attempt in range(attempts):
        shards = published(db)
        if not shards:
            return None
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"ATTACH '{db}' AS stored (READ_ONLY)")
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
