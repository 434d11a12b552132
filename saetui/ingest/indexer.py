"""The index engine: a source's images through the truncated CLIP trunk and the SAE into a saetui database.

Three stages overlap so the model stays the bottleneck: a thread pool decodes and preprocesses images ahead
of the model (saetui.ingest.pipeline), the main thread computes one batch at a time, and a writer thread stores
finished batches while the next one computes. Batches are written in source order and committed together,
`commit_every` images per transaction (their images, codes, token errors, moments and skipped items), so a
database always holds whole commits of the run: a kill at any moment loses at most the work since the last
commit, and running the same command again continues with the items whose key no run has stored or skipped.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TextIO

import duckdb
import numpy as np
import torch

from saetui.defaults import BATCH_SIZE, COMMIT_IMAGES, decode_threads, writer_lanes
from saetui.device import to_device, to_host
from saetui.errors import DataError
from saetui.families.normalisers import Normaliser
from saetui.families.saev import APPROXIMATE as APPROXIMATE_SCALING
from saetui.families.sparse import SparseSae
from saetui.families.weights import SaeWeights
from saetui.hub import FetchedSae
from saetui.ingest.pipeline import (
    Batch,
    Codes,
    Encoder,
    PendingCodes,
    batched,
    prepare,
    prepared_in_order,
    token_positions,
    yield_to_model,
)
from saetui.ingest.sources import HfDatasetSource, ImageItem, ImageSource, ParquetSource
from saetui.ingest.sources import _split_of as split_of
from saetui.models.hooks import HookPoint
from saetui.models.preprocess import (
    PREPROCESSOR_CONFIG,
    Preprocessing,
    load_preprocessing,
    open_clip_normalisation,
)
from saetui.models.trunk import VisionTrunk, config_grid, resolve_precision
from saetui.progress import Progress
from saetui.store.writer import BatchMoments, ImageRecord, IndexWriter, SkippedItem

WRITE_QUEUE_BATCHES = 2  # finished batches waiting for the writer thread
IN_FLIGHT_PER_DEVICE = 2  # batches queued on a device: one computing while the host queues the next
SCALING_IMAGES = 2675  # saev estimated its input scaling from 2^19 activations: about 2,675 images of 196 patches


@dataclass(frozen=True)
class IndexOptions:
    """How to run the engine: batch size, device, precision, stored tokens, limit, decode threads."""

    batch_size: int = BATCH_SIZE
    device: str = "auto"
    precision: str = "fp32"
    tokens: str | None = None  # all | cls | patches; None: the token set the SAE was trained on
    keep_top: int | None = None  # keep only the largest N pairs of each token (None: every kept pair)
    scaling_images: int = SCALING_IMAGES  # images that estimate an SAE's missing input scaling (saev)
    embeddings: bool = False  # also run the rest of the tower and store each image's final embedding
    live: bool = False  # publish each commit as a shard so the database can be read while it grows
    engine: str = "local"  # local | ray (saetui.ingest.ray_engine)
    ray_address: str | None = None  # an existing Ray cluster (None: a local Ray instance)
    ray_workers: int = 1  # model actors in the Ray pool (one GPU each where there are GPUs)
    limit: int | None = None  # index only the first `limit` items of the source order
    workers: int = field(default_factory=decode_threads)
    writers: int = field(default_factory=writer_lanes)  # commit lanes (saetui.store.commits)
    overwrite: bool = False  # delete the database first
    commit_every: int = COMMIT_IMAGES  # images per write transaction (a kill loses at most these)


@dataclass
class IndexSummary:
    """What one index call did."""

    db_path: Path
    source: str
    considered: int  # source items within --limit
    already_done: int  # of those, stored or skipped by an earlier run
    missing: int = 0  # items an earlier run stored or skipped that the source no longer has
    indexed: int = 0
    skipped: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    tokens_stored: int = 0
    pairs_stored: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def lines(self) -> list[str]:
        """The summary printed at the end of a run, one fact per line."""
        rate = self.indexed / self.seconds if self.seconds > 0 else 0.0
        done = "interrupted" if self.interrupted else "done"
        lines = [
            f"index {done}: {_count(self.indexed, 'image')} indexed, {self.skipped} skipped, "
            f"{self.tokens_stored:,} tokens ({self.pairs_stored:,} pairs) stored "
            f"in {self.seconds:.1f} s ({rate:.1f} img/s) -> {self.db_path}"
        ]
        if self.already_done or self.missing:
            lines.append(
                f"  source: {self.considered - self.already_done} new, {self.already_done} already done, "
                f"{self.missing} missing (stored earlier, no longer in the source; their rows stay)"
            )
        for reason, count in self.skip_reasons.most_common():
            lines.append(f"  skipped {count}: {reason}")
        if self.interrupted:
            lines.append("  whole batches were kept: run the same command again to continue")
        return lines


def _count(n: int, noun: str) -> str:
    """n and the noun, plural unless n is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def reason_kind(reason: str) -> str:
    """The kind of a skip reason, for counting: its text before any ':', '(' or ' ->' detail."""
    return re.split(r":|\(| ->", reason, maxsplit=1)[0].strip() or reason


