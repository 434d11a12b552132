"""Stats at scale: `saetui stats` on >= 1M synthetic images, with 1 and with N scan threads, and what that implies.

The database is saetui's schema 3, started by its own IndexWriter (one image) and then filled by DuckDB SQL:
--images images (default 1,000,000) of --tokens stored tokens each (default 4: a CLS-plus-few-patches stand-in, so
a million images fit this machine's disk) with k = 32 distinct features of 65,536 (popularity skewed as
floor(65,536 u^3), u uniform), positive random values and token errors. Nothing comes from a real model.

`compute_stats` then runs for real (lens off: there is no model; no similar directions: no checkpoint) once per
thread count; the scans over the codes (pass 1: totals, top images, histograms; pass 2: coactivation samples)
are timed from the progress callback, the rest (token errors, position/image errors, the table swap) is DuckDB's
own parallel SQL. Identical tables at every thread count are checked. The extrapolation to ImageNet-1k at real
shape (1.28M images x 257 tokens x 32 pairs = 10.5e9 pairs) assumes the time is linear in pairs, which the scan
is (each pass streams every pair once), and states the thread count it scales from. Headline printed last.

    .venv/bin/python bench/stats_scale.py [--images 1000000] [--tokens 4] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from saetui.stats import StatsOptions, compute_stats
from saetui.store.writer import ImageRecord, IndexWriter

N_FEATURES = 65_536
K = 32
IMAGENET_PAIRS = 1_281_167 * 257 * K


def build(path: Path, n_images: int, tokens: int) -> None:
    """A schema-3 database of n_images x tokens x K pairs: the run through IndexWriter, the codes through SQL."""
    settings = {
        "model_id": "synthetic", "pretrained": "synthetic", "layer": 20, "sae_name": "synthetic",
        "sae_repo": "synthetic/none", "sae_file": "none.pt", "d_in": 1024, "n_features": N_FEATURES, "k": K,
        "tokens": "all", "precision": "fp32",
    }  # fmt: skip
    with IndexWriter.open(path, settings, source="synthetic", source_items=n_images) as writer:
        features = np.tile(np.arange(K, dtype=np.int32), (1, tokens, 1))
        values = np.ones((1, tokens, K), dtype=np.float32)
        errors = np.ones((1, tokens), dtype=np.float32)
        writer.write_batch(
            [ImageRecord(0, "synthetic/0.jpg", "class0", 224, 224, "h0", 0, None)],
            np.arange(tokens), features, values, errors, errors * 4, None,
        )  # fmt: skip
        writer.finish_run()
    con = duckdb.connect(str(path))
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            """INSERT INTO images (image_id, path, label, width, height, content_hash, source, source_row, item_key,
                                   run_id)
               SELECT i, 'synthetic/' || i || '.jpg', 'class' || (hash(i) % 1000), 224, 224, 'h' || i,
                      'synthetic', i, 'synthetic:' || i, 1
               FROM range(1, ?) t(i)""",
            [n_images],
        )
        con.execute(
            f"""INSERT INTO token_codes
                SELECT i, t, list_sort(list_distinct(
                           [CAST(floor({N_FEATURES} * pow(random(), 3)) AS UINTEGER) FOR _x IN range({K})])),
                       [CAST(0.1 + 10 * random() AS FLOAT) FOR _x IN range({K})], 100 * random(), 400
                FROM range(1, ?) a(i), range(?) b(t) ORDER BY i, t""",
            [n_images, tokens],
        )
        # list_distinct may leave fewer features than values: trim the values to the features' length
        con.execute(
            "UPDATE token_codes SET feature_values = feature_values[1:len(feature_keys)] "
            "WHERE len(feature_values) > len(feature_keys)"
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()


def signature(path: Path) -> str:
    """A hash of every derived table the scans fill, to check that thread counts agree."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        digest = hashlib.sha256()
        for name in ("features", "feature_images", "feature_histograms", "coactivations"):
            row = con.execute(f"SELECT md5(string_agg(t::VARCHAR, ',' ORDER BY t)) FROM {name} t").fetchone()
            digest.update(str(row).encode())
        return digest.hexdigest()[:16]
    finally:
        con.close()


def main() -> None:
    """Build once, run stats per thread count, print times, the speed-up and the ImageNet extrapolation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--threads", default=f"1,{min(8, os.cpu_count() or 1)}")
    parser.add_argument("--keep", type=Path, default=None, help="build the database here and keep it")
    args = parser.parse_args()
    counts = sorted({int(t) for t in args.threads.split(",")})
    with tempfile.TemporaryDirectory(prefix="saetui-stats-scale-") as tmp:
        path = args.keep or Path(tmp) / "scale.duckdb"
        if not path.exists():
            started = time.perf_counter()
            build(path, args.images, args.tokens)
            print(f"built {args.images:,} images x {args.tokens} tokens x <= {K} pairs in "
                  f"{time.perf_counter() - started:.0f} s ({path.stat().st_size / 1e9:.2f} GB)")  # fmt: skip
        con = duckdb.connect(str(path), read_only=True)
        pairs = con.execute("SELECT sum(len(feature_keys)) FROM token_codes").fetchone()[0]
        con.close()
        print(f"{pairs:,} stored pairs; {os.cpu_count()} CPU cores")
        results: dict[int, tuple[float, float]] = {}
        signatures = set()
        for threads in counts:
            marks: dict[str, list[float]] = {}

            def progress(stage: str, done: int, total: int, marks: dict[str, list[float]] = marks) -> None:
                """Record when each scan stage starts and ends."""
                marks.setdefault(stage, [time.perf_counter(), 0.0])[1] = time.perf_counter()

            options = StatsOptions(lens=False, neighbours=0)
            started = time.perf_counter()
            compute_stats(path, options, force=True, progress=progress, threads=threads)
            total = time.perf_counter() - started
            scan = sum(end - start for start, end in marks.values())
            results[threads] = (total, scan)
            signatures.add(signature(path))
            print(f"threads {threads}: stats {total:.1f} s, of which the two scans {scan:.1f} s "
                  f"({pairs / scan / 1e6:.1f} M pairs/s)")  # fmt: skip
        assert len(signatures) == 1, "thread counts disagree"
        print("every thread count gave identical tables")
    low, high = counts[0], counts[-1]
    speedup = results[low][0] / results[high][0]
    per_pair = results[high][0] / pairs
    print(f"ImageNet-1k at real shape ({IMAGENET_PAIRS / 1e9:.1f}e9 pairs) at the {high}-thread rate: "
          f"{IMAGENET_PAIRS * per_pair / 60:.0f} min on this machine; scaling x{speedup:.2f} from {low} to {high} "
          "threads measured, more cores extrapolated linearly")  # fmt: skip
    print(f"stats_speedup_{high}_vs_{low}: {speedup:.2f} ({results[high][0]:.1f} s for {args.images:,} images)")


if __name__ == "__main__":
    main()
