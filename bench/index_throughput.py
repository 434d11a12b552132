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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import write_synthetic  # noqa: E402

from saetui.ingest.decoding import content_hash, decode_rgb, read_bytes  # noqa: E402
from saetui.ingest.pipeline import prepare, thumbnail_jpeg  # noqa: E402
from saetui.ingest.sources import ImageItem  # noqa: E402
from saetui.models.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocessing, input_crop, to_pixels  # noqa: E402

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


def main() -> None:
    """Time the stages and the writer; print the core-ms per image last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic images for the writer ceiling")
    args = parser.parse_args()
    prep = Preprocessing(224, 224, OPENAI_MEAN, OPENAI_STD, "bench")
    paths = sorted(SAMPLE.glob("*/*"))
    stage_costs(paths[:20], prep)  # warm the file cache and the libraries
    costs = stage_costs(paths, prep)
    for name, ms in costs.items():
        print(f"  {name:<12} {ms:6.2f} core-ms per image")
    total = sum(costs.values())
    rates = {threads: pool_rate(paths, prep, threads) for threads in range(1, (os.cpu_count() or 1) + 1)}
    for threads, rate in rates.items():
        print(f"decode pool, {threads} thread(s): {rate:.0f} images/s (x{rate / rates[1]:.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        seconds = write_synthetic(Path(tmp) / "w.duckdb", args.images, progress=False)
    print(f"{len(paths)} real sample images; writer: {args.images} synthetic images in {seconds:.1f} s")
    print(f"writer_ceiling_images_per_s: {args.images / seconds:.0f}")
    print(f"cpu_core_ms_per_image: {total:.2f}")


if __name__ == "__main__":
    main()
