"""Realistic synthetic SAE codes written through saetui's own IndexWriter, for the storage and query benchmarks.

What "realistic" means here (CLIP-Scope shapes: 257 tokens x k = 32 of 65,536 features per image):
- features: Zipf-like popularity (p ~ 1/(rank + 10)^1.1) over a random permutation of the feature ids, and spatial
  coherence: each image has a pool of 300 "topic" features that supply about 60% of every token's candidates
  (an image ends up with ~1,500-2,000 distinct features, patches share many), the rest drawn from the global
  distribution; k distinct features per token;
- values: float32 straight from a random process (full 23-bit mantissas, as a matmul gives), per-token scale
  log-normal around 3 (CLS x1.5, 2% high-norm tokens x4), within-token spread log-normal (sigma 0.6), sorted like
  top-k; 2% of tokens keep 1-4 small negative values at the end (CLIP-Scope's top-k has no ReLU). Typical values
  0.5-25, extremes ~0.1-50;
- token errors: total_ss log-normal around 3,000, sse = total_ss x Beta(3, 8) (explained variance ~0.73);
- images: real thumbnails of ../shared/data/imagenet-sample (cycled), made by the index engine's own code from the
  model's 224 px input crop (or, for what-if runs, resized to a given size), ImageNet-style paths and labels, sha256
  content hashes.
A dense family (--family relu): ViT-Prisma's recommended all-patch ReLU SAE on ViT-B/32, 50 tokens of 49,152
features, every active latent stored: a log-normal number of pairs per token around the reported mean L0 of 1,405
(sigma 0.3), distinct features from the same Zipf-like popularity, positive values (ReLU) log-normal around 0.3.
Nothing here comes from a real model: benchmark output that uses it says so.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from saetui.defaults import BATCH_SIZE, COMMIT_IMAGES
from saetui.models.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocessing, input_crop
from saetui.store.writer import BatchMoments, ImageRecord, IndexWriter

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
N_TOKENS = 257
POOL = 300
D_IN = 1024


def alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table of a discrete distribution: draw i uniformly, keep it with accept[i], else alias[i]."""
    n = len(p)
    scaled = p * n
    accept = np.ones(n)
    alias = np.arange(n)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        low, high = small.pop(), large[-1]
        accept[low], alias[low] = scaled[low], high
        scaled[high] -= 1.0 - scaled[low]
        if scaled[high] < 1.0:
            small.append(large.pop())
    return accept, alias


