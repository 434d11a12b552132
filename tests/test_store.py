"""The DuckDB store: exact round trips through the compact layout, run compatibility and resume, locks, and
integrity after SIGKILL at random moments of a writing process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from saetui.errors import DatabaseLockedError, DataError, NotFoundError
from saetui.store import writer as writer_module
from saetui.store.connection import connect, remove_database, wal_path
from saetui.store.reader import image_codes, iter_token_codes
from saetui.store.schema import TABLES, VIEWS, CodeLayout
from saetui.store.writer import BatchMoments, ImageRecord, IndexWriter, SkippedItem

K = 8
SETTINGS: dict[str, object] = {
    "model_id": "hf-hub:tiny/clip",
    "pretrained": "tiny",
    "layer": 20,
    "sae_repo": "tiny/scope",
    "sae_file": "20_resid/100.pt",
    "d_in": 8,
    "n_features": 65_536,
    "k": K,
    "tokens": "all",
    "precision": "fp32",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "image_size": 224,
    "standardise": False,
}
TOKENS = 257


def fake_codes(image_ids: list[int], n_tokens: int, k: int, n_features: int) -> tuple[np.ndarray, ...]:
    """Deterministic codes per image id: distinct features per token, values with negatives and zeros, errors."""
    features, values, sse, total = [], [], [], []
    for image_id in image_ids:
        rng = np.random.default_rng(image_id)
        steps = rng.integers(1, max(2, n_features // (k + 1)), (n_tokens, k))
        ascending = np.cumsum(steps, axis=1) % n_features
        order = np.argsort(rng.random((n_tokens, k)), axis=1)  # the writer must not rely on any given order
        features.append(np.take_along_axis(ascending, order, axis=1))
        vals = (rng.standard_normal((n_tokens, k)) * 5).astype(np.float32)
        vals[0, 0] = 0.0
        values.append(vals)
        t = rng.uniform(10, 100, n_tokens).astype(np.float32)
        total.append(t)
        sse.append((t * rng.uniform(0, 1, n_tokens)).astype(np.float32))
    return np.stack(features), np.stack(values), np.stack(sse), np.stack(total)


def records(image_ids: list[int], rows: list[int] | None = None) -> list[ImageRecord]:
    """Image records of source rows (default: equal to the ids), their path naming the row."""
    rows = image_ids if rows is None else rows
    return [
        ImageRecord(i, f"/src/{row}.jpg", f"label {i % 3}", 64, 48, f"{i:064x}", row, b"\xff\xd8jpeg")
        for i, row in zip(image_ids, rows, strict=True)
    ]


def write_images(writer: IndexWriter, image_ids: list[int], n_tokens: int = TOKENS) -> tuple[np.ndarray, ...]:
    """Write one batch of fake images and return the arrays written."""
    layout = writer.layout
    codes = fake_codes(image_ids, n_tokens, layout.k, layout.n_features)
    moments = BatchMoments.of(np.ones((len(image_ids) * n_tokens, 8)))
    writer.write_batch(records(image_ids), np.arange(n_tokens), *codes, moments)
    return codes


def stored_pairs(con: duckdb.DuckDBPyConnection) -> set[tuple[int, int, int, float]]:
    """Every row of the activations view."""
    return set(con.execute("SELECT image_id, token, feature, value FROM activations").fetchall())


def test_codes_round_trip_exactly(tmp_path: Path) -> None:
    """Every kept pair comes back from the views bit-exact (float32), including negative and zero values."""
    db = tmp_path / "a.duckdb"
    with IndexWriter.open(db, SETTINGS, source="/src", source_items=3) as writer:
        features, values, sse, total = write_images(writer, [0, 1, 2])
        writer.finish_run()
    con = connect(db)
    expected = {
        (i, t, int(features[i, t, j]), float(values[i, t, j]))
        for i in range(3)
        for t in range(TOKENS)
        for j in range(K)
    }
    assert stored_pairs(con) == expected
    assert con.execute("SELECT count(*) FROM activations WHERE value <= 0").fetchall()[0][0] == int((values <= 0).sum())
    errors = con.execute("SELECT image_id, token, sse, total_ss, explained_variance FROM token_errors").fetchall()
    assert len(errors) == 3 * TOKENS
    for image_id, token, s, t, ev in errors:
        assert (s, t) == (float(sse[image_id, token]), float(total[image_id, token]))
        assert ev == pytest.approx(1 - s / t, rel=1e-12)
    codes = image_codes(con, 1)
    assert codes.token.tolist() == list(range(TOKENS))
    assert np.array_equal(codes.features, np.sort(features[1], axis=1))
    order = np.argsort(features[1], axis=1)
    assert np.array_equal(codes.values, np.take_along_axis(values[1], order, axis=1))
    assert sum(len(chunk.image_id) for chunk in iter_token_codes(con, batch_rows=100)) == 3 * TOKENS
    assert image_codes(con, 99).features.shape == (0, K)
    here = "database_name = current_database()"  # not the in-memory annotation tables beside it
    tables = {name for (name,) in con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {here}").fetchall()}
    listed = con.execute(f"SELECT view_name FROM duckdb_views() WHERE NOT internal AND {here}").fetchall()
    views = {name for (name,) in listed}
    assert (tables, views) == (set(TABLES), set(VIEWS))
    types = dict(
        con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'activations'").fetchall()
    )
    assert types == {"image_id": "INTEGER", "token": "INTEGER", "feature": "INTEGER", "value": "FLOAT"}
    con.close()


@pytest.mark.parametrize(("n_features", "image_id"), [(65_536, 2**20 + 5), (2**20, 7), (2**21, 2**30), (16, 3)])
def test_feature_keys_cover_every_width(tmp_path: Path, n_features: int, image_id: int) -> None:
    """The largest feature id and large image ids survive the key encoding for every key width."""
    settings = {**SETTINGS, "n_features": n_features, "k": 4}
    layout = CodeLayout(4, n_features)
    assert layout.key_sql_type == ("UINTEGER" if n_features <= 2**20 else "UBIGINT")
    features = np.array([[[n_features - 1, 0, 1, n_features // 2]]])
    values = np.array([[[1.5, -2.0, 3.25, 0.0]]], np.float32)
    with IndexWriter.open(tmp_path / "w.duckdb", {**settings, "tokens": "cls"}, source="s") as writer:
        one = np.ones((1, 1), np.float32)
        writer.write_batch(records([image_id]), np.array([0]), features, values, one, one)
    con = connect(tmp_path / "w.duckdb")
    assert sorted(con.execute("SELECT feature, value FROM activations").fetchall()) == [
        (0, -2.0),
        (1, 3.25),
        (n_features // 2, 0.0),
        (n_features - 1, 1.5),
    ]
    con.close()


def test_keys_ascend_through_the_table() -> None:
    """Consecutive keys grow (what lets DuckDB store gaps), while features come back unchanged."""
    layout = CodeLayout(4, 65_536)
    features = np.array([[1, 5, 9, 65_535], [0, 2, 3, 4], [7, 8, 100, 200]])
    keys = layout.encode(np.repeat(np.array([10, 11, 12]), 4), features.reshape(-1)).reshape(3, 4)
    assert keys.dtype == np.uint32 and np.all(np.diff(keys.reshape(-1).astype(np.int64)) > 0)
    assert keys.max() < 2**31
    assert np.array_equal(layout.decode(keys), features)


def test_batch_is_atomic_and_duplicates_are_refused(tmp_path: Path) -> None:
    """A batch that repeats a stored image id fails with a DataError and leaves nothing of itself behind."""
    db = tmp_path / "d.duckdb"
    with IndexWriter.open(db, SETTINGS, source="/src") as writer:
        write_images(writer, [0, 1])
        with pytest.raises(DataError, match="Duplicate key"):
            write_images(writer, [2, 1])
        with pytest.raises(ValueError, match="values has shape"):
            writer.write_batch(
                records([5]),
                np.arange(TOKENS),
                *fake_codes([5], TOKENS, 8, 65_536)[:1],
                np.zeros((1, 2, 8), np.float32),
                *fake_codes([5], TOKENS, 8, 65_536)[2:],
            )
        with pytest.raises(ValueError, match=r"features must lie in \[0, 65536\)"):
            bad = fake_codes([6], TOKENS, 8, 65_536)
            writer.write_batch(records([6]), np.arange(TOKENS), bad[0] + 65_536, *bad[1:])
    con = connect(db)
    assert con.execute("SELECT list(image_id ORDER BY image_id) FROM images").fetchall()[0][0] == [0, 1]
    assert con.execute("SELECT count(*) FROM token_codes").fetchall()[0][0] == 2 * TOKENS
    assert con.execute("SELECT count(*), sum(tokens) FROM batch_moments").fetchall()[0] == (1, 2 * TOKENS)
    con.close()


def test_skipped_only_batches(tmp_path: Path) -> None:
    """Skipped items go in with a batch, even one without images, and count as done for the source."""
    db = tmp_path / "s.duckdb"
    with IndexWriter.open(db, SETTINGS, source="/src") as writer:
        empty_pairs, empty_tokens = np.zeros((0, 0, 8), np.int32), np.zeros((0, 0), np.float32)
        for skipped in (SkippedItem("/src/bad.jpg", "corrupt JPEG", 4), SkippedItem("/src/empty.jpg", "empty file", 5)):
            writer.write_batch(
                [], np.zeros(0, np.int16), empty_pairs, empty_pairs.astype(np.float32), empty_tokens, empty_tokens,
                None, [skipped],
            )  # fmt: skip
    with IndexWriter.open(db, SETTINGS, source="/src") as writer:
        assert writer.resumed and writer.done_keys == {"/src/bad.jpg", "/src/empty.jpg"}
    con = connect(db)
    rows = con.execute("SELECT path, reason, source_row, run_id FROM skipped ORDER BY source_row").fetchall()
    assert rows == [("/src/bad.jpg", "corrupt JPEG", 4, 1), ("/src/empty.jpg", "empty file", 5, 1)]
    con.close()


def test_runs_resume_append_and_refuse(tmp_path: Path) -> None:
    """Same source and settings continue a run; another source appends with the next dense ids; other settings fail."""
    db = tmp_path / "r.duckdb"
    with IndexWriter.open(db, SETTINGS, source="/a", source_items=10) as writer:
        assert (writer.run_id, writer.next_image_id, writer.resumed) == (1, 0, False)
        write_images(writer, [0, 1, 2])
    with IndexWriter.open(db, SETTINGS, source="/a", source_items=10) as writer:
        assert (writer.run_id, writer.next_image_id, writer.resumed) == (1, 3, True)
        assert writer.done_keys == {"/src/0.jpg", "/src/1.jpg", "/src/2.jpg"}
        writer.finish_run()
    with IndexWriter.open(db, SETTINGS, source="/b", source_items=5) as writer:
        assert (writer.run_id, writer.next_image_id, writer.resumed) == (2, 3, False)
        assert writer.done_keys == frozenset()
        write_images(writer, [3, 4])
    with IndexWriter.open(db, {**SETTINGS, "precision": "bf16"}, source="/a", source_items=10) as writer:
        assert (writer.run_id, writer.next_image_id) == (3, 5)  # a new run, yet /a's stored items stay done
        assert len(writer.done_keys) == 3
    con = connect(db)
    assert con.execute("SELECT run_id, status, source FROM runs ORDER BY run_id").fetchall() == [
        (1, "done", "/a"),
        (2, "running", "/b"),
        (3, "running", "/a"),
    ]
    run = con.execute("SELECT mean, std, k, duckdb_version, saetui_version FROM runs WHERE run_id = 1").fetchall()[0]
    assert run[:3] == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 8) and run[3] == duckdb.__version__ and run[4]
    con.close()

    other = {**SETTINGS, "layer": 14, "sae_file": "14_resid/100.pt"}
    with pytest.raises(DataError) as refused:
        IndexWriter.open(db, other, source="/c")
    assert refused.value.one_line() == (
        f"{db} was indexed with other settings (run 1): layer 20 in the database vs 14 now; sae_file "
        "20_resid/100.pt in the database vs 14_resid/100.pt now (use another --db, or --overwrite to replace it)"
    )
    with IndexWriter.open(db, other, source="/c", overwrite=True) as writer:
        assert (writer.run_id, writer.next_image_id) == (1, 0)
    con = connect(db)
    assert con.execute("SELECT count(*) FROM images").fetchall()[0][0] == 0
    con.close()


def test_connect_errors(tmp_path: Path) -> None:
    """Missing, foreign and locked databases are one-line errors with the documented classes."""
    with pytest.raises(NotFoundError, match="does not exist"):
        connect(tmp_path / "missing.duckdb")
    foreign = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE images (x INTEGER)")
    con.close()
    with pytest.raises(DataError, match="saetui did not write"):
        IndexWriter.open(foreign, SETTINGS, source="/src")
    text = tmp_path / "text.duckdb"
    text.write_text("not a database " * 100)
    with pytest.raises(DataError, match="is not a DuckDB database"):
        connect(text)
    remove_database(text)
    remove_database(text)  # a missing file is fine
    assert not text.exists()

    db = tmp_path / "locked.duckdb"
    IndexWriter.open(db, SETTINGS, source="/src").close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(DatabaseLockedError) as locked:
            connect(db)
        assert locked.value.one_line() == f"{db} is open in another process (PID {holder.pid}): wait for it or close it"
        with pytest.raises(DatabaseLockedError):
            IndexWriter.open(db, SETTINGS, source="/src")
        with pytest.raises(DatabaseLockedError):
            IndexWriter.open(db, SETTINGS, source="/src", overwrite=True)
        assert db.exists()
    finally:
        holder.communicate("")


def test_writer_checkpoints_after_enough_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once CHECKPOINT_ROWS token rows are committed the writer folds the log into the file itself."""
    monkeypatch.setattr(writer_module, "CHECKPOINT_ROWS", 2 * TOKENS)
    db = tmp_path / "c.duckdb"
    with IndexWriter.open(db, SETTINGS, source="/src") as writer:
        write_images(writer, [0])
        assert wal_path(db).stat().st_size > 0
        write_images(writer, [1])
        assert not wal_path(db).exists() or wal_path(db).stat().st_size == 0


CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_store
test_store.index_fake_source({db!r}, {n_images}, {batch}, {lanes}, {live})
"""


def index_fake_source(db: str, n_images: int, batch: int, lanes: int = 1, live: bool = False) -> None:
    """Index a fake source of n_images items (every 7th one skipped) the way saetui index does, printing progress;
    live: as shards compacted every two, so kills also land in compactions."""
    writer_module.CHECKPOINT_ROWS = 3 * batch * TOKENS  # checkpoints happen mid-run, so kills can land in one
    with IndexWriter.open(
        db, SETTINGS, source="/src", source_items=n_images, lanes=lanes, live=live, fanout=2
    ) as writer:
        pending = [row for row in range(n_images) if f"/src/{row}.jpg" not in writer.done_keys]
        next_id = writer.next_image_id
        for start in range(0, len(pending), batch):
            rows = [row for row in pending[start : start + batch] if row % 7 != 3]
            ids = list(range(next_id, next_id + len(rows)))
            next_id += len(rows)
            skipped = [
                SkippedItem(f"/src/{row}.jpg", "corrupt", row) for row in pending[start : start + batch] if row % 7 == 3
            ]
            codes = fake_codes(ids, TOKENS, 8, 65_536)
            moments = BatchMoments.of(np.full((len(ids) * TOKENS, 8), 0.5)) if ids else None
            writer.write_batch(records(ids, rows), np.arange(TOKENS), *codes, moments, skipped)
            print(f"batch {start // batch}", flush=True)
        writer.finish_run()
    print("done", flush=True)


def check_integrity(db: Path, n_tokens: int = TOKENS) -> int:
    """Assert that only whole images are stored (all tokens, moments for each) and return how many."""
    con = connect(db)
    images, rows, orphans, partial, moment_tokens = con.execute(
        """SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM token_codes),
                  (SELECT count(*) FROM token_codes t ANTI JOIN images i USING (image_id)),
                  (SELECT count(*) FROM (SELECT image_id FROM token_codes GROUP BY 1 HAVING count(*) <> ?)),
                  (SELECT coalesce(sum(tokens), 0) FROM batch_moments)""",
        [n_tokens],
    ).fetchall()[0]
    con.close()
    assert (rows, orphans, partial, moment_tokens) == (images * n_tokens, 0, 0, images * n_tokens)
    return int(images)


@pytest.mark.parametrize(
    ("lanes", "live"), [(1, False), (3, False), (2, True)], ids=["one-lane", "three-lanes", "live-compacting"]
)
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, lanes: int, live: bool) -> None:
    """SIGKILL at random moments of a writing process leaves whole batches only, and resuming each time ends with
    exactly the rows of an uninterrupted one-lane single-file run (commits on several lanes become durable in
    order; live shards compacted under the kills count once)."""
    n_images, batch = 60, 3
    tests = str(Path(__file__).parent)

    def child(db: Path, lanes: int = lanes, live: bool = live) -> subprocess.Popen[str]:
        code = CHILD.format(tests=tests, db=str(db), n_images=n_images, batch=batch, lanes=lanes, live=live)
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    reference = tmp_path / "reference.duckdb"
    assert child(reference, 1, False).communicate(timeout=120)[0].strip().endswith("done")

    db = tmp_path / "killed.duckdb"
    rng = random.Random(1234 + lanes)
    stored = []
    for _ in range(3):
        process = child(db)
        assert process.stdout is not None
        for _ in range(rng.randint(1, 4)):
            if not process.stdout.readline().startswith("batch"):
                break
        time.sleep(rng.uniform(0, 0.03))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        stored.append(check_integrity(db))
    assert stored == sorted(stored) and stored[-1] < n_images - n_images // 7
    assert child(db).communicate(timeout=120)[0].strip().endswith("done")
    assert check_integrity(db) == check_integrity(reference)

    ref, got = connect(reference), connect(db)
    for query in (
        "SELECT * FROM activations ORDER BY ALL",
        "SELECT * FROM token_errors ORDER BY ALL",
        "SELECT * FROM images ORDER BY image_id",
        "SELECT path, reason, source_row, run_id FROM skipped ORDER BY ALL",
        "SELECT run_id, status, source FROM runs",
        "SELECT sum(tokens), sum(sum_sq), list_sum(list(sum_x[1])) FROM batch_moments",
    ):
        assert got.execute(query).fetchall() == ref.execute(query).fetchall(), query
    ref.close()
    got.close()


def test_fixed_size_code_arrays_of_schema_2_still_read(tmp_path: Path) -> None:
    """A schema-2 database stored FLOAT[k] arrays: the reader gives the same arrays as from today's lists."""
    from saetui.store.reader import iter_token_codes
    from saetui.store.schema import create_schema

    layout = CodeLayout(2, 1024)
    con = duckdb.connect(str(tmp_path / "v2.duckdb"))
    create_schema(con, layout)
    con.execute("DROP VIEW activations")
    con.execute("DROP VIEW token_errors")
    con.execute("DROP TABLE token_codes")
    con.execute(
        "CREATE TABLE token_codes (image_id INTEGER, token SMALLINT, feature_keys UINTEGER[2], "
        "feature_values FLOAT[2], sse FLOAT, total_ss FLOAT)"
    )
    keys = layout.encode(np.array([0, 0, 1, 1]), np.array([3, 9, 4, 1000]))
    con.execute(
        "INSERT INTO token_codes VALUES (0, 0, ?, [1.5, 0.5], 1, 2), (0, 1, ?, [2.0, -1.0], 1, 2)",
        [keys[:2].tolist(), keys[2:].tolist()],
    )
    (codes,) = list(iter_token_codes(con))
    assert codes.features.tolist() == [[3, 9], [4, 1000]]
    assert codes.values.tolist() == [[1.5, 0.5], [2.0, -1.0]]
    con.close()


