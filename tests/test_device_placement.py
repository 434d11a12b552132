"""Every model step runs with all its tensors on the step's device: index, stats (lens), search and eval on `meta`.

The second device is `meta` under harness.second_device.strict_meta, which refuses any op that mixes devices the
way CUDA does, so a CPU checkpoint row or a cached CPU text embedding meeting a model on another device fails here
as it would on a GPU. Results copied back to the host are zeros there; the tests check that the steps ran to their
end and that what they handed back was computed on the second device.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from harness.badimages import copy_imagenet_sample
from harness.fakehub import FetchedCache
from harness.handbuilt import random_db
from harness.second_device import META, MixedDevices, strict_meta
from harness.tiny import tiny_model_repo_files, tiny_sae_bytes, write_files
from saetui.evaluate.runner import EvalOptions, evaluate
from saetui.families.clip_scope import load_checkpoint
from saetui.hub import fetch
from saetui.ingest.indexer import IndexOptions, index_images
from saetui.ingest.pipeline import Encoder
from saetui.ingest.sources import open_source
from saetui.models.trunk import VisionTrunk
from saetui.registry import get_spec
from saetui.stats import SaeFiles, StatsOptions, compute_stats
from saetui.stats.search import search_text

# open_clip builds the full model on the device and then copies the weights in, a no-op on meta that torch warns of.
pytestmark = pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")


def test_the_harness_catches_what_cuda_refuses() -> None:
    """A CPU operand of a matmul on meta passes in plain torch but fails under strict_meta, like on CUDA."""
    rows, weights = torch.zeros(4, 8), torch.zeros(8, 3, device=META)
    _ = rows @ weights  # plain torch quietly accepts the CPU operand of a meta matmul
    with strict_meta(), pytest.raises(MixedDevices, match="cpu"):
        _ = rows @ weights
    with strict_meta() as mode:
        assert (rows.to(META) @ weights).cpu().shape == (4, 3)
    assert mode.host_copies == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny model folder and the tiny layer-20 SAE checkpoint on disk."""
    root = tmp_path_factory.mktemp("tiny")
    model_dir = write_files(root / "model", tiny_model_repo_files())
    checkpoint = root / "1200013184.pt"
    checkpoint.write_bytes(tiny_sae_bytes())
    return model_dir, checkpoint


def test_encoder_runs_on_the_second_device(tiny: tuple[Path, Path]) -> None:
    """The truncated trunk, the token selection, the SAE encode/decode and the error sums stay on meta."""
    model_dir, checkpoint = tiny
    trunk = VisionTrunk.from_dir(model_dir, 20, META, "fp32")
    sae = load_checkpoint(checkpoint).sparse(device=META)
    pixels = np.zeros((2, 3, 224, 224), dtype=np.float32)
    for tokens in ("all", "cls"):
        with strict_meta() as mode:
            codes = Encoder(trunk, sae, tokens)(pixels)
        assert codes.values.shape[:2] == (2, 257 if tokens == "all" else 1)
        assert mode.host_copies >= 5


def test_index_stats_and_search_run_on_the_second_device(hub_in_process: FetchedCache, tmp_path: Path) -> None:
    """`index` (then `stats` with the logit lens and the free-text search) with every model tensor on meta."""
    source = tmp_path / "images"
    copy_imagenet_sample(source, wnids=3, split=None)
    fetched = fetch(get_spec("layer20"))
    db = tmp_path / "meta.duckdb"
    with strict_meta() as mode:
        summary = index_images(
            open_source(str(source)), fetched, db, IndexOptions(batch_size=2, device=META, workers=1), log=io.StringIO()
        )
    assert summary.indexed == 3 and mode.host_copies > 0
    files = SaeFiles(checkpoint_path=fetched.checkpoint_path, model_dir=fetched.model_dir)
    with strict_meta() as mode:
        stats = compute_stats(db, StatsOptions(), sae_files=files, device=META, progress=None, cache=tmp_path / "c")
    assert stats.computed and stats.lens and mode.host_copies > 0
    assert {"linear", "layer_norm", "normalize"} & mode.seen  # the lens ran the model's ln_post and projection
    con = duckdb.connect(str(db), read_only=True)
    try:
        with strict_meta() as mode:
            hits = search_text(con, "a red bus", n=3, cache=tmp_path / "c", device=META)
    finally:
        con.close()
    assert len(hits) == 3 and mode.host_copies > 0


def test_eval_runs_on_the_second_device(hub_in_process: FetchedCache, tmp_path: Path) -> None:
    """`eval` (the whole CLIP with the SAE spliced in, neuron alignment, text prompts) with every tensor on meta."""
    source = tmp_path / "images"
    copy_imagenet_sample(source, wnids=2, split=None)
    fetched = fetch(get_spec("layer20"))
    options = EvalOptions(batch_size=2, device=META, workers=1)
    with strict_meta() as mode:
        report = evaluate(open_source(str(source)), fetched, options, cache=str(tmp_path / "c"), log=io.StringIO())
    assert report.images == 2 and mode.host_copies > 0


def test_stats_without_a_model_step_needs_no_device(tmp_path: Path) -> None:
    """Stats over a database without SAE files never touch torch, whatever the device."""
    db = random_db(tmp_path / "r.duckdb", n_images=4)
    with strict_meta() as mode:
        compute_stats(db, StatsOptions(lens=False), device=META, progress=None)
    assert mode.ops == 0
