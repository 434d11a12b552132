"""Shard compaction (saetui.store.compaction) and the shard names behind it: a live run's readers attach a bounded
number of shards and see every committed image exactly once while shards are rewritten under them, and a kill
after a compaction published its shard, or after the final merge committed, leaves nothing counted twice."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from test_commit_lanes import dump
from test_store import SETTINGS, write_images

from harness.tables import saetui_rows
from saetui.errors import DatabaseLockedError
from saetui.store import shards
from saetui.store.compaction import Compactor
from saetui.store.writer import IndexWriter

TOKENS = 4  # tokens per fake image: compaction is about files, not sizes
COUNTS = "SELECT count(*), count(DISTINCT image_id) FROM images"


def live_writer(db: Path, fanout: int, lanes: int = 1) -> IndexWriter:
    """A live writer committing every batch (one shard per commit) and compacting every `fanout` shards."""
    return IndexWriter.open(db, SETTINGS, source="/src", commit_images=1, live=True, lanes=lanes, fanout=fanout)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll condition until it holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_names_say_which_commits_a_shard_holds(tmp_path: Path) -> None:
    """Shards sort in commit order; one whose commits a larger shard of its session holds is a covered leftover;
    an older saetui's shard names still count as one commit each, never covered (their image ids may repeat);
    temporary and foreign files are no shards."""
    db = tmp_path / "n.duckdb"
    shards.shard_dir(db).mkdir()
    names = [shards.shard_path(db, 5, first, last) for first, last in ((0, 0), (1, 1), (0, 1), (2, 2))]
    other_session = shards.shard_path(db, 6, 0, 0)
    old, old_too = (shards.shard_dir(db) / f"{7:012d}-{time:020d}.duckdb" for time in (123, 124))
    for path in [*names, other_session, old, old_too]:
        path.touch()
    (shards.shard_dir(db) / "x.duckdb.tmp").touch()
    (shards.shard_dir(db) / "notes.txt").touch()
    whole, covered = shards.listing(db)
    assert [shard.path for shard in whole] == [old, old_too, names[2], names[3], other_session]
    assert [shard.path for shard in covered] == [names[0], names[1]]
    assert shards.published(db) == [old, old_too, names[2], names[3], other_session]


def test_compaction_bounds_the_shards_and_keeps_every_row_in_order(tmp_path: Path) -> None:
    """Twenty commits at fanout 2 (two levels) settle into five shards of four commits; readers see the twenty
    images once each, and the finished database equals a single-file run row for row, in the same row order."""
    reference = tmp_path / "reference.duckdb"
    with IndexWriter.open(reference, SETTINGS, source="/src", commit_images=1) as writer:
        for image in range(20):
            write_images(writer, [image], TOKENS)
        writer.finish_run()

    db = tmp_path / "live.duckdb"
    with live_writer(db, fanout=2) as writer:
        for image in range(20):
            write_images(writer, [image], TOKENS)
        writer.drain()
        wait_for(lambda: len(shards.published(db)) == 5, "the compactions")
        assert all(shard.commits == 4 for shard in shards.listing(db)[0])
        assert saetui_rows(db, COUNTS) == [(20, 20)]
        assert saetui_rows(db, "SELECT count(*) FROM token_codes") == [(20 * TOKENS,)]
        writer.finish_run()
    assert not shards.shard_dir(db).exists()
    assert dump(db) == dump(reference)


def test_readers_see_each_commit_once_while_shards_are_rewritten(tmp_path: Path) -> None:
    """A reader opening the database again and again during a live run on two lanes with constant compaction
    (fanout 2) always succeeds, never sees an image twice, and sees a count that only grows."""
    db = tmp_path / "live.duckdb"
    writer = live_writer(db, fanout=2, lanes=2)
    written = threading.Event()  # the merge that follows takes the file back: readers wait for the end then
    failure: list[BaseException] = []

    def index() -> None:
        try:
            for image in range(40):
                write_images(writer, [image], TOKENS)
                time.sleep(0.02)
            writer.drain()
            written.set()
            writer.finish_run()
        except BaseException as error:  # handed to the test thread
            failure.append(error)
        finally:
            written.set()
            writer.close()

    thread = threading.Thread(target=index)
    thread.start()
    seen: list[int] = []
    while not written.is_set():
        if not shards.published(db):
            continue  # the first commit is not published yet
        try:
            ((total, distinct),) = saetui_rows(db, COUNTS)
        except DatabaseLockedError:  # only once the writer takes the file back to merge
            assert written.is_set()
            continue
        assert total == distinct
        seen.append(total)
    thread.join()
    assert not failure, failure
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen
    assert saetui_rows(db, COUNTS) == [(40, 40)]


def test_a_kill_between_a_compaction_and_the_deletion_of_its_inputs_counts_nothing_twice(tmp_path: Path) -> None:
    """Compacted shards published with their inputs still there (a kill between the two): readers and the merge
    take the compacted shards only, and the leftovers are deleted."""
    db = tmp_path / "d.duckdb"
    writer = live_writer(db, fanout=100)  # no compaction of its own
    for image in range(4):
        write_images(writer, [image], TOKENS)
    writer.drain()
    inputs = shards.published(db)
    backup = tmp_path / "backup"
    backup.mkdir()
    for path in inputs:
        shutil.copy2(path, backup / path.name)
    compactor = Compactor(db, writer.layout, shards.listing(db)[0][0].session, fanout=2, levels=1)
    compactor.published()
    wait_for(lambda: len(shards.published(db)) == 2, "the compaction")
    compactor.close()
    for path in inputs:
        shutil.copy2(backup / path.name, path)

    whole, covered = shards.listing(db)
    assert [shard.commits for shard in whole] == [2, 2] and [shard.path for shard in covered] == inputs
    assert saetui_rows(db, COUNTS) == [(4, 4)]
    writer.finish_run()
    writer.close()
    assert not shards.shard_dir(db).exists()
    assert saetui_rows(db, COUNTS) == [(4, 4)] and saetui_rows(db, "SELECT count(*) FROM batch_moments") == [(4,)]


def test_a_kill_after_the_merge_committed_merges_nothing_twice(tmp_path: Path) -> None:
    """Shards still there after their merge committed (a kill before their deletion): the database records them
    as merged, so readers leave them out and the next start deletes them instead of inserting them again."""
    db = tmp_path / "m.duckdb"
    with live_writer(db, fanout=100) as writer:
        for image in range(3):
            write_images(writer, [image], TOKENS)
        writer.drain()
        backup = tmp_path / "backup"
        shutil.copytree(shards.shard_dir(db), backup)
        writer.finish_run()
    shutil.copytree(backup, shards.shard_dir(db))
    assert len(shards.published(db)) == 3

    assert saetui_rows(db, COUNTS) == [(3, 3)]
    with IndexWriter.open(db, SETTINGS, source="/src") as writer:
        assert writer.resumed and writer.next_image_id == 3
    assert not shards.shard_dir(db).exists()
    assert saetui_rows(db, COUNTS) == [(3, 3)] and saetui_rows(db, "SELECT count(*) FROM batch_moments") == [(3,)]


def test_finishing_interrupts_a_compaction_under_way(tmp_path: Path, monkeypatch) -> None:
    """The run's end does not wait for a long compaction: it is interrupted, its partial shard and log deleted, and
    the merge takes its inputs."""
    started = threading.Event()
    copy = shards.copy_rows

    def endless_copy(con, sources, before_commit=lambda: None) -> None:  # a compaction only ends interrupted
        if not threading.current_thread().name.startswith("saetui-compact"):
            return copy(con, sources, before_commit)  # the final merge
        started.set()
        con.execute("SELECT sum(range) FROM range(10_000_000_000_000)").fetchall()

    monkeypatch.setattr(shards, "copy_rows", endless_copy)
    db = tmp_path / "i.duckdb"
    with live_writer(db, fanout=2) as writer:
        for image in range(2):
            write_images(writer, [image], TOKENS)
        writer.drain()
        assert started.wait(30)
        began = time.monotonic()
        writer.finish_run()
        assert time.monotonic() - began < 30
    assert not shards.shard_dir(db).exists()
    assert saetui_rows(db, COUNTS) == [(2, 2)]