@dataclass
class SyntheticCodes:
    """Generator of SAE codes for batches of images with realistic feature and value statistics."""

    n_features: int = 65_536
    k: int = 32
    n_tokens: int = N_TOKENS
    seed: int = 0

    def __post_init__(self) -> None:
        """Fix the feature popularity order, its alias table for O(1) sampling, and the random stream."""
        self.rng = np.random.default_rng(self.seed)
        self.permutation = self.rng.permutation(self.n_features)
        weights = 1.0 / (np.arange(self.n_features) + 10.0) ** 1.1
        self.accept, self.alias = alias_table(weights / weights.sum())

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        """Features drawn from the global Zipf-like popularity (Walker's alias method)."""
        ranks = self.rng.integers(0, self.n_features, shape)
        ranks = np.where(self.rng.random(shape) < self.accept[ranks], ranks, self.alias[ranks])
        return self.permutation[ranks]

    def features(self, count: int) -> np.ndarray:
        """k distinct features per token for count images: [count, n_tokens, k] int32."""
        r, t, k = self.rng, self.n_tokens, self.k
        pool = self.draw((count, POOL))
        n_pool = int(round(1.2 * k))
        picked = np.take_along_axis(pool, r.integers(0, POOL, (count, t * n_pool)), axis=1)
        candidates = np.concatenate([picked.reshape(count, t, n_pool), self.draw((count, t, 2 * k - n_pool))], 2)
        candidates.sort(axis=2)
        priority = r.random(candidates.shape)
        priority[:, :, 1:][candidates[:, :, 1:] == candidates[:, :, :-1]] = np.inf  # repeats never win
        chosen = np.argpartition(priority, k - 1, axis=2)[:, :, :k]
        features = np.take_along_axis(candidates, chosen, axis=2)
        short = np.isinf(np.take_along_axis(priority, chosen, axis=2)).any(axis=2)
        for b, tok in zip(*np.nonzero(short), strict=True):  # rare: fewer than k distinct candidates
            features[b, tok] = self._fill(np.unique(features[b, tok]))
        return features.astype(np.int32)

    def _fill(self, distinct: np.ndarray) -> np.ndarray:
        """Complete a token's distinct features to k with uniform draws."""
        while len(distinct) < self.k:
            distinct = np.union1d(distinct, self.rng.integers(0, self.n_features, self.k))
        return self.rng.permutation(distinct)[: self.k]

    def values(self, count: int) -> np.ndarray:
        """Top-k-like values [count, n_tokens, k] float32, descending per token, a few kept negatives."""
        r, t, k = self.rng, self.n_tokens, self.k
        scale = np.exp(r.normal(np.log(3.0), 0.5, (count, t)))
        scale[:, 0] *= 1.5
        scale[r.random((count, t)) < 0.02] *= 4.0
        values = -np.sort(-(scale[:, :, None] * np.exp(r.normal(0.0, 0.6, (count, t, k)))), axis=2)
        negative_tail = np.where(r.random((count, t)) < 0.02, r.integers(1, 5, (count, t)), 0)
        tail = np.arange(k)[None, None, :] >= (k - negative_tail)[:, :, None]
        values[tail] = -r.uniform(0.01, 0.5, int(tail.sum()))
        return values.astype(np.float32)

    def errors(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """sse and total_ss [count, n_tokens] float32."""
        total = np.exp(self.rng.normal(np.log(3000.0), 0.4, (count, self.n_tokens)))
        sse = total * self.rng.beta(3.0, 8.0, total.shape)
        return sse.astype(np.float32), total.astype(np.float32)

    def moments(self, count: int) -> BatchMoments:
        """Plausible token moments for a batch (sum of x and of ||x||^2 over its tokens)."""
        tokens = count * self.n_tokens
        return BatchMoments(
            tokens=tokens,
            sum_sq=float(tokens * D_IN * self.rng.uniform(2.0, 4.0)),
            sum_x=self.rng.normal(0.0, np.sqrt(tokens), D_IN),
        )


@dataclass
class DenseCodes(SyntheticCodes):
    """A ReLU SAE's codes: a variable number of positive pairs per token, padded with feature -1."""

    n_features: int = 49_152
    n_tokens: int = 50
    mean_pairs: float = 1405.0

    def features(self, count: int) -> np.ndarray:
        """[count, n_tokens, K] int32 distinct features per token, -1 after each token's own count."""
        pairs = np.clip(
            np.rint(self.mean_pairs * np.exp(self.rng.normal(-0.045, 0.3, (count, self.n_tokens)))), 1, None
        )
        width = int(pairs.max())
        out = np.full((count, self.n_tokens, width), -1, np.int32)
        for b in range(count):
            for t in range(self.n_tokens):
                chosen = np.unique(self.draw(int(2 * pairs[b, t])))[: int(pairs[b, t])]
                out[b, t, : len(chosen)] = self.rng.permutation(chosen)
        self._pairs = out >= 0
        return out

    def values(self, count: int) -> np.ndarray:
        """Positive values for the pairs the last features() call made, descending per token, 0 in unused slots."""
        kept = self._pairs
        values = np.exp(self.rng.normal(np.log(0.3), 0.8, kept.shape)).astype(np.float32)
        values = -np.sort(-np.where(kept, values, 0), axis=2)
        return np.where(kept, values, 0).astype(np.float32)


@dataclass(frozen=True)
class SampleImage:
    """One real image of the sample folder: where it is, its label, its bytes' hash, its thumbnail."""

    path: str
    label: str
    width: int
    height: int
    content: bytes
    thumbnail: bytes


CLIP_224 = Preprocessing(size=224, crop=224, mean=OPENAI_MEAN, std=OPENAI_STD, source="bench")


def engine_thumbnail(image: Image.Image) -> bytes:
    """The thumbnail `saetui index` stores: its own JPEG of the model's input crop (imports torch via the pipeline)."""
    from saetui.ingest.pipeline import thumbnail_jpeg

    return thumbnail_jpeg(input_crop(image, CLIP_224))


def sized_thumbnail(px: int, quality: int = 75) -> Callable[[Image.Image], bytes]:
    """A what-if thumbnail: the input crop resized to px (Lanczos), optimised JPEG at quality."""

    def make(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        input_crop(image, CLIP_224).resize((px, px), Image.Resampling.LANCZOS).save(
            buffer, "JPEG", quality=quality, optimize=True
        )
        return buffer.getvalue()

    return make


def sample_images(sample_dir: Path, thumbnail: Callable[[Image.Image], bytes]) -> list[SampleImage]:
    """The sample folder's images, each with the thumbnail of its 224 px input crop."""
    files = sorted(p for p in sample_dir.rglob("*") if p.is_file())
    if not files:
        sys.exit(f"no images under {sample_dir} (pass --sample-dir)")
    images = []
    for file in files:
        with Image.open(file) as opened:
            rgb = opened.convert("RGB")
        label = file.stem.split("_", 1)[-1].replace("_", " ")
        images.append(SampleImage(str(file), label, rgb.width, rgb.height, file.read_bytes(), thumbnail(rgb)))
    return images


def records(samples: list[SampleImage], first_id: int, count: int) -> list[ImageRecord]:
    """Image records for ids first_id.. (cycling the samples), with ImageNet-style paths and unique hashes."""
    result = []
    for image_id in range(first_id, first_id + count):
        sample = samples[image_id % len(samples)]
        wnid = Path(sample.path).parent.name
        digest = hashlib.sha256(image_id.to_bytes(8, "little") + sample.content).hexdigest()
        result.append(
            ImageRecord(
                image_id=image_id,
                path=f"/data/imagenet/train/{wnid}/{wnid}_{image_id}.JPEG",
                label=sample.label,
                width=sample.width,
                height=sample.height,
                content_hash=digest,
                source_row=image_id,
                thumbnail=sample.thumbnail,
            )
        )
    return result


SETTINGS: dict[str, object] = {
    "model_id": "ViT-L-14 (synthetic codes)",
    "pretrained": "laion2b_s32b_b82k",
    "layer": 20,
    "sae_name": "layer20",
    "sae_repo": "lewington/CLIP-ViT-L-scope",
    "sae_file": "20_resid/1200013184.pt",
    "sae_checkpoint": 1_200_013_184,
    "d_in": D_IN,
    "n_features": 65_536,
    "k": 32,
    "tokens": "all",
    "precision": "fp32",
    "device": "synthetic",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "image_size": 224,
    "standardise": False,
}


DENSE_SETTINGS: dict[str, object] = {
    "model_id": "ViT-B-32 (synthetic codes)",
    "layer": 11,
    "sae_family": "vit-prisma",
    "sae_name": "prisma-b32-layer11-resid_post",
    "d_in": 768,
    "n_features": 49_152,
    "k": 0,
    "grid_rows": 7,
    "grid_cols": 7,
}


def write_synthetic(
    db: Path,
    n_images: int,
    *,
    batch_size: int = BATCH_SIZE,
    commit_images: int = COMMIT_IMAGES,
    seed: int = 0,
    thumbnail_px: int | None = None,
    sample_dir: Path = SAMPLE_DIR,
    progress: bool = True,
    family: str = "topk",
) -> float:
    """Index n_images synthetic images into db through IndexWriter (a fresh database) and return the seconds taken.

    Batches of batch_size images (the forward batch) are committed commit_images at a time, as `saetui index` does.

    Thumbnails are the index engine's own (thumbnail_px None) or what-if px-sized ones.
    """
    samples = sample_images(sample_dir, engine_thumbnail if thumbnail_px is None else sized_thumbnail(thumbnail_px))
    codes = SyntheticCodes(seed=seed) if family == "topk" else DenseCodes(seed=seed)
    tokens = np.arange(codes.n_tokens)
    settings = SETTINGS if family == "topk" else {**SETTINGS, **DENSE_SETTINGS}
    start = time.perf_counter()
    with IndexWriter.open(
        db,
        {**settings, "batch_size": batch_size},
        source="synthetic:imagenet",
        source_items=n_images,
        overwrite=True,
        commit_images=commit_images,
    ) as writer:
        for first, count in _batches(n_images, batch_size):
            sse, total_ss = codes.errors(count)
            writer.write_batch(
                records(samples, first, count),
                tokens,
                codes.features(count),
                codes.values(count),
                sse,
                total_ss,
                codes.moments(count),
            )
            if progress:
                print(f"\r{first + count}/{n_images} images", end="", file=sys.stderr, flush=True)
        writer.finish_run()
    if progress:
        print(file=sys.stderr)
    return time.perf_counter() - start


def _batches(n_images: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(first image id, count) of each batch."""
    for first in range(0, n_images, batch_size):
        yield first, min(batch_size, n_images - first)


def main(argv: list[str] | None = None) -> None:
    """Write a synthetic database: python bench/synthetic.py --db PATH --images N."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="database to (over)write")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--commit-every", type=int, default=COMMIT_IMAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thumbnail-px", type=int, help="what-if thumbnail size (default: the engine's own)")
    parser.add_argument("--sample-dir", type=Path, default=SAMPLE_DIR)
    args = parser.parse_args(argv)
    seconds = write_synthetic(
        args.db,
        args.images,
        batch_size=args.batch_size,
        commit_images=args.commit_every,
        seed=args.seed,
        thumbnail_px=args.thumbnail_px,
        sample_dir=args.sample_dir,
    )
    print(f"wrote {args.images} synthetic images to {args.db} in {seconds:.1f} s")


if __name__ == "__main__":
    main()
