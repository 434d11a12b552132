"""The index engine's stages on their own: ordered bounded decoding, batching, skips, resume planning, tokens."""

from __future__ import annotations

import io
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.badimages import GOOD_COLOUR, GOOD_GREYSCALE
from harness.tiny import tiny_model_config_files, tiny_model_repo_files, tiny_sae_bytes, write_files
from saetui.families.clip_scope import load_checkpoint
from saetui.ingest import pipeline
from saetui.ingest.indexer import pending_items, plan_resume, reason_kind, source_key
from saetui.ingest.sources import ImageItem, ListFileSource
from saetui.models.preprocess import load_preprocessing, preprocess_image
from saetui.models.trunk import VisionTrunk


def item(row: int, path: str = "x.jpg", data: bytes | None = None) -> ImageItem:
    """An ImageItem at a source row."""
    return ImageItem(key=f"{path}:{row}", path=path, label=None, source_row=row, data=data)


def test_prepared_in_order_keeps_order_and_bounds_look_ahead() -> None:
    """Results come back in item order whatever the finishing order, with at most `lookahead` items in flight."""
    started: list[int] = []
    consumed: list[int] = []
    lock = threading.Lock()
    in_flight = [0]

    def work(it: ImageItem) -> int:
        with lock:
            started.append(it.source_row)
            in_flight[0] = max(in_flight[0], len(started) - len(consumed))
        time.sleep(random.uniform(0, 0.004))
        return it.source_row

    results = []
    for value in pipeline.prepared_in_order((item(i) for i in range(60)), work, workers=4, lookahead=5):
        with lock:
            consumed.append(value)
        results.append(value)
    assert results == list(range(60))
    assert in_flight[0] <= 5


