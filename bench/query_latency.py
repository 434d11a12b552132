"""Query benchmark: latency of what the browser and the API ask a 100,000-image database, and `saetui stats` time.

The database holds synthetic codes written through saetui's own IndexWriter (bench/synthetic.py: Zipf-like
feature popularity, spatially coherent tokens, 257 tokens x k = 32 of 65,536 features; NOT a real model). It is
built once into bench/out/ and reused. `saetui stats` then runs on it for real (compute_stats), with a random
real-shape CLIP-Scope checkpoint (65,536 x 1,024, seeded) standing in for the SAE so similar directions come from
the cached decoder rows as usual. The logit lens needs the CLIP text tower, which a synthetic database has no
weights for: the bench fills logit_lens with seeded rows of the real shape (10 labels per feature) instead.

Measured through the notebook API (saetui.open: one read-only connection, as the browser keeps), over features
drawn uniformly from the alive ones, after a short warm-up:
- top images of a feature (32, with labels and paths);
- a whole feature page, through the browser's own data layer (saetui.tui.data.BrowseData): stats row, 32 top
  images, label shares, logit lens, 12 coactivating features, 12 similar-direction features (decoder-row cosine
  from the memory-mapped .npy), the activation histogram, the 32 thumbnails and the 32 tiles' patch heatmaps;
- the features list sorted by each column (first 200 rows) and the whole table loaded at once.
Prints p50/p95 in ms, the stats time per 10,000 images and the database size; the headline is the last line.

    .venv/bin/python bench/query_latency.py [--images 100000] [--samples 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import write_synthetic  # noqa: E402

import saetui  # noqa: E402
from saetui.stats import SaeFiles, StatsOptions, compute_stats  # noqa: E402
from saetui.stats.columns import FEATURE_COLUMNS  # noqa: E402
from saetui.store.connection import connect  # noqa: E402
from saetui.tui.data import BrowseData  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
N_FEATURES = 65_536
D_IN = 1024
LENS_TOP = 10
PAGE_IMAGES = 32
PAGE_RELATED = 12


def ensure_database(db: Path, n_images: int) -> None:
    """Build the synthetic database unless a finished one with n_images images is already there."""
    if db.is_file():
        con = connect(db)
        try:
            done = con.execute(
                "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM runs WHERE status = 'done')"
            ).fetchall()[0]
        finally:
            con.close()
        if done == (n_images, 1):
            print(f"reusing {db} ({n_images} images)")
            return
    print(f"building {db}: {n_images} synthetic images through IndexWriter (takes a while) ...")
    seconds = write_synthetic(db, n_images)
    print(f"built in {seconds:.0f} s")


def ensure_checkpoint(path: Path) -> Path:
    """A seeded random checkpoint in the CLIP-Scope .pt layout with the real shapes (written once)."""
    if path.is_file():
        return path
    from collections import OrderedDict

    import torch

    gen = torch.Generator().manual_seed(0)
    state = OrderedDict(
        [
            ("pre_b", torch.randn(D_IN, generator=gen)),
            ("enc", torch.randn(D_IN, N_FEATURES, generator=gen) / D_IN**0.5),
            ("dec", torch.randn(N_FEATURES, D_IN, generator=gen) / D_IN**0.5),
        ]
    )
    tmp = path.with_suffix(".tmp")
    torch.save({"model_state_dict": state, "d_in": D_IN, "n_features": N_FEATURES, "k": 32}, tmp)
    tmp.replace(path)
    return path


def fill_lens(db: Path) -> None:
    """Seeded logit_lens rows of the real shape: LENS_TOP labels per feature from the database's labels."""
    con = connect(db, read_only=False)
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(
            f"""CREATE OR REPLACE TABLE logit_lens AS
            WITH labels AS (SELECT row_number() OVER (ORDER BY label) - 1 AS i, label
                            FROM (SELECT DISTINCT label FROM images WHERE label IS NOT NULL)),
                 n AS (SELECT count(*) AS n FROM labels),
                 grid AS (SELECT f.range::INTEGER AS feature, r.range::SMALLINT AS rank
                          FROM range({N_FEATURES}) f, range(1, {LENS_TOP + 1}) r)
            SELECT g.feature, g.rank, l.label, 0.3 / g.rank AS score, 0.5 / g.rank AS prob
            FROM grid g, n JOIN labels l ON l.i = hash(g.feature * 100 + g.rank) % n.n
            ORDER BY g.feature, g.rank"""
        )
    finally:
        con.close()


def timed(function: Callable[[], object]) -> float:
    """Milliseconds one call takes."""
    start = time.perf_counter()
    function()
    return 1000 * (time.perf_counter() - start)


def percentiles(samples: list[float]) -> str:
    """p50 and p95 of a list of milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.2f} ms  p95 {p95:7.2f} ms"


def p95(samples: list[float]) -> float:
    """The 95th percentile of a list."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def top_ids(db: saetui.Database, feature: int) -> list[int]:
    """The image ids of a feature's page tiles."""
    return db.top_images(feature, PAGE_IMAGES)["image_id"].to_list()


