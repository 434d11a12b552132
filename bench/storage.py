"""Storage benchmark: bytes per indexed image (257 tokens x k = 32, thumbnail included) in a saetui database.

Writes N synthetic images (bench/synthetic.py: realistic statistics, NOT a real model) through IndexWriter into a
fresh database, finishes the run (checkpoint), closes it and divides the file size by N. Also prints where the bytes
go (per column, from DuckDB's segment layout), the write rate, and how long one image's activations take to read.
The headline is the last line: `bytes_per_image: N`.

    .venv/bin/python bench/storage.py [--images 2000] [--batch-size 32] [--commit-every 256] [--thumbnail-px PX]

The defaults are `saetui index`'s own: forward batches of 32 images, committed 256 images at a time.

Thumbnails are the index engine's own (saetui.ingest.pipeline.thumbnail_jpeg of the input crop) unless
--thumbnail-px asks for a what-if size (optimised JPEG, quality 75).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SAMPLE_DIR, write_synthetic  # noqa: E402

from saetui.defaults import BATCH_SIZE, COMMIT_IMAGES  # noqa: E402
from saetui.store.connection import connect, wal_path  # noqa: E402


def column_bytes(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """Approximate bytes per column of a table: each segment spans from its offset to the next one in its block."""
    rows = con.execute(
        "SELECT column_name, block_id, block_offset, additional_block_ids FROM pragma_storage_info(?) "
        "WHERE persistent AND block_id >= 0",
        [table],
    ).fetchall()
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
    by_block: dict[int, list[tuple[int, str, int]]] = collections.defaultdict(list)
    for column, block, offset, extra in rows:
        by_block[block].append((offset, column, len(extra or [])))
    sizes: collections.Counter[str] = collections.Counter()
    for segments in by_block.values():
        segments.sort()
        for i, (offset, column, extra_blocks) in enumerate(segments):
            end = segments[i + 1][0] if i + 1 < len(segments) else block_size
            sizes[column] += end - offset + extra_blocks * block_size
    return dict(sizes)


def read_latency_ms(db: Path, n_images: int) -> float:
    """Median time to fetch every (token, feature, value) of one image through the activations view."""
    con = connect(db)
    times = []
    for image_id in range(0, n_images, max(1, n_images // 50)):
        start = time.perf_counter()
        con.execute("SELECT token, feature, value FROM activations WHERE image_id = ?", [image_id]).fetchall()
        times.append(time.perf_counter() - start)
    con.close()
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--commit-every", type=int, default=COMMIT_IMAGES)
    parser.add_argument("--thumbnail-px", type=int, help="what-if thumbnail size (default: the engine's own)")
    parser.add_argument("--sample-dir", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--db", type=Path, help="keep the database here instead of a temporary folder")
    parser.add_argument(
        "--family", choices=("topk", "relu"), default="topk", help="topk: CLIP-Scope k=32; relu: Prisma, ~1,405 pairs"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "storage.duckdb"
        seconds = write_synthetic(
            db,
            args.images,
            batch_size=args.batch_size,
            commit_images=args.commit_every,
            thumbnail_px=args.thumbnail_px,
            sample_dir=args.sample_dir,
            family=args.family,
        )
        file_bytes = db.stat().st_size + (wal_path(db).stat().st_size if wal_path(db).exists() else 0)
        con = connect(db)
        shape = "257 tokens x k=32" if args.family == "topk" else "50 tokens x ~1,405 active of 49,152 (ReLU)"
        print(f"synthetic codes (bench/synthetic.py, not a real model): {args.images} images x {shape}")
        thumbnails = "the index engine's" if args.thumbnail_px is None else f"{args.thumbnail_px} px JPEG q75"
        print(
            f"duckdb {duckdb.__version__}, batch size {args.batch_size}, committed every {args.commit_every} images, "
            f"thumbnails: {thumbnails}"
        )
        print(f"write: {seconds:.1f} s ({args.images / seconds:.0f} images/s including checkpoints)")
        print("bytes per image by column (approximate):")
        for table in ("token_codes", "images", "batch_moments", "runs"):
            for column, size in sorted(column_bytes(con, table).items(), key=lambda item: -item[1]):
                if size / args.images >= 1:
                    print(f"  {table}.{column:<16} {size / args.images:10.0f}")
        free, total = con.execute("SELECT free_blocks, total_blocks FROM pragma_database_size()").fetchall()[0]
        print(f"free blocks: {free} of {total}")
        con.close()
        print(f"one image's activations through the view: {read_latency_ms(db, args.images):.1f} ms")
        print(f"file: {file_bytes} bytes")
        print(f"bytes_per_image: {file_bytes / args.images:.0f}")


if __name__ == "__main__":
    main()
