"""Index throughput on the CPU side: core-milliseconds per image of each non-model stage, and the writer's ceiling.

What a GPU box needs in cores: each stage `saetui index` runs per image outside the model (read the file, sha256,
decode to RGB, resize + centre crop, normalise to float32, thumbnail JPEG) is timed with the process CPU clock on
the real sample images (tests/data/imagenet-sample, ImageNet photos, short side 230 px; full-size ImageNet photos
cost more to decode and resize), then the store's ceiling: synthetic CLIP-Scope codes (bench/synthetic.py, 257
tokens x k = 32) written through IndexWriter at the engine's defaults. With C cores for decoding, the CPU side
feeds about C * 1000 / (sum of the stages in core-ms) images/s if the decode threads scale, which the pool
measurement checks: the engine's own `prepare` on 1 to (cores) threads; the writer is one thread.

    python bench/index_throughput.py [--images 2000]

Prints the headline last: `cpu_core_ms_per_image: X` (and the writer ceiling just before).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SETTINGS, SyntheticCodes, engine_thumbnail, records, sample_images  # noqa: E402

from saetui.defaults import COMMIT_IMAGES  # noqa: E402
from saetui.ingest.decoding import content_hash, decode_rgb, read_bytes  # noqa: E402
from saetui.ingest.pipeline import prepare, thumbnail_jpeg  # noqa: E402
from saetui.ingest.sources import ImageItem  # noqa: E402
from saetui.models.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocessing, input_crop, to_pixels  # noqa: E402
from saetui.store.writer import IndexWriter, PendingBatch  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "imagenet-sample"


def stage_costs(paths: list[Path], prep: Preprocessing) -> dict[str, float]:
    """CPU milliseconds per image of each stage, over all paths (one thread, the process clock)."""
    totals = dict.fromkeys(("read", "sha256", "decode", "resize+crop", "normalise", "thumbnail"), 0.0)
    for path in paths:
        clock = time.process_time()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.process_time()
            totals[name] += now - clock
            clock = now

        data = read_bytes(path)
        lap("read")
        content_hash(data)
        lap("sha256")
        image = decode_rgb(data)
        lap("decode")
        crop = input_crop(image, prep)
        lap("resize+crop")
        to_pixels(crop, prep)
        lap("normalise")
        thumbnail_jpeg(crop)
        lap("thumbnail")
    return {name: 1000 * seconds / len(paths) for name, seconds in totals.items()}


def pool_rate(paths: list[Path], prep: Preprocessing, threads: int, rounds: int = 3) -> float:
    """Images/s of the engine's own `prepare` (every stage above) on a pool of `threads` decode threads."""
    items = [ImageItem(str(path), str(path), None, row) for row, path in enumerate(paths)]
    best = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(rounds):
            started = time.perf_counter()
            done = sum(1 for _ in pool.map(lambda item: prepare(item, prep), items))
            best = max(best, done / (time.perf_counter() - started))
    return best


def synthetic_batches(n_images: int, batch_size: int = 32) -> list[PendingBatch]:
    """n_images of synthetic CLIP-Scope codes (257 tokens x k = 32) in forward batches, made before any timing."""
    samples = sample_images(SAMPLE, engine_thumbnail)
    codes = SyntheticCodes(seed=0)
    tokens = np.arange(codes.n_tokens)
    batches = []
    for first in range(0, n_images, batch_size):
        count = min(batch_size, n_images - first)
        sse, total_ss = codes.errors(count)
        batches.append(
            PendingBatch(
                records(samples, first, count), tokens, codes.features(count), codes.values(count), sse, total_ss,
                (), None, codes.moments(count),
            )
        )  # fmt: skip
    return batches


def writer_rate(batches: list[PendingBatch], lanes: int, live: bool) -> tuple[float, float]:
    """(images/s, core-ms per image) of IndexWriter storing the batches on `lanes` commit lanes, to a finished
    database (a live run's shards merged)."""
    n_images = sum(len(batch.images) for batch in batches)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        with IndexWriter.open(
            Path(tmp) / "w.duckdb", {**SETTINGS, "batch_size": 32}, source="synthetic", source_items=n_images,
            commit_images=COMMIT_IMAGES, live=live, lanes=lanes,
        ) as writer:  # fmt: skip
            for batch in batches:
                writer.write_batch(
                    batch.images, batch.tokens, batch.features, batch.values, batch.sse, batch.total_ss,
                    batch.moments,
                )  # fmt: skip
            writer.finish_run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n_images / wall, 1000 * cpu / n_images


def main() -> None:
    """Time the stages and the writer; print the core-ms per image last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="synthetic images for the writer ceiling")
    args = parser.parse_args()
    prep = Preprocessing(224, 224, OPENAI_MEAN, OPENAI_STD, "bench")
    paths = sorted(SAMPLE.glob("*/*"))
    stage_costs(paths[:20], prep)  # warm the file cache and the libraries
    costs = stage_costs(paths, prep)
    for name, ms in costs.items():
        print(f"  {name:<12} {ms:6.2f} core-ms per image")
    total = sum(costs.values())
    cores = os.cpu_count() or 1
    rates = {threads: pool_rate(paths, prep, threads) for threads in range(1, cores + 1)}
    for threads, rate in rates.items():
        print(f"decode pool, {threads} thread(s): {rate:.0f} images/s (x{rate / rates[1]:.2f})")
    batches = synthetic_batches(args.images)
    writer_rate(batches[:16], 1, False)  # warm DuckDB and the allocator
    best = 0.0
    for live in (False, True):
        for lanes in sorted({1, 2, cores}):
            rate, core_ms = writer_rate(batches, lanes, live)
            best = max(best, rate) if not live else best
            layout = "live shards" if live else "single file"
            print(f"writer, {layout}, {lanes} lane(s): {rate:.0f} images/s, {core_ms:.2f} core-ms per image")
    print(f"{len(paths)} real sample images; writer: {args.images} synthetic images (257 tokens x 32 pairs)")
    print(f"writer_ceiling_images_per_s: {best:.0f}")
    print(f"cpu_core_ms_per_image: {total:.2f}")


if __name__ == "__main__":
    main()