def feature_page(data: BrowseData, feature: int) -> None:
    """Everything the browser's feature page queries: its text, the thumbnails and each tile's patch heatmap."""
    page = data.feature_page(feature, PAGE_IMAGES, PAGE_RELATED)
    ids = [top.image_id for top in page.top_images]
    data.thumbnails(ids)
    data.patch_values_of(ids, feature)


def main(argv: list[str] | None = None) -> None:
    """Build or reuse the database, compute stats if needed, time the queries, print the headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--db", type=Path, help="database (default: bench/out/synth<images/1000>k.duckdb)")
    parser.add_argument("--samples", type=int, default=300, help="features timed per query kind")
    parser.add_argument("--restats", action="store_true", help="recompute the statistics even if present")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    db_path = args.db or OUT / f"synth{args.images // 1000}k.duckdb"
    ensure_database(db_path, args.images)
    checkpoint = ensure_checkpoint(OUT / "random-real-shape-sae.pt")
    cache = OUT / "cache"
    summary = compute_stats(
        db_path,
        StatsOptions(lens=False),
        cache=cache,
        sae_files=SaeFiles(checkpoint, None),
        force=args.restats,
        progress=None,
    )
    if summary.computed:
        fill_lens(db_path)
    data = BrowseData(db_path)
    with saetui.open(db_path) as db:
        seconds = float(db.stats_info()["seconds"])
        alive = db.features(alive_only=True)["feature"].to_list()
        rng = random.Random(args.seed)
        sample = [rng.choice(alive) for _ in range(args.samples)]
        cold_page = timed(lambda: feature_page(data, sample[0]))
        for feature in sample[:10]:
            feature_page(data, feature)
        top = [timed(lambda f=f: db.top_images(f, PAGE_IMAGES)) for f in sample]
        page = [timed(lambda f=f: feature_page(data, f)) for f in sample]
        parts = {
            name: [timed(lambda f=f, c=call: c(f)) for f in sample[:100]]
            for name, call in (
                ("stats row", db.feature),
                ("label shares", db.label_shares),
                ("logit lens", db.lens),
                ("coactivation", lambda f: db.coactivation(f, PAGE_RELATED)),
                ("neighbours", lambda f: db.neighbours(f, PAGE_RELATED)),
                ("histogram", db.histogram),
                (
                    "32 thumbnails",
                    lambda f: data.thumbnails(top_ids(db, f)),
                ),
                (
                    "32 patch heatmaps",
                    lambda f: data.patch_values_of(top_ids(db, f), f),
                ),
            )
        }
        lists = {
            column: [timed(lambda c=column: db.features(order_by=c, descending=True, limit=200)) for _ in range(20)]
            for column in FEATURE_COLUMNS
        }
        whole = [timed(lambda: db.sql("SELECT * FROM features")) for _ in range(10)]
        exact = timed(lambda: db.coactivation(sample[0], PAGE_RELATED, exact=True))
        n_images = db.sql("SELECT count(*) AS n FROM images")["n"][0]
        tokens = db.sql("SELECT count(*) AS n FROM token_errors")["n"][0] / max(n_images, 1)
        derived_rows = db.sql(
            "SELECT sum(estimated_size) AS n FROM duckdb_tables() WHERE table_name IN "
            "('features','feature_images','feature_histograms','coactivations','logit_lens','position_errors',"
            "'image_errors')"
        )["n"][0]
    data.close()
    size = db_path.stat().st_size
    print(f"synthetic codes (not a real model): {n_images} images x {tokens:g} tokens x k=32 (database {db_path})")
    print(f"duckdb {duckdb.__version__}; logit_lens rows synthetic; decoder rows from a random real-shape checkpoint")
    print(f"stats: {seconds:.0f} s = {seconds / (n_images / 10_000):.1f} s per 10,000 images")
    print(
        f"database: {size / 1e9:.2f} GB ({size / n_images / 1000:.1f} KB per image); derived tables hold "
        f"{int(derived_rows):,} rows"
    )
    print(f"first feature page on a fresh connection: {cold_page:.1f} ms")
    print(f"top images ({PAGE_IMAGES}):        {percentiles(top)}")
    print(f"feature page:            {percentiles(page)}")
    for name, samples in parts.items():
        print(f"  {name:<22} {percentiles(samples)}")
    for column, samples in lists.items():
        print(f"features sorted by {column:<18} {percentiles(samples)}")
    print(f"whole features table:    {percentiles(whole)}")
    print(f"exact coactivation (one full scan, for reference): {exact:.0f} ms")
    print(f"headline: top_images_p95_ms {p95(top):.1f} (target 20), feature_page_p95_ms {p95(page):.1f} (target 150)")


if __name__ == "__main__":
    main()
