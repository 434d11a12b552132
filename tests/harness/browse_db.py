"""A small but realistic saetui database for browser tests, written by saetui's own writer and stats engine.

Generated images of a few labels (a coloured object on a textured background) are saved as files; their 96 px
JPEG thumbnails, and for every image 257 tokens (CLS + 16 x 16 patches) with k kept (feature, value) pairs, go
through `IndexWriter` exactly as `saetui index` writes them. Label features fire on the object's patches, general
features follow Zipf-like frequencies, some features never fire (dead), a few kept values are negative (top-k
without ReLU), and token errors grow towards the image border. `compute_stats` then derives every table from the
tiny random-weight SAE and CLIP model of tests/harness/tiny.py (decoder rows for similar directions, a logit lens
over the dataset labels). Everything is seeded: equal arguments give equal databases.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
from PIL import Image, ImageDraw

from harness.tiny import (
    FINAL_TOKENS,
    MODEL_REPO,
    SCOPE_REPO,
    TINY_WIDTH,
    tiny_model_repo_files,
    tiny_sae_bytes,
    write_files,
)
from saetui.store.writer import ImageRecord

LABELS: tuple[str, ...] = ("tabby cat", "golden retriever", "school bus", "daisy", "volcano", "espresso")
OBJECT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (150, 110, 70),
    (225, 170, 60),
    (250, 200, 20),
    (245, 245, 240),
    (200, 60, 30),
    (90, 50, 30),
)
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (60, 90, 60),
    (120, 170, 90),
    (110, 110, 120),
    (70, 140, 60),
    (80, 110, 170),
    (210, 200, 185),
)
GRID = 16  # patches per side: 224 / 14
TOKENS = GRID * GRID + 1
THUMB = 96  # thumbnail side in pixels
FEATURES_PER_LABEL = 12


@dataclass(frozen=True)
class BrowseDb:
    """A generated database: its path, the image files behind it and a few facts tests check against."""

    path: Path
    image_dir: Path
    image_paths: tuple[Path, ...]
    labels: tuple[str, ...]
    n_features: int
    dead: tuple[int, ...]

    def label_feature(self, label: str) -> int:
        """The first feature that fires on a label's objects."""
        return self.labels.index(label) * FEATURES_PER_LABEL