def test_tokens_keep_any_number_of_pairs(tmp_path: Path) -> None:
    """k = 0 (a ReLU SAE): each token stores its own number of pairs; unused slots (-1) are not stored."""
    from harness.handbuilt import settings
    from saetui.store.reader import image_codes
    from saetui.store.writer import ImageRecord, IndexWriter

    features = np.array([[[5, 2, -1, -1], [7, -1, -1, -1], [1, 3, 0, 9]]])
    values = np.where(features >= 0, np.arange(1, 13, dtype=np.float32).reshape(1, 3, 4), 0).astype(np.float32)
    record = ImageRecord(0, "a.jpg", None, 1, 1, "h", None, b"")
    path = tmp_path / "relu.duckdb"
    errors = np.ones((1, 3), np.float32)
    with IndexWriter.open(path, settings(16, 0), source="s", source_items=1) as writer:
        writer.write_batch([record], np.arange(3), features, values, errors, errors, None)
        writer.finish_run()
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT token, feature, value FROM activations ORDER BY token, feature").fetchall()
        assert rows == [(0, 2, 2.0), (0, 5, 1.0), (1, 7, 5.0), (2, 0, 11.0), (2, 1, 9.0), (2, 3, 10.0), (2, 9, 12.0)]
        codes = image_codes(con, 0)
    assert codes.features.shape == (3, 4)  # padded to the longest row, with zeros that are never active
    assert codes.features[1].tolist() == [7, 0, 0, 0] and codes.values[1].tolist() == [5.0, 0, 0, 0]
