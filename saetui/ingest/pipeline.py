"""The stages of `saetui index`: decode + preprocess in a thread pool, batching in source order, and compute.

Decoding runs off the main thread: each item is read, hashed, decoded, cropped exactly as the model sees it,
normalised, and thumbnailed by a worker (PIL and hashlib release the GIL for the heavy parts), with a bounded
look-ahead so memory stays flat whatever the source size. Results come back in source order and are grouped
into batches of ``batch_size`` decoded images, each carrying the skipped items met among them, so a batch
always covers one contiguous stretch of the source. The compute stage runs the truncated forward, keeps the
chosen tokens, encodes them with the SAE, decodes the kept latents sparsely and measures each token's error.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from saetui.device import HostCopies, staging_buffer, to_device, upload
from saetui.families.sparse import SparseSae, reconstruction_error
from saetui.ingest.decoding import SkippedImage, content_hash, decode_rgb
from saetui.ingest.sources import ImageItem
from saetui.models.hooks import TOKEN_SETS
from saetui.models.preprocess import Preprocessing, input_crop, to_pixels
from saetui.models.trunk import VisionTrunk

# Thumbnails: the model's input crop box-filtered to 96 px, optimised JPEG (about 2.9 KB on ImageNet photos,
# against 4.1 KB at 112 px; the database's whole budget is 48 KB per image).
THUMBNAIL_SIDE = 96
THUMBNAIL_QUALITY = 75  # with 96 px this keeps a fully indexed image under 48 KB (bench/storage.py)
HELPER_NICENESS = 10  # added to the nice value of decode and writer threads


@dataclass(frozen=True)
class PreparedImage:
    """A decoded image ready for the model: its pixels, and what the images table records about it."""

    item: ImageItem
    content_hash: str  # sha256 of the file bytes
    width: int  # size of the decoded original
    height: int
    pixels: np.ndarray = field(repr=False)  # float32 [3, crop, crop], normalised
    thumbnail: bytes = field(repr=False)  # JPEG of the input crop, downsized


@dataclass(frozen=True)
class SkippedInput:
    """An item that could not be indexed and the reason recorded in the skipped table."""

    item: ImageItem
    reason: str


Prepared = PreparedImage | SkippedInput


@dataclass
class Batch:
    """A contiguous stretch of source items: the decoded images among them and the skipped ones."""

    images: list[PreparedImage]
    skipped: list[SkippedInput]

    @property
    def n_items(self) -> int:
        """How many source items the batch covers."""
        return len(self.images) + len(self.skipped)

    def pixels(self, out: np.ndarray | None = None) -> np.ndarray:
        """float32 [B, 3, crop, crop] pixels of the batch's images (stacked into out, if given)."""
        return np.stack([image.pixels for image in self.images], out=out)


@dataclass(frozen=True)
class Codes:
    """The SAE codes and reconstruction errors of one batch, on the CPU, ready to store.

    Arrays are indexed [image, stored token, ...]; ``tokens`` maps a stored token to its position (0 = CLS,
    1.. = patches row-major). The moments (over every stored token of the batch) give the dataset mean and
    total variance that saev's normalised MSE divides by.
    """

    tokens: np.ndarray  # int16 [T] token positions
    values: np.ndarray  # float32 [B, T, K], kept pairs descending per token, unused slots 0
    features: np.ndarray  # int32 [B, T, K], unused slots -1
    sse: np.ndarray  # float32 [B, T]: sum over dims of (x - recon)^2
    total_ss: np.ndarray  # float32 [B, T]: sum over dims of (x_d - mean over dims of x)^2
    sum_x: np.ndarray  # float64 [d]: sum of x over the batch's stored tokens (summed in float32)
    sum_sq: float  # sum of ||x||^2 over them
    count: int  # number of stored tokens in the batch
    embeddings: np.ndarray | None = None  # float32 [B, E] normalised final image embeddings (index --embeddings)

    @property
    def pairs(self) -> int:
        """Number of kept (feature, value) pairs in the batch."""
        return int((self.features >= 0).sum())