def _draw_image(rng: np.random.Generator, label_index: int, box: tuple[int, int, int, int]) -> Image.Image:
    """A 224 px image: textured background in the label's colour and an object covering the patch box."""
    base = np.array(BACKGROUNDS[label_index], dtype=np.float32)
    noise = rng.normal(0, 18, size=(224, 224, 1)).astype(np.float32)
    stripes = (np.sin(np.arange(224, dtype=np.float32) / (3 + label_index)) * 12)[None, :, None]
    pixels = np.clip(base + noise + stripes, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    r0, c0, r1, c1 = box
    xy = (c0 * 14, r0 * 14, c1 * 14 - 1, r1 * 14 - 1)
    colour = OBJECT_COLOURS[label_index]
    if label_index % 2 == 0:
        draw.ellipse(xy, fill=colour, outline=(20, 20, 20), width=3)
    else:
        draw.rounded_rectangle(xy, radius=18, fill=colour, outline=(20, 20, 20), width=3)
    return image


def _jpeg(image: Image.Image, side: int) -> bytes:
    """The image shrunk to side x side and encoded as JPEG."""
    out = io.BytesIO()
    image.resize((side, side), Image.Resampling.BICUBIC).save(out, "JPEG", quality=85)
    return out.getvalue()


def _token_scores(
    rng: np.random.Generator, label_index: int, box: tuple[int, int, int, int], n_alive: int, n_labels: int
) -> np.ndarray:
    """Log-weights [257, n_alive] of each alive feature on each token of one image."""
    rows = np.arange(GRID * GRID) // GRID
    cols = np.arange(GRID * GRID) % GRID
    r0, c0, r1, c1 = box
    inside = np.r_[True, (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)]
    general = np.arange(n_labels * FEATURES_PER_LABEL, n_alive)
    zipf = -1.1 * np.log1p(np.arange(len(general)))
    scores = np.full((TOKENS, n_alive), -np.inf)
    scores[:, general] = zipf[None, :] + rng.gumbel(size=(TOKENS, len(general)))
    own = np.arange(label_index * FEATURES_PER_LABEL, (label_index + 1) * FEATURES_PER_LABEL)
    boost = np.where(inside, 4.0, -3.0)[:, None] - 0.25 * np.arange(FEATURES_PER_LABEL)[None, :]
    scores[:, own] = boost + rng.gumbel(size=(TOKENS, FEATURES_PER_LABEL))
    neighbour = ((label_index + 1) % n_labels) * FEATURES_PER_LABEL
    scores[:, neighbour] = np.where(inside, 0.5, -5.0) + rng.gumbel(size=TOKENS)
    return scores


def _records(
    rng: np.random.Generator,
    image_dir: Path,
    n_images: int,
    n_features: int,
    k: int,
    stored_root: str | None = None,
) -> tuple[list[ImageRecord], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image files and records, then features/values [B, 257, k] and sse/total_ss [B, 257].

    stored_root: the folder the images table names instead of image_dir (a database indexed elsewhere).
    """
    n_labels = len(LABELS)
    n_alive = n_features - max(8, n_features // 10)
    records: list[ImageRecord] = []
    features = np.zeros((n_images, TOKENS, k), dtype=np.int32)
    values = np.zeros((n_images, TOKENS, k), dtype=np.float32)
    sse = np.zeros((n_images, TOKENS), dtype=np.float32)
    total = np.zeros((n_images, TOKENS), dtype=np.float32)
    rows = np.r_[7.5, np.arange(GRID * GRID) // GRID]
    cols = np.r_[7.5, np.arange(GRID * GRID) % GRID]
    edge = np.hypot(rows - 7.5, cols - 7.5) / 10.6
    for image_id in range(n_images):
        label_index = image_id % n_labels
        size = int(rng.integers(5, 10))
        r0, c0 = (int(v) for v in rng.integers(0, GRID - size, size=2))
        box = (r0, c0, r0 + size, c0 + size)
        image = _draw_image(rng, label_index, box)
        folder = image_dir / LABELS[label_index].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{image_id:03d}.jpg"
        image.save(path, "JPEG", quality=90)
        stored = f"{stored_root}/{folder.name}/{path.name}" if stored_root else str(path)
        records.append(
            ImageRecord(
                image_id=image_id,
                path=stored,
                label=LABELS[label_index] if image_id != n_images - 1 else None,
                width=224,
                height=224,
                content_hash=hashlib.sha256(path.read_bytes()).hexdigest()[:32],
                source_row=image_id,
                thumbnail=_jpeg(image, THUMB),
            )
        )
        scores = _token_scores(rng, label_index, box, n_alive, n_labels)
        kept = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kept_scores = np.take_along_axis(scores, kept, axis=1)
        kept_values = np.exp(kept_scores / 3.0) * rng.uniform(0.6, 1.4, size=kept.shape)
        kept_values[rng.random(kept.shape) < 0.06] *= -0.2  # top-k without ReLU keeps a few non-positive values
        features[image_id] = kept
        values[image_id] = kept_values
        total[image_id] = rng.uniform(80, 120, size=TOKENS)
        sse[image_id] = total[image_id] * (0.1 + 0.35 * edge + rng.uniform(0, 0.05, TOKENS))
    return records, features, values, sse, total


def build_browse_db(
    root: Path,
    *,
    n_images: int = 48,
    n_features: int = 256,
    k: int = 8,
    seed: int = 0,
    stored_root: str | None = None,
) -> BrowseDb:
    """Write root/browse.duckdb (indexed + stats), root/images/<label>/*.jpg and the tiny SAE and model files.

    With stored_root the images table names paths under that folder (as if indexed on another machine), so
    screens that show paths are the same wherever the tests run.
    """
    from saetui.stats import SaeFiles, StatsOptions, compute_stats
    from saetui.store.writer import IndexWriter, SkippedItem

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "browse.duckdb"
    image_dir = root / "images"
    records, features, values, sse, total = _records(rng, image_dir, n_images, n_features, k, stored_root)
    settings = {
        "model_id": f"hf-hub:{MODEL_REPO}",
        "layer": 20,
        "sae_name": "layer20",
        "sae_repo": SCOPE_REPO,
        "sae_file": f"20_resid/{FINAL_TOKENS}.pt",
        "sae_checkpoint": FINAL_TOKENS,
        "d_in": TINY_WIDTH,
        "n_features": n_features,
        "k": k,
        "tokens": "all",
        "precision": "fp32",
    }
    with IndexWriter.open(path, settings, source=stored_root or str(image_dir), source_items=n_images + 1) as writer:
        for start in range(0, n_images, 16):
            stop = min(start + 16, n_images)
            writer.write_batch(
                records[start:stop],
                np.arange(TOKENS),
                features[start:stop],
                values[start:stop],
                sse[start:stop],
                total[start:stop],
                skipped=[SkippedItem(str(image_dir / "broken.jpg"), "empty file", n_images)] if start == 0 else (),
            )
        writer.finish_run()
    checkpoint = root / "sae" / "20_resid.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(tiny_sae_bytes(n_features=n_features, k=k, seed=seed))
    model_dir = write_files(root / "model", tiny_model_repo_files())
    options = StatsOptions(top_images=100, coactivation_top=16, chunk_images=16)
    compute_stats(path, options, cache=root / "cache", sae_files=SaeFiles(checkpoint, model_dir), progress=None)
    con = duckdb.connect(str(path), read_only=True)
    try:
        dead = tuple(int(f) for (f,) in con.execute("SELECT feature FROM features WHERE dead ORDER BY 1").fetchall())
    finally:
        con.close()
    return BrowseDb(
        path=path,
        image_dir=image_dir,
        image_paths=tuple(sorted(image_dir.rglob("*.jpg"))),
        labels=LABELS,
        n_features=n_features,
        dead=dead,
    )


def build_wide_features_db(path: Path, n_features: int = 65536, seed: int = 0) -> Path:
    """A CLIP-Scope-wide database for list-scale checks: the writer's schema with two images, and a synthetic
    65,536-row features table in the shape `saetui stats` writes (every seventh feature dead)."""
    from saetui.store.writer import IndexWriter

    rng = np.random.default_rng(seed)
    settings = {"n_features": n_features, "k": 32, "tokens": "all", "layer": 20, "sae_name": "layer20"}
    records, _, _, sse, total = _records(rng, path.parent / "wide_images", 2, 256, 8)
    features = np.stack([np.sort(rng.choice(n_features, size=(TOKENS, 32)), axis=1)] * 2).astype(np.int32)
    features[..., 1:] = np.maximum(features[..., 1:], features[..., :-1] + 1) % n_features
    values = rng.gamma(2.0, 1.0, size=features.shape).astype(np.float32)
    with IndexWriter.open(path, settings, source="synthetic", source_items=2) as writer:
        writer.write_batch(records, np.arange(TOKENS), features, values, sse, total)
        writer.finish_run()
    con = duckdb.connect(str(path))
    try:
        con.execute(f"SELECT setseed({(seed % 1000) / 1000})")
        con.execute(
            f"""CREATE TABLE features AS
            SELECT range::INTEGER AS feature, (random() * 1000)::BIGINT AS n_tokens, 0::BIGINT AS n_images,
                   CASE WHEN range % 7 = 3 THEN 0 ELSE pow(10, -1 - random() * 5) END AS frequency,
                   random() * 0.5 AS image_frequency, random() * 3 AS mean_value,
                   (random() * 20)::FLOAT AS max_value,
                   CASE WHEN range % 5 = 0 THEN NULL ELSE random() * 4 END AS label_entropy,
                   CASE WHEN range % 5 = 0 THEN NULL ELSE random() END AS label_entropy_norm,
                   ['tabby cat', 'school bus', 'daisy', 'volcano'][1 + range % 4] AS top_label,
                   random() AS top_label_share, 4 AS n_labels, 20 AS n_labelled,
                   ['lighthouse', 'pizza'][1 + range % 2] AS lens_label, random() AS lens_score,
                   range % 7 = 3 AS dead
            FROM range({n_features})"""
        )
    finally:
        con.close()
    return path


@functools.lru_cache(maxsize=4)
def shared_browse_db(base: Path) -> BrowseDb:
    """The standard browse database (paths stored under /data/imagenet-sample), built once per test session.

    base: the session's temporary root (tmp_path_factory.getbasetemp()); every test module asking for it in the
    same session gets the same files. Treat it as read-only.
    """
    return build_browse_db(base / "shared-browse-db", stored_root="/data/imagenet-sample")
