"""`saetui index --engine ray` on a local multi-node Ray cluster (two nodes on this machine, CPU only, tiny model)
gives the local engine's database: the same images and ids, the same kept pairs, values and token errors, and the
same statistics (signatures of whole tables, not counts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import ray

from harness.fakehub import FetchedCache
from harness.sample import SAMPLE
from harness.tables import rows
from saetui.commands.main import main

ARGS = ("--batch-size", "16", "--tokens", "cls", "--no-stats")
EXACT = {
    "images": "SELECT image_id, item_key, path, label, content_hash, md5(thumbnail) FROM images ORDER BY image_id",
    "pairs": "SELECT image_id, token, feature FROM activations ORDER BY ALL",
    "features": "SELECT feature, n_tokens, n_images, top_label, dead FROM features ORDER BY feature",
    "top_images": "SELECT feature, rank, image_id FROM feature_images ORDER BY feature, rank",
}
CLOSE = {
    "values": "SELECT value FROM activations ORDER BY image_id, token, feature",
    "errors": "SELECT sse, total_ss FROM token_errors ORDER BY image_id, token",
    "stats": "SELECT frequency, mean_value, max_value FROM features ORDER BY feature",
}


@pytest.fixture
def cluster():
    """A Ray cluster of two nodes (one CPU each) on this machine, as Ray's own tests build them."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def test_ray_engine_gives_the_local_engines_database(hub_in_process: FetchedCache, tmp_path: Path, cluster) -> None:
    """The 300 sample images through both engines: identical tables, values and errors within float32 rounding."""
    source = tmp_path / "images"
    shutil.copytree(SAMPLE, source)
    local, distributed = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    assert main(["index", str(source), "--db", str(local), *ARGS]) == 0
    assert main(["index", str(source), "--db", str(distributed), *ARGS, "--engine", "ray",
                 "--address", cluster.address, "--ray-workers", "2"]) == 0  # fmt: skip
    assert len(ray.nodes()) == 2
    for db in (local, distributed):
        assert main(["stats", "--db", str(db), "--no-lens"]) == 0
    for name, sql in EXACT.items():
        assert rows(distributed, sql) == rows(local, sql), name
    for name, sql in CLOSE.items():
        got, want = np.array(rows(distributed, sql), dtype=np.float64), np.array(rows(local, sql), dtype=np.float64)
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True), name
    assert rows(distributed, "SELECT count(*) FROM images")[0][0] == 300
