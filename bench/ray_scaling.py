"""Ray engine scaling: images/s of `saetui index --engine ray` with 1 and 2 model actors, and the local engine.

Uses the offline demo's tiny random-weight CLIP + SAE (saetui.demo, published into a temporary cache) on the 300
real sample images (tests/data/imagenet-sample), on a local Ray instance started by the engine. Ray's start-up is
timed apart from indexing. Prints the headline last: `ray_speedup_2_vs_1: X`.

    python bench/ray_scaling.py
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path

from saetui.demo import build_demo
from saetui.ingest.indexer import IndexOptions, index_images
from saetui.ingest.sources import FolderSource

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "imagenet-sample"


def main() -> None:
    """Index the sample with each engine setting and print images/s, the speed-up last."""
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo = build_demo(cache=root / "cache", log=io.StringIO())
        images = root / "images"
        shutil.copytree(SAMPLE, images)
        started = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        print(f"ray {ray.__version__} local instance started in {time.perf_counter() - started:.1f} s, "
              f"{int(ray.cluster_resources().get('CPU', 0))} CPUs")  # fmt: skip
        rates = {}
        for name, options in (
            ("local", IndexOptions(batch_size=16, device="cpu")),
            ("ray x1", IndexOptions(batch_size=16, device="cpu", engine="ray", ray_workers=1)),
            ("ray x2", IndexOptions(batch_size=16, device="cpu", engine="ray", ray_workers=2)),
        ):
            db = root / f"{name.replace(' ', '')}.duckdb"
            summary = index_images(FolderSource(str(images)), demo.fetched, db, options, log=io.StringIO())
            rates[name] = summary.indexed / summary.seconds
            print(f"{name:<7} {summary.indexed} images in {summary.seconds:.1f} s: {rates[name]:.1f} images/s")
        ray.shutdown()
    print(f"ray_speedup_2_vs_1: {rates['ray x2'] / rates['ray x1']:.2f}")


if __name__ == "__main__":
    main()