def source_key(source: ImageSource) -> str:
    """The identity of a source in the runs table: its absolute path or hf: name, and the split it reads.

    A run over the same key with the same settings is continued; another split of the same dataset or
    Parquet folder is another source (its own run and image ids).
    """
    spec = source.spec
    if isinstance(source, HfDatasetSource):
        name = spec if spec.startswith("hf:") else str(Path(spec).expanduser().absolute())
        return f"{name} (split {source.split})"
    base = Path(spec).expanduser().absolute()
    if isinstance(source, ParquetSource) and base.is_dir():
        splits = sorted({split_of(file.relative_to(base)) or "" for file in source.files} - {""})
        if splits:
            return f"{base} (split {', '.join(splits)})"
    return str(base)


def preprocessing_warning(model_dir: Path, prep: Preprocessing) -> str | None:
    """A warning when preprocessor_config.json normalises differently from open_clip's own config."""
    if prep.source != PREPROCESSOR_CONFIG:
        return None
    mean, std = open_clip_normalisation(model_dir)
    if np.allclose(mean, prep.mean, rtol=0, atol=1e-7) and np.allclose(std, prep.std, rtol=0, atol=1e-7):
        return None

    def show(values: tuple[float, ...]) -> str:
        """A mean or std triple, compactly."""
        return "(" + ", ".join(f"{v:g}" for v in values) + ")"

    return (
        f"{PREPROCESSOR_CONFIG} normalises with mean {show(prep.mean)} std {show(prep.std)}, open_clip's "
        f"config with mean {show(mean)} std {show(std)}: using {PREPROCESSOR_CONFIG}'s (what the SAE was "
        "trained on)"
    )


def run_settings(
    fetched: FetchedSae,
    weights: SaeWeights,
    sae: SparseSae,
    trunk_grid: tuple[int, int],
    prep: Preprocessing,
    options: IndexOptions,
    tokens: str,
    device: str,
    scaling: Normaliser | None = None,
) -> dict[str, object]:
    """The runs-table settings of this run: model, hook, SAE and its encode rule, preprocessing, device, versions."""
    spec = fetched.spec
    pooled = spec.hook == "pooled"
    normaliser = scaling or weights.normaliser
    return {
        "sae_family": weights.family,
        "model_id": spec.model,
        "pretrained": spec.pretrained,
        "model_revision": fetched.model_revision,
        "layer": spec.layer,
        "hook": spec.hook,
        "grid_rows": 0 if pooled else trunk_grid[0],
        "grid_cols": 0 if pooled else trunk_grid[1],
        "sae_name": spec.name,
        "sae_repo": spec.repo_id,
        "sae_file": fetched.checkpoint_file,
        "sae_revision": fetched.sae_revision,
        "sae_checkpoint": fetched.checkpoint_tokens,
        "d_in": weights.d_in,
        "n_features": weights.n_features,
        "k": sae.max_pairs or 0,
        "activation": weights.activation.describe(),
        "normalisation": normaliser.describe(),
        "keep_top": options.keep_top,
        "input_mean": None if scaling is None else scaling.mean.cpu().double().tolist(),
        "input_scale": None if scaling is None else scaling.scale,
        "approximate": APPROXIMATE_SCALING if scaling is not None else None,
        "tokens": tokens,
        "precision": options.precision,
        "device": device,
        "batch_size": options.batch_size,
        "mean": list(prep.mean),
        "std": list(prep.std),
        "preprocess_source": prep.source,
        "preprocess_reference": prep.reference,
        "image_size": prep.crop,
        "standardise": False,
        "embeddings": options.embeddings,
        "torch_version": torch.__version__,
        "open_clip_version": version("open_clip_torch"),
    }


