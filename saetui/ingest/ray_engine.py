"""The index engine on Ray Data: a CPU stage decodes, a pool of actors runs model + SAE, the driver writes.

The same stages as the local engine (saetui.ingest.indexer) as a Ray Data pipeline over the pending items:
`map_batches(prepare_rows)` runs on CPU tasks (read, hash, decode, crop, normalise, thumbnail, exactly
saetui.ingest.pipeline.prepare), `map_batches(EncodeActor, concurrency=N)` on an actor pool that loads the model and
the SAE once per actor (one GPU each where the cluster has them), and the driver consumes the rows in source order
(`preserve_order`) and writes them through the same IndexWriter, so image ids, codes and errors are the local
engine's. Every node must see the source files and the saetui cache at the same paths (a shared file system).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from saetui.families.normalisers import Normaliser
from saetui.hub import FetchedSae
from saetui.ingest.pipeline import PreparedImage, SkippedInput, prepare
from saetui.ingest.sources import ImageItem
from saetui.models.preprocess import Preprocessing
from saetui.progress import Progress
from saetui.store.writer import BatchMoments, ImageRecord, IndexWriter, SkippedItem


def prepare_rows(batch: dict[str, np.ndarray], prep: Preprocessing) -> dict[str, np.ndarray]:
    """CPU stage: each item prepared as the local engine prepares it (pixels, hash, thumbnail or a skip reason)."""
    results = [prepare(item, prep) for item in batch["item"]]
    return {"item": batch["item"], "prepared": np.array(results + [None], dtype=object)[:-1]}


class EncodeActor:
    """GPU (or CPU) stage: the model trunk, the SAE and the encoder, loaded once per actor."""

    def __init__(self, fetched: FetchedSae, settings: dict[str, Any], scaling: Normaliser | None) -> None:
        """Build the trunk and the SAE as index_images does."""
        from saetui.families.loading import load_sae
        from saetui.ingest.pipeline import Encoder
        from saetui.models.trunk import VisionTrunk, resolve_precision

        spec = fetched.spec
        device = settings["device"]
        trunk = VisionTrunk.from_dir(
            fetched.model_dir, spec.layer, device, settings["precision"], site=spec.hook, full=settings["embeddings"]
        )
        weights = load_sae(spec, fetched.checkpoint_path, fetched.config_path)
        sae = weights.sparse(
            device=trunk.device,
            dtype=resolve_precision(settings["precision"]),
            keep_top=settings["keep_top"],
            normaliser=scaling,
        )
        self.encoder = Encoder(trunk, sae, settings["tokens"], settings["embeddings"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Codes of the batch's decoded images, one object per row (None for skipped items)."""
        prepared = list(batch["prepared"])
        images = [p for p in prepared if isinstance(p, PreparedImage)]
        codes: list[object] = [None] * len(prepared)
        if images:
            out = self.encoder(np.stack([image.pixels for image in images]))
            positions = [i for i, p in enumerate(prepared) if isinstance(p, PreparedImage)]
            for n, row in enumerate(positions):
                x_moments = None if n else (out.sum_x, out.sum_sq, out.count)  # the batch's moments, on its first row
                codes[row] = RowCodes(
                    out.features[n], out.values[n], out.sse[n], out.total_ss[n],
                    None if out.embeddings is None else out.embeddings[n], x_moments, out.tokens,
                )  # fmt: skip
        return {"prepared": batch["prepared"], "codes": np.array(codes + [None], dtype=object)[:-1]}


@dataclass
class RowCodes:
    """One image's codes from the actor pool (and, on a batch's first image, the batch's moments)."""

    features: np.ndarray  # [T, K]
    values: np.ndarray
    sse: np.ndarray  # [T]
    total_ss: np.ndarray
    embedding: np.ndarray | None
    moments: tuple[np.ndarray, float, int] | None
    tokens: np.ndarray


