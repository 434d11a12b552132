"""The index writer: one run's batches of images and their codes, each batch in one DuckDB transaction via Arrow."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from saetui.errors import DatabaseLockedError, DataError
from saetui.store import runs, shards
from saetui.store.commits import OrderedLanes, Turn
from saetui.store.compaction import FANOUT, Compactor
from saetui.store.connection import connect, remove_database
from saetui.store.schema import SCHEMA_VERSION, CodeLayout, create_schema, read_layout, schema_version

# DuckDB's row group holds 122,880 rows; the writer checkpoints after about four of them (~1,900 images of 257
# tokens, ~200 MB of write-ahead log). DuckDB's own 16 MiB auto-checkpoint rewrote the open row group every few
# batches and left a third of the file as free blocks; checkpointing rarely leaves almost none.
CHECKPOINT_ROWS = 4 * 122_880
REOPEN_SECONDS = 60.0  # how long a live run waits for readers to close the file before it merges
_WAL_LIMIT = "1TiB"  # keeps DuckDB from checkpointing on its own between the writer's checkpoints


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One indexed image as the images table stores it."""

    image_id: int
    path: str
    label: str | None
    width: int
    height: int
    content_hash: str
    source_row: int | None
    thumbnail: bytes | None
    source: str | None = None  # None: the run's source
    key: str | None = None  # the source's stable identity of the item (resume); None: the path


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """A source item that could not be indexed, and why."""

    path: str
    reason: str
    source_row: int | None = None
    key: str | None = None  # the source's stable identity of the item (resume); None: the path


@dataclass(frozen=True, slots=True)
class BatchMoments:
    """Sums over a batch's stored tokens for saev's normalised MSE: token count, sum of ||x||^2, sum of x."""

    tokens: int
    sum_sq: float
    sum_x: np.ndarray  # [d_in] float64

    @classmethod
    def of(cls, x: np.ndarray) -> BatchMoments:
        """Moments of token vectors x [N, d_in], accumulated in float64."""
        x64 = np.asarray(x, dtype=np.float64)
        return cls(tokens=int(x64.shape[0]), sum_sq=float(np.square(x64).sum()), sum_x=x64.sum(axis=0))


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """One checked batch waiting for its commit (packed into Arrow tables by the commit's lane)."""

    images: Sequence[ImageRecord]
    tokens: np.ndarray
    features: np.ndarray
    values: np.ndarray
    sse: np.ndarray
    total_ss: np.ndarray
    skipped: Sequence[SkippedItem]
    embeddings: np.ndarray | None
    moments: BatchMoments | None

    @property
    def rows(self) -> int:
        """token_codes rows the batch adds."""
        return len(self.images) * len(self.tokens)