def test_prepare_decodes_crops_and_records_every_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A good file becomes pixels + a 96 px JPEG thumbnail; a bad one a skip; any other error a typed skip."""
    prep = load_preprocessing(write_files(tmp_path / "model", tiny_model_config_files()))
    good = pipeline.prepare(item(0, str(GOOD_GREYSCALE)), prep)
    assert isinstance(good, pipeline.PreparedImage)
    with Image.open(GOOD_GREYSCALE) as image:
        assert (good.width, good.height) == image.size
        assert np.array_equal(good.pixels, preprocess_image(image, prep))
    with Image.open(io.BytesIO(good.thumbnail)) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (96, 96))
    bad = pipeline.prepare(item(1, "empty.jpg", data=b"not an image at all"), prep)
    assert isinstance(bad, pipeline.SkippedInput) and bad.reason == "not an image (text/plain?)"

    def explode(*args: object) -> None:
        raise MemoryError("no room")

    monkeypatch.setattr(pipeline, "input_crop", explode)
    failed = pipeline.prepare(item(2, str(GOOD_COLOUR)), prep)
    assert isinstance(failed, pipeline.SkippedInput) and failed.reason == "failed: MemoryError: no room"


def test_batched_groups_images_and_carries_skips_in_order() -> None:
    """Batches hold batch_size images and the skips met among them; a trailing run of skips is its own batch."""
    pixels = np.zeros((3, 2, 2), np.float32)

    def image(row: int) -> pipeline.PreparedImage:
        return pipeline.PreparedImage(item(row), "h", 1, 1, pixels, b"")

    def skip(row: int) -> pipeline.SkippedInput:
        return pipeline.SkippedInput(item(row), "bad")

    stream = [skip(0), image(1), image(2), skip(3), image(4), skip(5), skip(6)]
    batches = list(pipeline.batched(stream, 2))
    rows = [([i.item.source_row for i in b.images], [s.item.source_row for s in b.skipped]) for b in batches]
    assert rows == [([1, 2], [0]), ([4], [3, 5, 6])]
    assert [b.n_items for b in batches] == [3, 4]
    assert batches[0].pixels().shape == (2, 3, 2, 2)


def test_reason_kinds_group_skip_reasons() -> None:
    """Summary counts group reasons by their text before the detail."""
    assert reason_kind("truncated JPEG: image file is truncated") == "truncated JPEG"
    assert reason_kind("not an image (text/plain?)") == "not an image"
    assert reason_kind("broken symlink -> nowhere.jpg") == "broken symlink"
    assert reason_kind("zero-byte file") == "zero-byte file"
    assert reason_kind("failed: MemoryError: no room") == "failed"


def test_pending_items_skip_what_is_done_and_respect_the_limit(tmp_path: Path) -> None:
    """Done keys are passed over wherever they sit, --limit counts source rows, gone keys are counted missing."""
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"img{i}.jpg\n" for i in range(10)))
    source = ListFileSource(str(listing))
    paths = {i: str(tmp_path / f"img{i}.jpg") for i in range(10)}
    done = frozenset({paths[0], paths[1], paths[2], paths[5], str(tmp_path / "gone.jpg")})
    plan = plan_resume(source, None, done)
    assert (plan.considered, plan.already_done, plan.missing) == (10, 4, 1)
    assert [it.source_row for it in pending_items(source, plan)] == [3, 4, 6, 7, 8, 9]
    assert [it.source_row for it in pending_items(source, plan_resume(source, 6, done))] == [3, 4]
    assert list(pending_items(source, plan_resume(source, 2, done))) == []
    assert [it.source_row for it in pending_items(source, plan_resume(source, None, frozenset()))] == list(range(10))


def test_encoder_token_sets_and_errors(tmp_path: Path) -> None:
    """cls and patches select rows of the all-token codes; sse and total_ss match a direct computation."""
    model_dir = write_files(tmp_path / "model", tiny_model_repo_files())
    ckpt_path = tmp_path / "sae.pt"
    ckpt_path.write_bytes(tiny_sae_bytes())
    ckpt = load_checkpoint(ckpt_path)
    trunk = VisionTrunk.from_dir(model_dir, 20, "cpu", "fp32")
    sae = ckpt.sparse()
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    full = pipeline.Encoder(trunk, sae, "all")(pixels)
    assert full.values.shape == (2, 257, ckpt.k) and full.features.dtype == np.int32
    for tokens, positions in (("cls", [0]), ("patches", list(range(1, 257)))):
        part = pipeline.Encoder(trunk, sae, tokens)(pixels)
        assert part.tokens.tolist() == positions
        assert np.array_equal(part.features, full.features[:, positions])
        assert np.allclose(part.values, full.values[:, positions], atol=1e-6)
    x = trunk(torch.from_numpy(pixels)).reshape(-1, 32).double()
    values, indices = sae.encode(x.float())
    recon = (ckpt.dec.double()[indices] * values.double()[..., None]).sum(1) + ckpt.input_bias.double()
    assert np.allclose(full.sse.reshape(-1), (x - recon).pow(2).sum(1).numpy(), rtol=1e-5)
    assert np.allclose(full.total_ss.reshape(-1), (x - x.mean(1, keepdim=True)).pow(2).sum(1).numpy(), rtol=1e-5)
    assert full.count == 2 * 257
    assert np.allclose(full.sum_x, x.sum(0).numpy(), rtol=1e-5, atol=1e-3)
    assert full.sum_sq == pytest.approx(float(x.pow(2).sum()), rel=1e-5)


def test_source_keys_name_the_path_and_split(tmp_path: Path) -> None:
    """Folders and list files are keyed by absolute path; each split of a Parquet folder is its own source."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from saetui.ingest.sources import open_source

    folder = tmp_path / "photos" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(GOOD_COLOUR.read_bytes())
    assert source_key(open_source(str(tmp_path / "photos"))) == str(tmp_path / "photos")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'a.jpg'}\n")
    assert source_key(open_source(str(listing))) == str(listing)
    for split in ("train", "test"):
        (tmp_path / "table" / split).mkdir(parents=True)
        table = pa.table({"image": [GOOD_COLOUR.read_bytes()], "label": ["shark"]})
        pq.write_table(table, tmp_path / "table" / split / "part-0.parquet")
    keys = {split: source_key(open_source(str(tmp_path / "table"), split=split)) for split in ("train", "test")}
    assert keys == {"train": f"{tmp_path / 'table'} (split train)", "test": f"{tmp_path / 'table'} (split test)"}