def _padded(rows: list[np.ndarray], fill: float | int, dtype: type) -> np.ndarray:
    """[B, T, K] from per-image [T, K_i] arrays, padded to the widest."""
    width = max(row.shape[1] for row in rows)
    out = np.full((len(rows), rows[0].shape[0], width), fill, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, :, : row.shape[1]] = row
    return out


def _groups(
    rows: Iterator[dict[str, Any]], batch_size: int
) -> Iterator[tuple[list[tuple[PreparedImage, RowCodes]], list[SkippedInput]]]:
    """Rows regrouped in source order into write batches of batch_size images and the skips met among them."""
    images: list[tuple[PreparedImage, RowCodes]] = []
    skipped: list[SkippedInput] = []
    for row in rows:
        prepared = row["prepared"]
        if isinstance(prepared, SkippedInput):
            skipped.append(prepared)
            continue
        images.append((prepared, row["codes"]))
        if len(images) >= batch_size:
            yield images, skipped
            images, skipped = [], []
    if images or skipped:
        yield images, skipped


def run_on_ray(
    pending: list[ImageItem],
    fetched: FetchedSae,
    settings: dict[str, Any],
    scaling: Normaliser | None,
    prep: Preprocessing,
    writer: IndexWriter,
    batch_size: int,
    workers: int,
    address: str | None,
    log: TextIO,
) -> tuple[int, int, int, int]:
    """Index the pending items on a Ray cluster (local by default); returns (indexed, skipped, tokens, pairs)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"item": item} for item in pending])
    dataset = dataset.map_batches(prepare_rows, batch_size=batch_size, fn_kwargs={"prep": prep})
    gpus = 1 if str(settings["device"]).startswith("cuda") else 0
    dataset = dataset.map_batches(
        EncodeActor,
        batch_size=batch_size,
        concurrency=workers,
        num_gpus=gpus,
        fn_constructor_kwargs={"fetched": fetched, "settings": settings, "scaling": scaling},
    )
    progress = Progress(len(pending), "index (ray)", stream=log)
    next_id = writer.next_image_id
    indexed = skipped_count = tokens_stored = pairs = 0
    for images, skipped in _groups(dataset.iter_rows(), batch_size):
        records = [
            ImageRecord(next_id + n, p.item.path, p.item.label, p.width, p.height, p.content_hash,
                        p.item.source_row, p.thumbnail, key=p.item.key)
            for n, (p, _) in enumerate(images)
        ]  # fmt: skip
        next_id += len(records)
        skips = [SkippedItem(s.item.path, s.reason, s.item.source_row, s.item.key) for s in skipped]
        if images:
            codes = [c for _, c in images]
            moments = [c.moments for c in codes if c.moments is not None]
            total = None
            if moments:
                sum_x = np.sum([m[0] for m in moments], axis=0)
                total = BatchMoments(tokens=sum(m[2] for m in moments), sum_sq=sum(m[1] for m in moments), sum_x=sum_x)
            features = _padded([c.features for c in codes], -1, np.int32)
            writer.write_batch(
                records, codes[0].tokens, features, _padded([c.values for c in codes], 0.0, np.float32),
                np.stack([c.sse for c in codes]), np.stack([c.total_ss for c in codes]), total, skips,
                None if codes[0].embedding is None else np.stack([c.embedding for c in codes]),
            )  # fmt: skip
            tokens_stored += features.shape[0] * features.shape[1]
            pairs += int((features >= 0).sum())
        else:
            empty = np.zeros((0, 0, 0))
            writer.write_batch([], np.zeros(0, np.int16), empty.astype(np.int32), empty.astype(np.float32),
                               np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), None, skips)  # fmt: skip
        indexed += len(records)
        skipped_count += len(skips)
        progress.advance(len(records) + len(skips), f"skipped {skipped_count}" if skipped_count else "")
    progress.close()
    return indexed, skipped_count, tokens_stored, pairs
