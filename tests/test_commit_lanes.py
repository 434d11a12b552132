"""Commit lanes (saetui.store.commits): commits packed and inserted on several threads become durable in order,
checkpoints run with no other transaction open, and a failure stops every later commit; then IndexWriter on
several lanes writes exactly the database one lane writes, single-file and live, and a failed commit leaves a
prefix of the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_store import SETTINGS, TOKENS, write_images

from saetui.errors import DataError
from saetui.store import writer as writer_module
from saetui.store.commits import OrderedLanes, Turn
from saetui.store.connection import connect
from saetui.store.shards import published, shard_dir
from saetui.store.writer import IndexWriter

# Every table a run writes, in a fixed order, with exact values (no timestamps).
DUMPS = {
    "images": "SELECT * FROM images ORDER BY image_id",
    "codes": "SELECT image_id, token, feature_keys, feature_values, sse, total_ss FROM token_codes "
    "ORDER BY image_id, token",
    "moments": "SELECT run_id, first_image_id, last_image_id, tokens, sum_sq, sum_x FROM batch_moments ORDER BY ALL",
    "runs": "SELECT run_id, status, source, source_items FROM runs",
    "row order": "SELECT list(image_id) FROM (SELECT image_id FROM token_codes WHERE token = 0)",
}


def test_commits_become_durable_in_order_whatever_order_their_work_ends() -> None:
    """Earlier commits that take longer still become durable first; later ones wait at their durable point."""
    lanes = OrderedLanes(3)
    durable: list[int] = []

    def job(delay: float, number: int):
        def run(turn: Turn) -> None:
            turn.begin()
            time.sleep(delay)  # the earliest commits are the slowest
            turn.durable()
            durable.append(number)

        return run

    for number, delay in enumerate([0.3, 0.2, 0.1, 0.0, 0.05, 0.0]):
        lanes.submit(job(delay, number))
    lanes.drain()
    lanes.close()
    assert durable == [0, 1, 2, 3, 4, 5]


def test_a_checkpoint_runs_alone_between_commits() -> None:
    """No later commit opens its transaction before the checkpoint due after an earlier one has run."""
    lanes = OrderedLanes(3)
    open_transactions = 0
    lock = threading.Lock()
    events: list[str] = []

    def job(number: int):
        def run(turn: Turn) -> None:
            nonlocal open_transactions
            time.sleep(0.02 * (number % 2))  # packing
            turn.begin()
            with lock:
                open_transactions += 1
                events.append(f"begin {number}")
            time.sleep(0.01)
            turn.durable()
            with lock:
                open_transactions -= 1
                events.append(f"commit {number}")

        return run

    def checkpoint() -> None:
        with lock:
            assert open_transactions == 0
            events.append("checkpoint")

    for number in range(7):
        lanes.submit(job(number), checkpoint if number in (2, 4) else None)
    lanes.drain()
    lanes.close()
    for after in (2, 4):
        at = events.index("checkpoint", events.index(f"commit {after}"))
        assert all(events.index(f"begin {later}") > at for later in range(after + 1, 7))
    assert [e for e in events if e.startswith("commit")] == [f"commit {n}" for n in range(7)]


def failing_job(number: int, durable: list[int], fails: int, error: Exception) -> Callable[[Turn], None]:
    """A commit job that records its number once durable, or raises error if it is commit `fails`."""

    def run(turn: Turn) -> None:
        turn.begin()
        if number == fails:
            raise error
        turn.durable()
        durable.append(number)

    return run


def test_a_failed_commit_stops_the_later_ones() -> None:
    """The first real error is raised (not the later commits' Abandoned); no later commit becomes durable."""
    lanes = OrderedLanes(2)
    durable: list[int] = []
    with pytest.raises(RuntimeError, match="disk full"):
        for number in range(8):
            lanes.submit(failing_job(number, durable, 2, RuntimeError("disk full")))
        lanes.drain()
    lanes.close()
    assert durable == [0, 1]


def test_one_lane_raises_at_once_and_goes_on() -> None:
    """On one lane a failed commit raises in the caller and never happened: the next commit takes its turn."""
    lanes = OrderedLanes(1)
    durable: list[int] = []
    lanes.submit(failing_job(0, durable, 1, ValueError("bad batch")))
    with pytest.raises(ValueError, match="bad batch"):
        lanes.submit(failing_job(1, durable, 1, ValueError("bad batch")))
    lanes.submit(failing_job(2, durable, 1, ValueError("bad batch")))
    lanes.drain()
    assert durable == [0, 2]


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every table of DUMPS, as rows."""
    con = connect(db)
    try:
        return {name: con.execute(sql).fetchall() for name, sql in DUMPS.items()}
    finally:
        con.close()


def write_run(db: Path, lanes: int, live: bool, n_batches: int = 12) -> None:
    """A run of n_batches batches of 3 images, 2 batches per commit (live: compacted every 2 shards)."""
    with IndexWriter.open(db, SETTINGS, source="/src", source_items=3 * n_batches, commit_images=6, live=live,
                          lanes=lanes, fanout=2) as writer:  # fmt: skip
        for batch in range(n_batches):
            write_images(writer, [3 * batch, 3 * batch + 1, 3 * batch + 2])
        writer.finish_run()


@pytest.mark.parametrize("live", [False, True], ids=["single-file", "live"])
def test_several_lanes_write_the_one_lane_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live: bool) -> None:
    """Three lanes give the one-lane database row for row, in the same row order, checkpoints mid-run included."""
    monkeypatch.setattr(writer_module, "CHECKPOINT_ROWS", 10 * TOKENS)  # a checkpoint every second commit
    write_run(tmp_path / "one.duckdb", 1, live)
    write_run(tmp_path / "three.duckdb", 3, live)
    assert dump(tmp_path / "three.duckdb") == dump(tmp_path / "one.duckdb")
    assert not shard_dir(tmp_path / "three.duckdb").exists()  # merged: the single file again, no empty folder


@pytest.mark.parametrize("live", [False, True], ids=["single-file", "live"])
def test_a_failed_commit_on_several_lanes_leaves_a_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live: bool
) -> None:
    """A commit that fails while the later ones are in flight: the error comes out of the writer, the database
    keeps exactly the commits before it, and a later run resumes after them."""
    pack = IndexWriter._batch_tables

    def failing(self: IndexWriter, batch):  # the fourth commit (images 9-11) fails while it is packed
        if batch.images[0].image_id == 9:
            time.sleep(0.1)  # later commits are packed and inserted meanwhile
            raise OSError("No space left on device")
        return pack(self, batch)

    monkeypatch.setattr(IndexWriter, "_batch_tables", failing)
    db = tmp_path / "d.duckdb"
    writer = IndexWriter.open(db, SETTINGS, source="/src", commit_images=3, live=live, lanes=3)
    with pytest.raises(OSError, match="No space left"), writer:
        for first in range(0, 21, 3):
            write_images(writer, [first, first + 1, first + 2])
        writer.finish_run()
    con = connect(db)
    try:
        ids = [row[0] for row in con.execute("SELECT image_id FROM images ORDER BY 1").fetchall()]
        status = con.execute("SELECT status FROM runs").fetchall()
    finally:
        con.close()
    assert ids == list(range(9)) and status == [("running",)]
    if live:  # three published shards (merged by the next start), no unpublished one left behind
        assert len(published(db)) == 3 and not list(shard_dir(db).glob("*.tmp*"))
    with IndexWriter.open(db, SETTINGS, source="/src", lanes=3) as writer:
        assert writer.resumed and writer.next_image_id == 9
    assert not published(db)


def test_a_repeated_image_id_on_several_lanes_is_the_one_line_error(tmp_path: Path) -> None:
    """A commit repeating stored ids is refused with the writer's DataError from its lane; nothing of it stays."""
    db = tmp_path / "dup.duckdb"
    writer = IndexWriter.open(db, SETTINGS, source="/src", commit_images=3, lanes=2)
    with pytest.raises(DataError, match="Duplicate key"), writer:
        for first in (0, 3, 0, 6):
            write_images(writer, [first, first + 1, first + 2])
    con = connect(db)
    try:
        assert con.execute("SELECT list(image_id ORDER BY 1) FROM images").fetchall()[0][0] == list(range(6))
    finally:
        con.close()
