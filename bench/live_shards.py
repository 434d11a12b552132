"""A live run's shards: what a reader pays per shard, what compaction saves it, and what compaction costs.

`saetui index --live` publishes one shard per commit; ImageNet-1k at the default 256 images per commit makes
5,000. Part 1 writes `--commits` small commits (2 synthetic CLIP-Scope images each, 257 tokens x 32 pairs) with
compaction off and on (saetui.store.compaction, fanout 16, two levels), lets the compactor settle, and times what
a reader does while the run goes on: open the database (attach it and every shard), count the images, rank one
feature's images over `activations`; then the final merge. Part 2 times one level of compaction at real size:
16 commits of 256 synthetic images rewritten into one shard, in images/s and core-ms per image (each image is
rewritten at most twice before the final merge).

    python bench/live_shards.py [--commits 1000]

Prints the headline last: `reader_open_ms_compacted: X`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_throughput import synthetic_batches  # noqa: E402
from synthetic import SETTINGS  # noqa: E402

from saetui.store import shards  # noqa: E402
from saetui.store.compaction import FANOUT, Compactor  # noqa: E402
from saetui.store.connection import connect  # noqa: E402
from saetui.store.writer import IndexWriter, PendingBatch  # noqa: E402

NEVER = 10**9  # a fanout no run reaches: compaction off
RANK = "SELECT image_id, max(value) AS v FROM activations WHERE feature = 7 GROUP BY 1 ORDER BY v DESC LIMIT 32"


def live_writer(db: Path, n_images: int, commit_images: int, fanout: int) -> IndexWriter:
    """A live writer of synthetic CLIP-Scope codes."""
    return IndexWriter.open(
        db, {**SETTINGS, "batch_size": 32}, source="synthetic", source_items=n_images, commit_images=commit_images,
        live=True, fanout=fanout,
    )  # fmt: skip


def write(writer: IndexWriter, batches: list[PendingBatch]) -> None:
    """Hand every batch to the writer and wait until all are published."""
    for batch in batches:
        writer.write_batch(
            batch.images, batch.tokens, batch.features, batch.values, batch.sse, batch.total_ss, batch.moments
        )
    writer.drain()


def settle(db: Path, seconds: float = 2.0) -> None:
    """Wait until the shard folder has held still for a while (the compactor has nothing left to do)."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < seconds:
        now = sorted(path.name for path in shards.shard_dir(db).iterdir())
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.1)


def reader_costs(db: Path, rounds: int = 5) -> dict[str, float]:
    """Median milliseconds of a reader's open, image count and one feature's ranking."""
    times: dict[str, list[float]] = {"open": [], "count": [], "rank": []}
    for _ in range(rounds):
        started = time.perf_counter()
        con = connect(db)
        times["open"].append(time.perf_counter() - started)
        for name, sql in (("count", "SELECT count(*) FROM images"), ("rank", RANK)):
            started = time.perf_counter()
            con.execute(sql).fetchall()
            times[name].append(time.perf_counter() - started)
        con.close()
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def part_one(commits: int, tmp: Path) -> float:
    """Reader costs with compaction off and on; returns the compacted open time in ms."""
    batches = synthetic_batches(2 * commits, batch_size=2)
    opened = 0.0
    for label, fanout in (("off", NEVER), (f"on (fanout {FANOUT})", FANOUT)):
        db = tmp / f"part1-{fanout}.duckdb"
        with live_writer(db, 2 * commits, 2, fanout) as writer:
            started = time.perf_counter()
            write(writer, batches)
            written = time.perf_counter() - started
            settle(db)
            costs = reader_costs(db)
            n_shards = len(shards.published(db))
            started = time.perf_counter()
            writer.finish_run()
            merged = time.perf_counter() - started
        print(
            f"compaction {label}: {commits} commits -> {n_shards} shards; written in {written:.1f} s; reader "
            f"open {costs['open']:.0f} ms, count {costs['count']:.0f} ms, rank one feature {costs['rank']:.0f} ms; "
            f"final merge {merged:.1f} s"
        )
        opened = costs["open"]
    return opened


def part_two(tmp: Path, commit_images: int = 256) -> None:
    """Time one compaction of FANOUT real-size commits into one shard."""
    n_images = FANOUT * commit_images
    db = tmp / "part2.duckdb"
    with live_writer(db, n_images, commit_images, NEVER) as writer:
        write(writer, synthetic_batches(n_images))
        session = shards.listing(db)[0][0].session
        wall, cpu = time.perf_counter(), time.process_time()
        compactor = Compactor(db, writer.layout, session, levels=1)
        compactor.published()
        while len(shards.published(db)) != 1:
            time.sleep(0.005)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        compactor.close()
        writer.finish_run()
    print(
        f"one compaction level, {FANOUT} commits of {commit_images} images: {n_images / wall:.0f} images/s, "
        f"{1000 * cpu / n_images:.2f} core-ms per image"
    )


def main() -> None:
    """Run both parts; print the compacted reader's open time last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1000, help="commits of 2 images in part 1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        part_two(Path(tmp))
        opened = part_one(args.commits, Path(tmp))
    print(f"reader_open_ms_compacted: {opened:.0f}")


if __name__ == "__main__":
    main()