def yield_to_model() -> None:
    """Lower the calling thread's CPU priority so the model's threads win when cores are scarce.

    Decoding and writing need a few percent of the CPU time the model needs; at equal priority they
    preempt torch's intra-op threads in the middle of parallel regions and every other thread waits at the
    next barrier. Linux gives each thread its own nice value; elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + HELPER_NICENESS))
    except OSError:
        return


def _short(error: BaseException) -> str:
    """An exception as a short one-line reason with its type."""
    text = " ".join(str(error).split())
    text = text[:160] + "..." if len(text) > 160 else text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def thumbnail_jpeg(crop: Image.Image) -> bytes:
    """JPEG bytes of the input crop, box-filtered to THUMBNAIL_SIDE pixels, at THUMBNAIL_QUALITY."""
    buffer = io.BytesIO()
    small = crop.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
    small.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


def prepare(item: ImageItem, prep: Preprocessing) -> Prepared:
    """Read, hash, decode, crop, normalise and thumbnail one item; any failure becomes a SkippedInput."""
    try:
        data = item.read()
        digest = content_hash(data)
        image = decode_rgb(data)
        crop = input_crop(image, prep)
        return PreparedImage(
            item=item,
            content_hash=digest,
            width=image.width,
            height=image.height,
            pixels=to_pixels(crop, prep),
            thumbnail=thumbnail_jpeg(crop),
        )
    except SkippedImage as skip:
        return SkippedInput(item, skip.reason)
    except Exception as error:  # bad input never stops a run: any per-image failure is recorded as a skip
        return SkippedInput(item, f"failed: {_short(error)}")


def prepared_in_order(
    items: Iterable[ImageItem], work: Callable[[ImageItem], Prepared], workers: int, lookahead: int
) -> Iterator[Prepared]:
    """work(item) for every item on a thread pool, yielded in item order with at most `lookahead` in flight."""
    pool = ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="saetui-decode", initializer=yield_to_model
    )
    pending: deque[Future[Prepared]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= max(1, lookahead):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def batched(prepared: Iterable[Prepared], batch_size: int) -> Iterator[Batch]:
    """Group prepared items in order into batches of batch_size images plus the skips met among them."""
    batch = Batch([], [])
    for result in prepared:
        if isinstance(result, SkippedInput):
            batch.skipped.append(result)
            continue
        batch.images.append(result)
        if len(batch.images) >= batch_size:
            yield batch
            batch = Batch([], [])
    if batch.n_items:
        yield batch


def token_positions(tokens: str, n_tokens: int) -> np.ndarray:
    """The token positions stored for --tokens all|cls|patches (0 = CLS, 1..n_tokens-1 = patches)."""
    if tokens == "all":
        return np.arange(n_tokens, dtype=np.int16)
    if tokens == "cls":
        return np.zeros(1, dtype=np.int16)
    if tokens == "patches":
        return np.arange(1, n_tokens, dtype=np.int16)
    raise ValueError(f"unknown token set {tokens!r}: use one of {', '.join(TOKEN_SETS)}")


class Encoder:
    """The compute stage: truncated forward, token selection, SAE encode, sparse decode and token errors."""

    def __init__(self, trunk: VisionTrunk, sae: SparseSae, tokens: str, embeddings: bool = False) -> None:
        """Hold the model trunk and the SAE (on the same device), the positions to store, and whether to also
        finish each image's forward pass to its final embedding (the trunk must then be the full tower)."""
        self.trunk = trunk
        self.sae = sae
        self.embeddings = embeddings
        self.tokens = token_positions(tokens, trunk.n_tokens)
        self._select = None if tokens == "all" else to_device(self.tokens.astype(np.int64), trunk.device)

    @torch.no_grad()
    def activations(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(float32 [B * T, d] hook vectors of the stored tokens, image-major; normalised embeddings [B, E] or None)."""
        hook, residual = self.trunk.hook_and_residual(pixels)
        embeddings = None
        if self.embeddings:
            final = hook[:, 0] if residual is None else self.trunk.finish(residual)
            embeddings = torch.nn.functional.normalize(final.float(), dim=-1)
        x = hook.float()
        if self._select is not None:
            x = x.index_select(1, self._select)
        return x.reshape(-1, x.shape[-1]), embeddings

    def stage(self, batch: Batch) -> torch.Tensor:
        """The batch's pixels in a host buffer for this encoder's device (page-locked on a GPU)."""
        first = batch.images[0].pixels
        buffer = staging_buffer((len(batch.images), *first.shape), self.trunk.device)
        batch.pixels(out=buffer.numpy())
        return buffer

    @torch.no_grad()
    def start(self, pixels: np.ndarray | torch.Tensor) -> PendingCodes:
        """Queue one batch of pixels [B, 3, H, W] (best a `stage` buffer): forward, encode, errors and the copies
        back; on a GPU this returns before the device has finished, on the CPU once everything is done."""
        n_images = pixels.shape[0]
        device = self.trunk.device
        on_device = upload(pixels, device) if isinstance(pixels, torch.Tensor) else to_device(pixels, device)
        x, embeddings = self.activations(on_device)
        values, indices = self.sae.encode(x)
        sse, total_ss = reconstruction_error(x, self.sae.reconstruct(x, values, indices))
        results = {
            "values": values,
            "features": indices.to(torch.int32),
            "sse": sse,
            "total_ss": total_ss,
            "sum_x": x.sum(dim=0),  # float32 tree sums: MPS has no float64
            "sum_sq": x.pow(2).sum(),
        }
        if embeddings is not None:
            results["embeddings"] = embeddings
        return PendingCodes(HostCopies(results, device), self.tokens, n_images, int(x.shape[0]))

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> Codes:
        """Codes of one batch of pixels [B, 3, H, W], waiting for them."""
        return self.start(pixels).result()


@dataclass(frozen=True)
class PendingCodes:
    """A batch the encoder has queued: its results' copies to the host, and what shapes them into Codes."""

    copies: HostCopies
    tokens: np.ndarray
    n_images: int
    count: int  # stored tokens of the batch

    def result(self) -> Codes:
        """Wait for the copies and return the batch's Codes."""
        arrays = self.copies.arrays()
        shape = (self.n_images, len(self.tokens))
        embeddings = arrays.get("embeddings")
        return Codes(
            tokens=self.tokens,
            values=arrays["values"].reshape(*shape, -1),
            features=arrays["features"].reshape(*shape, -1),
            sse=arrays["sse"].reshape(shape),
            total_ss=arrays["total_ss"].reshape(shape),
            sum_x=arrays["sum_x"].astype(np.float64),
            sum_sq=float(arrays["sum_sq"]),
            count=self.count,
            embeddings=embeddings,
        )
