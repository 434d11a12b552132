"""`evaluate`: one pass of a labelled image source through CLIP with the SAE spliced in, and every eval metric.

Images are decoded and preprocessed by the index engine's own stage (saetui.ingest.pipeline: a thread pool ahead of
the model, the exact crop and normalisation `saetui index` uses). Each batch then runs once through the full
open_clip model with the splice hook (saetui.evaluate.splice) fanning it out into the three conditions; the
hooked block's activations feed the reconstruction metrics in raw and batch-standardised mode. Scoring against
the label prompts happens at the end, once the label set is known.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TextIO

import numpy as np
import torch

from saetui.defaults import BATCH_SIZE, decode_threads
from saetui.errors import DataError, UsageError
from saetui.evaluate.alignment import Alignment, neuron_alignment
from saetui.evaluate.downstream import LABEL_SETS, Downstream, DownstreamResult, resolve_label_set
from saetui.evaluate.reconstruction import MODES, ReconstructionResult, ReconstructionTotals, readme_figures
from saetui.evaluate.splice import SaeSplice, hooked_block
from saetui.hub import FetchedSae
from saetui.ingest.indexer import preprocessing_warning, reason_kind
from saetui.ingest.pipeline import batched, prepare, prepared_in_order
from saetui.ingest.sources import ImageSource
from saetui.progress import Progress
from saetui.stats.options import SINGLE_TEMPLATE

PROMPT = SINGLE_TEMPLATE  # "A photo of a {label}."


@dataclass(frozen=True)
class EvalOptions:
    """How to run an evaluation: batch size, device, precision, limit, decode threads and label set."""

    batch_size: int = BATCH_SIZE  # images per forward pass, per loss batch and per standardisation batch
    device: str = "auto"
    precision: str = "fp32"  # fp32, or bf16 (the vision tower and SAE under torch.autocast)
    limit: int | None = None  # evaluate only the first `limit` items of the source
    workers: int = field(default_factory=decode_threads)
    label_set: str = "auto"  # auto | dataset | imagenet (see saetui.evaluate.downstream)

    def __post_init__(self) -> None:
        """Reject values that cannot work, with the flag to fix."""
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}", "pass e.g. --batch-size 32")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, got {self.limit}", "leave it out to evaluate everything")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}", "pass e.g. --workers 4")
        if self.label_set not in LABEL_SETS:
            raise UsageError(f"unknown label set '{self.label_set}'", f"use one of {', '.join(LABEL_SETS)}")


@dataclass(frozen=True)
class EvalReport:
    """Everything one evaluation measured, and what it ran on."""

    sae: dict[str, object]  # name, repo, file, checkpoint, layer, d_in, n_features, k
    source: str
    settings: dict[str, object]  # batch_size, precision, device, preprocessing
    images: int  # images evaluated
    skipped: int  # items that could not be decoded
    skip_reasons: dict[str, int]
    downstream: DownstreamResult
    reconstruction: dict[str, ReconstructionResult]  # per mode (MODES)
    reference: dict[str, float] | None  # the hub README's figures for a built-in CLIP-Scope SAE
    alignment: Alignment
    seconds: float


def _say(log: TextIO, message: str) -> None:
    """One line on the log stream (stderr)."""
    log.write(f"saetui: {message}\n")
    log.flush()


def evaluate(
    source: ImageSource,
    fetched: FetchedSae,
    options: EvalOptions | None = None,
    cache: str | None = None,
    log: TextIO | None = None,
) -> EvalReport:
    """Evaluate the fetched SAE on the source's images (see the module docstring); progress goes to log."""
    from saetui.device import resolve_device, to_device
    from saetui.families.loading import load_sae
    from saetui.families.sparse import standardise_batch
    from saetui.imagenet import class_names
    from saetui.models.preprocess import load_preprocessing
    from saetui.models.trunk import load_clip, resolve_precision
    from saetui.paths import cache_dir, file_identity
    from saetui.stats.lens import logit_scale, text_embeddings

    options = options or EvalOptions()
    log = log if log is not None else sys.stderr
    started = time.perf_counter()
    dtype = resolve_precision(options.precision)
    device = resolve_device(options.device)
    spec = fetched.spec
    if spec.hook != "resid_post" or spec.tokens != "all":
        raise UsageError(
            f"{spec.name} reads {spec.hook} ({spec.tokens} tokens): eval splices SAEs on all tokens of a block output",
            "evaluate an SAE on resid_post of all tokens (e.g. CLIP-Scope's, ViT-Prisma's all-patch SAEs)",
        )
    checkpoint = load_sae(spec, fetched.checkpoint_path, fetched.config_path)
    if checkpoint.needs_scaling:
        raise UsageError(f"{spec.name} needs an input scaling its file lacks", "index it instead: saetui index")
    prep = load_preprocessing(fetched.model_dir, spec.preprocessing)
    warning = preprocessing_warning(fetched.model_dir, prep)
    if warning:
        _say(log, f"warning: {warning}")
    model = load_clip(fetched.model_dir, device)
    layer = fetched.spec.layer
    block = hooked_block(model, layer)
    width = int(model.visual.transformer.width)
    if checkpoint.d_in != width:
        raise DataError(
            f"{fetched.spec.name}: the SAE reads d_in = {checkpoint.d_in} but the vision tower has width {width}",
            "the SAE belongs to another model: fix the model of the SAE entry",
        )
    alignment = neuron_alignment(checkpoint.enc.to(device), block.mlp.c_proj.weight)
    sae = checkpoint.sparse(device=device)
    n_features, d_in, k = checkpoint.n_features, checkpoint.d_in, checkpoint.k
    del checkpoint

    total = len(source) if options.limit is None else min(len(source), options.limit)
    _say(
        log,
        f"evaluating {fetched.spec.name} ({fetched.checkpoint_file}) at block {layer} on {total} items of "
        f"{source.describe()} on {device} {options.precision}, batch {options.batch_size}",
    )
    imagenet_names = class_names()
    downstream = Downstream()
    totals = {mode: ReconstructionTotals(d_in, n_features) for mode in MODES}
    skip_reasons: Counter[str] = Counter()
    images = 0
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    )
    progress = Progress(total, "eval", stream=log)
    lookahead = max(2 * options.batch_size, 4 * options.workers)
    items = islice(source.items(), options.limit)
    prepared = prepared_in_order(items, lambda item: prepare(item, prep), options.workers, lookahead)
    batches = batched(prepared, options.batch_size)
    try:
        with SaeSplice(model, layer, sae) as splice, torch.no_grad(), autocast:
            for batch in batches:
                skip_reasons.update(reason_kind(skipped.reason) for skipped in batch.skipped)
                if batch.images:
                    labels = [image.item.label for image in batch.images]
                    if options.label_set == "imagenet":
                        resolve_label_set("imagenet", {label for label in labels if label}, imagenet_names)
                    pixels = to_device(batch.pixels(), device)
                    downstream.add(model.encode_image(pixels, normalize=True), labels)
                    x, recon, values, indices = splice.take_batch()
                    totals["raw"].add(x, recon, values, indices)
                    z = standardise_batch(x)
                    values, indices = sae.encode(z)
                    totals["standardised"].add(z, sae.reconstruct(z, values, indices), values, indices)
                    images += len(batch.images)
                progress.advance(batch.n_items, f"skipped {skip_reasons.total()}" if skip_reasons else "")
    finally:
        batches.close()
        prepared.close()
        progress.close()
    if images == 0:
        raise DataError(f"no image of {source.describe()} could be decoded", "check the source")
    label_set, labels = resolve_label_set(options.label_set, downstream.seen_labels(), imagenet_names)
    model_key = file_identity(fetched.model_weights)

    def prompts(names: Sequence[str]) -> np.ndarray:
        """Normalised text embeddings of the label prompts (cached in the saetui cache)."""
        return text_embeddings(model, fetched.model_dir, names, [PROMPT], cache_dir(cache), model_key)

    scored = downstream.score(label_set, labels, prompts, logit_scale(model))
    spec = fetched.spec
    return EvalReport(
        sae={
            "name": spec.name,
            "repo": spec.repo_id,
            "file": fetched.checkpoint_file,
            "checkpoint": fetched.checkpoint_tokens,
            "layer": layer,
            "d_in": d_in,
            "n_features": n_features,
            "k": k,
        },
        source=source.describe(),
        settings={
            "batch_size": options.batch_size,
            "precision": options.precision,
            "device": str(device),
            "preprocessing": prep.source,
            "prompt": PROMPT,
        },
        images=images,
        skipped=skip_reasons.total(),
        skip_reasons=dict(skip_reasons),
        downstream=scored,
        reconstruction={mode: totals[mode].result() for mode in MODES},
        reference=readme_figures(spec),
        alignment=alignment,
        seconds=time.perf_counter() - started,
    )