class BatchWriter:
    """A thread that writes finished batches in order through an IndexWriter, a bounded queue ahead of it."""

    def __init__(self, writer: IndexWriter, depth: int = WRITE_QUEUE_BATCHES) -> None:
        """Start the thread."""
        self.writer = writer
        self._queue: queue.Queue[tuple[list[ImageRecord], Codes | None, list[SkippedItem]] | None] = queue.Queue(
            maxsize=max(1, depth)
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="saetui-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Write queued batches until the end marker; on failure keep the error and drop what follows."""
        yield_to_model()
        while (job := self._queue.get()) is not None:
            if self._error is not None:
                continue
            images, codes, skipped = job
            try:
                self._write(images, codes, skipped)
            except BaseException as error:  # handed to the main thread, which raises it
                self._error = error

    def _write(self, images: list[ImageRecord], codes: Codes | None, skipped: list[SkippedItem]) -> None:
        """One batch in one transaction."""
        if codes is None:
            features, values = np.zeros((0, 0, 0), np.int32), np.zeros((0, 0, 0), np.float32)
            errors = np.zeros((0, 0), np.float32)
            self.writer.write_batch([], np.zeros(0, np.int16), features, values, errors, errors, None, skipped)
            return
        moments = BatchMoments(tokens=codes.count, sum_sq=codes.sum_sq, sum_x=codes.sum_x)
        self.writer.write_batch(
            images, codes.tokens, codes.features, codes.values, codes.sse, codes.total_ss, moments, skipped,
            codes.embeddings,
        )  # fmt: skip

    def raise_error(self) -> None:
        """Raise the writer thread's error, if it had one."""
        if self._error is not None:
            raise self._error

    def put(self, images: list[ImageRecord], codes: Codes | None, skipped: list[SkippedItem]) -> None:
        """Queue one batch, waiting while the queue is full; raises the writer thread's error if it failed."""
        while True:
            self.raise_error()
            try:
                self._queue.put((images, codes, skipped), timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Write what is queued, stop the thread and raise its error, if any.

        A KeyboardInterrupt while waiting drops the batches still queued, waits for the one being written
        (a single transaction) and propagates, so the connection is never closed under a running write.
        """
        try:
            self._queue.put(None)
            self._thread.join()
        except KeyboardInterrupt:
            self._drop_queued()
            self._thread.join()
            raise
        self.raise_error()

    def _drop_queued(self) -> None:
        """Empty the queue, keeping the end marker so the thread stops after its current write."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)


def _records(batch: Batch, first_id: int) -> tuple[list[ImageRecord], list[SkippedItem]]:
    """The images and skipped rows of a batch; its images get the ids first_id, first_id + 1, ..."""
    images = [
        ImageRecord(
            image_id=first_id + number,
            path=image.item.path,
            label=image.item.label,
            width=image.width,
            height=image.height,
            content_hash=image.content_hash,
            source_row=image.item.source_row,
            thumbnail=image.thumbnail,
            key=image.item.key,
        )
        for number, image in enumerate(batch.images)
    ]
    skipped = [SkippedItem(s.item.path, s.reason, s.item.source_row, s.item.key) for s in batch.skipped]
    return images, skipped


class IndexInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run after its computed batches were written; carries the summary so far."""

    def __init__(self, summary: IndexSummary) -> None:
        """Keep the summary of what was done before the interrupt."""
        super().__init__("interrupted")
        self.summary = summary


@dataclass(frozen=True)
class ResumePlan:
    """Which source rows a run indexes, from the item keys earlier runs stored or skipped."""

    considered: int  # source items within the limit
    pending: frozenset[int]  # rows within the limit whose key no run has stored or skipped
    missing: int  # keys done earlier that the source no longer has

    @property
    def already_done(self) -> int:
        """Rows within the limit that an earlier run stored or skipped."""
        return self.considered - len(self.pending)


def plan_resume(source: ImageSource, limit: int | None, done: frozenset[str]) -> ResumePlan:
    """Match the source's item keys (no image data read) against the done keys: new, done and missing items."""
    keys = list(source.keys())
    considered = len(keys) if limit is None else min(len(keys), limit)
    pending = frozenset(row for row, key in enumerate(keys[:considered]) if key not in done)
    return ResumePlan(considered, pending, len(done - set(keys)))


def pending_items(source: ImageSource, plan: ResumePlan) -> Iterator[ImageItem]:
    """The planned rows' items in source order; reading starts at the first of them (sources skip rows cheaply)."""
    if not plan.pending:
        return
    start, stop = min(plan.pending), max(plan.pending)
    for item in source.items(start):
        if item.source_row > stop:
            return
        if item.source_row in plan.pending:
            yield item


def _say(log: TextIO, message: str) -> None:
    """One line on the log stream (stderr)."""
    log.write(f"saetui: {message}\n")
    log.flush()


def index_images(
    source: ImageSource,
    fetched: FetchedSae,
    db_path: str | os.PathLike[str],
    options: IndexOptions | None = None,
    log: TextIO | None = None,
) -> IndexSummary:
    """Index the source's images with a fetched SAE into the database at db_path; returns what was done.

    Ctrl-C stops after the batch being computed: the batches already computed are written, the database is
    closed and IndexInterrupted (a KeyboardInterrupt holding the summary) is raised.
    """
    from saetui.device import resolve_devices
    from saetui.families.loading import load_sae
    from saetui.models.hooks import check_token_set

    options = options or IndexOptions()
    log = log if log is not None else sys.stderr
    started = time.perf_counter()
    db = Path(db_path)
    spec = fetched.spec
    tokens = check_token_set(options.tokens or spec.tokens, spec.hook)
    weights = load_sae(spec, fetched.checkpoint_path, fetched.config_path)
    prep = load_preprocessing(fetched.model_dir, spec.preprocessing)
    warning = preprocessing_warning(fetched.model_dir, prep)
    if warning:
        _say(log, f"warning: {warning}")
    devices = resolve_devices(options.device)
    device = devices[0]  # the first replica also estimates saev's scaling
    dtype = resolve_precision(options.precision)
    key = source_key(source)
    scaling = None if not weights.needs_scaling or options.overwrite else _earlier_scaling(db)
    trunk = None  # with --engine ray only the actors run the model (the driver needs it for saev's estimate only)
    if options.engine != "ray" or (weights.needs_scaling and scaling is None):
        trunk = VisionTrunk.from_dir(
            fetched.model_dir, spec.layer, device, options.precision, site=spec.hook, full=options.embeddings
        )
    if weights.needs_scaling:
        if scaling is None:
            assert trunk is not None
            _say(log, f"estimating {spec.name}'s input scaling (x - mu) / s from up to {options.scaling_images} images")
            scaling = estimate_scaling(source, prep, trunk, tokens, options)
        _say(log, f"warning: {APPROXIMATE_SCALING} (s = {scaling.scale:.6g}); runs.approximate says so")
    sae = weights.sparse(device=device, dtype=dtype, keep_top=options.keep_top, normaliser=scaling)
    grid = trunk.grid if trunk is not None else config_grid(fetched.model_dir)
    placed = ",".join(str(d) for d in devices)
    settings = run_settings(fetched, weights, sae, grid, prep, options, tokens, placed, scaling)
    encoders = []
    if trunk is not None and options.engine != "ray":
        encoders.append(Encoder(trunk, sae, tokens, options.embeddings))
        for other in devices[1:]:  # one more replica of the truncated model and the SAE per listed device
            replica = VisionTrunk.from_dir(
                fetched.model_dir, spec.layer, other, options.precision, site=spec.hook, full=options.embeddings
            )
            copy = weights.sparse(device=other, dtype=dtype, keep_top=options.keep_top, normaliser=scaling)
            encoders.append(Encoder(replica, copy, tokens, options.embeddings))
    if options.engine == "ray":
        trunk = None  # free the estimate's model before the actors load theirs
    del weights
    writer = IndexWriter.open(
        db,
        settings,
        source=key,
        source_items=len(source),
        overwrite=options.overwrite,
        commit_images=options.commit_every,
        live=options.live,
        lanes=options.writers,
    )
    try:
        plan = plan_resume(source, options.limit, writer.done_keys)
        summary = IndexSummary(
            db_path=db, source=key, considered=plan.considered, already_done=plan.already_done, missing=plan.missing
        )
        verb = "continuing" if writer.resumed else "starting"
        _say(
            log,
            f"{verb} run {writer.run_id}: {len(plan.pending)} of {plan.considered} items to index from "
            f"{source.describe()} with {spec.name} ({fetched.checkpoint_file}, {spec.family}, "
            f"{HookPoint(spec.layer, spec.hook).name()}, tokens {tokens}) on {placed} {options.precision}, "
            f"batch {options.batch_size}",
        )
        if options.engine == "ray":
            _run_ray(list(pending_items(source, plan)), fetched, options, tokens, scaling, prep, writer, summary, log)
        else:
            _run(pending_items(source, plan), options, writer, encoders, prep, summary, log)
        if not summary.interrupted:
            writer.finish_run()
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - started
    if summary.interrupted:
        raise IndexInterrupted(summary)
    return summary


def _run_ray(
    pending: list[ImageItem],
    fetched: FetchedSae,
    options: IndexOptions,
    tokens: str,
    scaling: Normaliser | None,
    prep: Preprocessing,
    writer: IndexWriter,
    summary: IndexSummary,
    log: TextIO,
) -> None:
    """The same run on Ray Data (saetui.ingest.ray_engine); counts what was done in summary."""
    from saetui.ingest.ray_engine import run_on_ray

    actor = {
        "device": options.device,
        "precision": options.precision,
        "embeddings": options.embeddings,
        "keep_top": options.keep_top,
        "tokens": tokens,
    }
    indexed, skipped, stored, pairs = run_on_ray(
        pending,
        fetched,
        actor,
        scaling,
        prep,
        writer,
        options.batch_size,
        options.ray_workers,
        options.ray_address,
        log,
    )
    summary.indexed, summary.skipped, summary.tokens_stored, summary.pairs_stored = indexed, skipped, stored, pairs


def stored_scaling(con: duckdb.DuckDBPyConnection) -> Normaliser | None:
    """The input scaling a run of this database estimated (saev; every run's codes then share it), if any."""
    columns = {row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE runs)").fetchall()}
    if "input_scale" not in columns:
        return None
    rows = con.execute(
        "SELECT input_mean, input_scale FROM runs WHERE input_scale IS NOT NULL ORDER BY run_id LIMIT 1"
    ).fetchall()
    if not rows:
        return None
    return Normaliser("affine", torch.tensor(rows[0][0], dtype=torch.float32), float(rows[0][1]))


def _earlier_scaling(db: Path) -> Normaliser | None:
    """stored_scaling of the database file, None when there is none yet."""
    if not db.is_file():
        return None
    from saetui.store.connection import connect

    con = connect(db)
    try:
        return stored_scaling(con)
    finally:
        con.close()


def estimate_scaling(
    source: ImageSource, prep: Preprocessing, trunk: VisionTrunk, tokens: str, options: IndexOptions
) -> Normaliser:
    """saev's input scaling from the first images of the source: mu = mean x, s = mean ||x - mu|| / sqrt(d).

    Two passes over the same images (the mean first, then the distances to it), accumulated in float64.
    """
    positions = torch.as_tensor(token_positions(tokens, trunk.n_tokens).astype(np.int64))

    def activations() -> Iterator[torch.Tensor]:
        """The stored-token activations [T, d] of each batch of the first scaling_images items."""
        items = (item for _, item in zip(range(options.scaling_images), source.items(0), strict=False))
        prepared = prepared_in_order(items, lambda item: prepare(item, prep), options.workers, 2 * options.batch_size)
        try:
            for batch in batched(prepared, options.batch_size):
                if batch.images:
                    x = trunk(to_device(batch.pixels(), trunk.device))
                    yield to_host(x[:, to_device(positions, trunk.device)].reshape(-1, x.shape[-1])).astype(np.float64)
        finally:
            prepared.close()

    total, count = None, 0
    for x in activations():
        total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
        count += x.shape[0]
    if total is None:
        raise DataError("no image of the source could be decoded to estimate the input scaling", "check the source")
    mean = total / count
    distances = sum(float(np.linalg.norm(x - mean, axis=1).sum()) for x in activations())
    scale = distances / count / float(mean.shape[0]) ** 0.5
    return Normaliser("affine", torch.from_numpy(mean).float(), scale)


def _taken(batch: Batch, work: Future[PendingCodes] | PendingCodes | None) -> tuple[Batch, Codes | None]:
    """A batch with its codes, waiting for the device (and the lane thread that queued it) to finish them."""
    if work is None:
        return batch, None
    pending = work.result() if isinstance(work, Future) else work
    return batch, pending.result()


def _run(
    pending: Iterator[ImageItem],
    options: IndexOptions,
    writer: IndexWriter,
    encoders: list[Encoder],
    prep: Preprocessing,
    summary: IndexSummary,
    log: TextIO,
) -> None:
    """Drive the stages over the pending items and count what was done in summary.

    Batch i goes to encoder i mod n (one per device; several each queue theirs from a thread of their own), each
    device has IN_FLIGHT_PER_DEVICE batches queued so a GPU never waits for the host between two, and the results
    are written in batch order, so the database is the same whatever the devices.
    """
    progress = Progress(summary.considered - summary.already_done, "index", stream=log)
    lookahead = max(2 * options.batch_size, 4 * options.workers)
    prepared = prepared_in_order(pending, lambda item: prepare(item, prep), options.workers, lookahead)
    batches = batched(prepared, options.batch_size)
    background = BatchWriter(writer)
    next_id = writer.next_image_id
    several = len(encoders) > 1  # one thread per device; a single device is driven from this thread, as always
    lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"encode{i}") for i in range(len(encoders))] if several else []

    def start(encoder: Encoder, batch: Batch) -> PendingCodes:
        """Stage the batch's pixels for the encoder's device and queue its work there."""
        return encoder.start(encoder.stage(batch))

    def encoded() -> Iterator[tuple[Batch, Codes | None]]:
        """Batches with their codes, in batch order, IN_FLIGHT_PER_DEVICE batches queued on each device."""
        in_flight: deque[tuple[Batch, Future[PendingCodes] | PendingCodes | None]] = deque()
        try:
            for number, batch in enumerate(batches):
                lane = number % len(encoders)
                work: Future[PendingCodes] | PendingCodes | None = None
                if batch.images:
                    work = lanes[lane].submit(start, encoders[lane], batch) if several else start(encoders[lane], batch)
                in_flight.append((batch, work))
                if len(in_flight) >= IN_FLIGHT_PER_DEVICE * len(encoders):
                    yield _taken(*in_flight.popleft())
        except KeyboardInterrupt:  # the batches already queued are finished and written, then the run stops
            while in_flight:
                yield _taken(*in_flight.popleft())
            raise
        while in_flight:
            yield _taken(*in_flight.popleft())

    try:
        for batch, codes in encoded():
            images, skipped = _records(batch, next_id)
            next_id += len(images)
            background.put(images, codes, skipped)
            summary.indexed += len(images)
            summary.skipped += len(skipped)
            summary.skip_reasons.update(reason_kind(s.reason) for s in skipped)
            if codes is not None:
                summary.tokens_stored += codes.count
                summary.pairs_stored += codes.pairs
            progress.advance(batch.n_items, f"skipped {summary.skipped}" if summary.skipped else "")
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        for lane in lanes:
            lane.shutdown(wait=True, cancel_futures=True)
        batches.close()
        prepared.close()
        progress.close()
        background.close()