class IndexWriter:
    """Writes one run into a database: whole batches atomically, skipped items, and the run's end."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        db: Path,
        layout: CodeLayout,
        source: str,
        run_id: int,
        next_image_id: int,
        resumed: bool,
        done_keys: frozenset[str],
        commit_images: int = 1,
        live: bool = False,
        lanes: int = 1,
        fanout: int = FANOUT,
    ) -> None:
        """Wrap an open read-write connection; use IndexWriter.open to get one.

        live: commits become published shards (saetui.store.shards) and the database file is released until the
        run finishes, so readers can open it while it grows; every `fanout` shards of a level are compacted into
        one (saetui.store.compaction). lanes: threads that pack and insert commits, made durable in order
        (saetui.store.commits).
        """
        self._con: duckdb.DuckDBPyConnection | None = con
        self.db = db
        self.layout = layout
        self.source = source
        self.run_id = run_id
        self.next_image_id = next_image_id  # the first id this writer's caller may give a new image
        self.resumed = resumed
        self.done_keys = done_keys
        self.images_written = 0
        self.skipped_written = 0
        self._rows_since_checkpoint = 0
        self.commit_images = max(1, commit_images)  # images gathered into one write transaction
        self._pending: list[PendingBatch] = []
        self._pending_images = 0
        self._lanes = OrderedLanes(lanes)
        self._compactor: Compactor | None = None
        if live:  # release the file: commits go to shards until finish_run / close merges them
            con.close()
            self._con = None
            self._compactor = Compactor(db, layout, shards.new_session(), fanout)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        settings: Mapping[str, object],
        *,
        source: str,
        source_items: int | None = None,
        overwrite: bool = False,
        commit_images: int = 1,
        live: bool = False,
        lanes: int = 1,
        fanout: int = FANOUT,
    ) -> IndexWriter:
        """Open (creating if new) the database for a run over source, continuing the run with the same settings.

        Shards a killed live run left are merged first (whole commits only; temporary ones are discarded).
        """
        db = Path(path)
        if overwrite:
            remove_database(db)
            shutil.rmtree(shards.shard_dir(db), ignore_errors=True)
        normal = runs.normalise_settings(settings)
        layout = runs.code_layout(normal)
        con = connect(db, read_only=False)
        try:
            con.execute(f"SET wal_autocheckpoint = '{_WAL_LIMIT}'")
            shards.discard_partial(db)
            shards.merge(con, db)
            con.execute("BEGIN TRANSACTION")
            _prepare_schema(con, db, layout, normal)
            found = runs.find_run(con, source, normal)
            if found is None:
                run_id = runs.create_run(con, source, source_items, normal)
            else:
                run_id = found
                runs.mark_running(con, run_id)
            done = runs.done_keys(con, source)
            next_id = runs.next_image_id(con)
            con.execute("COMMIT")
        except BaseException:
            con.close()
            raise
        return cls(
            con, db, layout, source, run_id, next_id, found is not None, done, commit_images, live, lanes, fanout
        )

    @property
    def live(self) -> bool:
        """Whether commits become published shards (index --live)."""
        return self._compactor is not None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The open connection."""
        if self._con is None:
            raise RuntimeError("the index writer is closed")
        return self._con

    def write_batch(
        self,
        images: Sequence[ImageRecord],
        tokens: np.ndarray,
        features: np.ndarray,
        values: np.ndarray,
        sse: np.ndarray,
        total_ss: np.ndarray,
        moments: BatchMoments | None = None,
        skipped: Sequence[SkippedItem] = (),
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Store B images: tokens [T] stored per image, features/values [B, T, K], sse/total_ss [B, T], and
        (index --embeddings) each image's final normalised embedding [B, E].

        Batches are committed together once `commit_images` images are pending (one transaction each time, so a
        kill keeps whole commits only); flush(), finish_run() and close() commit what is pending.
        """
        tokens, features, values = np.asarray(tokens), np.asarray(features), np.asarray(values, dtype=np.float32)
        self._check_batch(images, tokens, features, values, sse, total_ss, embeddings)
        self._pending.append(
            PendingBatch(images, tokens, features, values, sse, total_ss, skipped, embeddings, moments)
        )
        self._pending_images += len(images)
        if self._pending_images >= self.commit_images:
            self.flush()

    def flush(self) -> None:
        """Hand the pending batches to the commit lanes as one commit; a checkpoint follows once enough rows have
        accumulated. With one lane the commit is durable when this returns, with more after drain()."""
        if self._compactor is not None:
            self._compactor.raise_error()
        if not self._pending:
            return
        pending, self._pending, self._pending_images = self._pending, [], 0
        self._rows_since_checkpoint += sum(batch.rows for batch in pending)
        checkpoint = None
        if self._rows_since_checkpoint >= CHECKPOINT_ROWS and not self.live:
            checkpoint, self._rows_since_checkpoint = self.checkpoint, 0
        self._lanes.submit(lambda turn: self._commit(pending, turn), checkpoint)

    def drain(self) -> None:
        """Wait until every commit handed to the lanes is durable; raises the error of one that failed."""
        self._lanes.drain()

    def _commit(self, pending: Sequence[PendingBatch], turn: Turn) -> None:
        """One commit on its lane: pack the batches, insert them in one transaction, make it durable in turn."""
        packed = [self._batch_tables(batch) for batch in pending]
        merged = {
            name: pa.concat_tables([tables[name] for tables in packed if name in tables])
            for name in dict.fromkeys(name for tables in packed for name in tables)
        }
        batches = [([record.image_id for record in batch.images], batch.moments) for batch in pending]
        turn.begin()
        if self._compactor is not None:
            final = shards.shard_path(self.db, self._compactor.session, turn.number, turn.number)
            con, temporary = shards.new_shard(final, self.layout)
            try:
                self._insert(con, merged, batches, lambda: None)
            except BaseException:
                con.close()
                shards.discard(temporary)
                raise
            shards.publish(con, temporary, final, before_rename=turn.durable)
            self._compactor.published()
        else:
            con = self.con.cursor()
            try:
                self._insert(con, merged, batches, turn.durable)
            finally:
                con.close()
        for batch in pending:  # only this commit is between its turn and the next one's: counting is safe
            self.images_written += len(batch.images)
            self.skipped_written += len(batch.skipped)

    def _insert(
        self,
        con: duckdb.DuckDBPyConnection,
        tables: Mapping[str, pa.Table],
        batches: Sequence[tuple[list[int], BatchMoments | None]],
        durable: Callable[[], None],
    ) -> None:
        """Insert the Arrow tables and each batch's moments in one transaction on con; durable() runs just before
        its COMMIT."""
        for table, arrow in tables.items():
            con.register(f"_saetui_batch_{table}", arrow)
        con.execute("BEGIN TRANSACTION")
        try:
            for table in tables:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _saetui_batch_{table}")
            with_moments = [(ids, moments) for ids, moments in batches if moments is not None and ids]
            if with_moments:  # one row per commit: the moments are sums, so the batches' rows add up
                ids = [i for batch_ids, _ in with_moments for i in batch_ids]
                con.execute(
                    "INSERT INTO batch_moments VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        self.run_id,
                        min(ids),
                        max(ids),
                        sum(moments.tokens for _, moments in with_moments),
                        sum(moments.sum_sq for _, moments in with_moments),
                        np.sum([moments.sum_x for _, moments in with_moments], axis=0).tolist(),
                    ],
                )
            durable()
            con.execute("COMMIT")
        except duckdb.ConstraintException as exc:
            _rollback(con)
            raise DataError(
                f"{self.db}: {str(exc).splitlines()[0]}", "image ids must be new; index into another --db"
            ) from None
        except BaseException:
            _rollback(con)
            raise
        finally:
            for table in tables:
                con.unregister(f"_saetui_batch_{table}")

    def checkpoint(self) -> None:
        """Write everything committed into the compressed file and empty the write-ahead log."""
        self.con.execute("CHECKPOINT")
        self._rows_since_checkpoint = 0

    def _reopen(self) -> duckdb.DuckDBPyConnection:
        """Take the database file back after a live run (waiting up to REOPEN_SECONDS for readers to let go)."""
        deadline = time.monotonic() + REOPEN_SECONDS
        while True:
            try:
                self._con = connect(self.db, read_only=False)
                return self._con
            except DatabaseLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def finish_run(self) -> None:
        """Commit what is pending, merge a live run's shards, mark the run done and checkpoint."""
        self.flush()
        self.drain()
        if self._compactor is not None:
            self._compactor.close()
            shards.merge(self._reopen(), self.db)
        runs.mark_done(self.con, self.run_id)
        self.checkpoint()

    def close(self) -> None:
        """Commit what is pending and close the connection; a run not finished stays 'running' and resumes.

        A live run's shards are merged now if the file is free, else on the next start.
        """
        try:
            try:
                self.flush()
                self.drain()
            finally:
                if self._compactor is not None:
                    self._compactor.close()
            if self.live and self._con is None:
                with contextlib.suppress(DatabaseLockedError):
                    shards.merge(self._reopen(), self.db)
        finally:
            self._lanes.close()
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> IndexWriter:
        """Use the writer as a context manager that closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block, error or not."""
        self.close()

    def _check_batch(
        self,
        images: Sequence[ImageRecord],
        tokens: np.ndarray,
        features: np.ndarray,
        values: np.ndarray,
        sse: np.ndarray,
        total_ss: np.ndarray,
        embeddings: np.ndarray | None,
    ) -> None:
        """Raise ValueError unless the arrays fit (tokens, features and values already numpy arrays): features and
        values [images, tokens, K] with the unused slots of a token marked by feature -1, sse and total_ss
        [images, tokens], embeddings [images, E]."""
        count = len(images)
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be one-dimensional, not of shape {tokens.shape}")
        token_shape = (count, tokens.shape[0])
        if features.ndim != 3 or features.shape[:2] != token_shape:
            raise ValueError(f"features has shape {features.shape}, expected {(*token_shape, 'K')}")
        if self.layout.k and features.shape[2] > self.layout.k:
            raise ValueError(
                f"features has {features.shape[2]} pairs per token, the database keeps at most {self.layout.k}"
            )
        for name, array, shape in (
            ("values", values, features.shape),
            ("sse", sse, token_shape),
            ("total_ss", total_ss, token_shape),
        ):
            if np.shape(array) != shape:
                raise ValueError(f"{name} has shape {np.shape(array)}, expected {shape}")
        if not np.issubdtype(features.dtype, np.integer):
            raise ValueError(f"features must be integers, not {features.dtype}")
        if features.size and (features.min() < -1 or features.max() >= self.layout.n_features):
            raise ValueError(f"features must lie in [0, {self.layout.n_features}) (-1 marks an unused slot)")
        if embeddings is not None and count and np.shape(embeddings)[0] != count:
            raise ValueError(f"embeddings has {np.shape(embeddings)[0]} rows for {count} images")

    def _batch_tables(self, batch: PendingBatch) -> dict[str, pa.Table]:
        """The Arrow tables of a checked batch, keyed by the table they go into."""
        tables: dict[str, pa.Table] = {}
        images = batch.images
        if images:
            tables["images"] = self._images_table(images)
            tables["token_codes"] = self._codes_table(
                images, batch.tokens, batch.features, batch.values, batch.sse, batch.total_ss
            )
        if batch.embeddings is not None and images:
            rows = np.ascontiguousarray(batch.embeddings, dtype=np.float32)
            tables["image_embeddings"] = pa.table(
                {
                    "image_id": pa.array([r.image_id for r in images], pa.int32()),
                    "embedding": pa.FixedSizeListArray.from_arrays(
                        pa.array(rows.reshape(-1), pa.float32()), rows.shape[1]
                    ),
                }
            )
        if batch.skipped:
            skipped, now = batch.skipped, runs.utc_now()
            tables["skipped"] = pa.table(
                {
                    "path": pa.array([item.path for item in skipped], pa.string()),
                    "reason": pa.array([item.reason for item in skipped], pa.string()),
                    "source_row": pa.array([item.source_row for item in skipped], pa.int64()),
                    "item_key": pa.array([item.key or item.path for item in skipped], pa.string()),
                    "run_id": pa.array([self.run_id] * len(skipped), pa.int32()),
                    "skipped_at": pa.array([now] * len(skipped), pa.timestamp("us")),
                }
            )
        return tables

    def _images_table(self, images: Sequence[ImageRecord]) -> pa.Table:
        """The images rows of a batch."""
        return pa.table(
            {
                "image_id": pa.array([r.image_id for r in images], pa.int32()),
                "path": pa.array([r.path for r in images], pa.string()),
                "label": pa.array([r.label for r in images], pa.string()),
                "width": pa.array([r.width for r in images], pa.int32()),
                "height": pa.array([r.height for r in images], pa.int32()),
                "content_hash": pa.array([r.content_hash for r in images], pa.string()),
                "source": pa.array([r.source or self.source for r in images], pa.string()),
                "source_row": pa.array([r.source_row for r in images], pa.int64()),
                "item_key": pa.array([r.key or r.path for r in images], pa.string()),
                "run_id": pa.array([self.run_id] * len(images), pa.int32()),
                "thumbnail": pa.array([r.thumbnail for r in images], pa.binary()),
            }
        )

    def _codes_table(
        self,
        images: Sequence[ImageRecord],
        tokens: np.ndarray,
        features: np.ndarray,
        values: np.ndarray,
        sse: np.ndarray,
        total_ss: np.ndarray,
    ) -> pa.Table:
        """The token_codes rows of a batch: each token's kept pairs sorted by feature, features as keys."""
        count, n_tokens, width = features.shape
        rows = count * n_tokens
        flat_features = features.reshape(rows, width).astype(np.int64)
        # a token's features are distinct, so any sort gives the same order; unused slots (-1) go last
        order = np.argsort(np.where(flat_features < 0, np.iinfo(np.int64).max, flat_features), axis=1)
        sorted_features = np.take_along_axis(flat_features, order, axis=1)
        sorted_values = np.take_along_axis(values.reshape(rows, width), order, axis=1)
        kept = sorted_features >= 0
        lengths = kept.sum(axis=1)
        offsets = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        image_ids = np.array([r.image_id for r in images], dtype=np.int64)
        serials = (image_ids[:, None] * n_tokens + np.arange(n_tokens)).reshape(-1)
        keys = self.layout.encode(np.repeat(serials, lengths), sorted_features[kept])
        key_type = pa.uint32() if self.layout.key_bits == 32 else pa.uint64()
        list_offsets = pa.array(offsets, pa.int32())  # typed arrays wrap numpy's buffers without a copy
        return pa.table(
            {
                "image_id": pa.array(np.repeat(image_ids.astype(np.int32), n_tokens), pa.int32()),
                "token": pa.array(np.tile(tokens.astype(np.int16), count), pa.int16()),
                "feature_keys": pa.ListArray.from_arrays(list_offsets, pa.array(keys, key_type)),
                "feature_values": pa.ListArray.from_arrays(
                    list_offsets, pa.array(np.ascontiguousarray(sorted_values[kept], dtype=np.float32), pa.float32())
                ),
                "sse": pa.array(np.asarray(sse, dtype=np.float32).reshape(-1), pa.float32()),
                "total_ss": pa.array(np.asarray(total_ss, dtype=np.float32).reshape(-1), pa.float32()),
            }
        )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll the open transaction back; a failed COMMIT has already done so itself."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        return


def _prepare_schema(
    con: duckdb.DuckDBPyConnection, db: Path, layout: CodeLayout, settings: Mapping[str, object]
) -> None:
    """Create the schema in a new database, or check that an existing one can take this run."""
    existing = read_layout(con)
    if existing is None:
        tables = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()[0][0]
        if tables:
            raise DataError(f"{db} is a DuckDB database saetui did not write", "choose another --db")
        create_schema(con, layout)
        return
    version = schema_version(con)
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{db} has saetui schema version {version}, this saetui writes version {SCHEMA_VERSION} "
            "(query and browse still read it)",
            "index into another --db, or --overwrite to re-index it",
        )
    runs.check_compatible(con, db, settings)
    if existing != layout:
        raise DataError(
            f"{db} keeps at most {existing.k or 'every'} pairs per token of {existing.n_features} features, this run "
            f"{layout.k or 'every'} of "
            f"{layout.n_features}",
            "use another --db, or --overwrite to replace it",
        )
