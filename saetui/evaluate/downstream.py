"""CLIP contrastive loss and zero-shot accuracy of the three splice conditions, from the images' label prompts.

Image embeddings (normalised, per condition) and labels are collected batch by batch; everything is scored at
the end, when the label set is known:

- contrastive loss of one batch = the symmetric image-text cross-entropy of CLIP training over the batch's
  labelled images and the prompts "A photo of a {label}." of their labels: logits = s * I @ T^T with
  s = exp(logit_scale) of the model, loss = (CE(logits, diag) + CE(logits^T, diag)) / 2. The reported loss is
  the mean over batches weighted by their labelled images; batches with fewer than 2 labelled images have no
  negatives and are left out. It grows with the batch size (more negatives), so compare runs at equal
  --batch-size.
- zero-shot accuracy = share of labelled images whose label's prompt is the most similar (top-1) or among the
  5 most similar (top-5) of all prompts of the label set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from saetui.errors import UsageError
from saetui.evaluate.splice import CONDITIONS

LABEL_SETS: tuple[str, ...] = ("auto", "dataset", "imagenet")
TOP_K = 5
SCORE_CHUNK = 4096  # images per zero-shot logits block


@dataclass(frozen=True)
class ConditionScores:
    """Loss and accuracy of one condition, and how close its image embeddings stay to the original ones."""

    loss: float | None  # None when no batch had 2 labelled images
    top1: float | None  # None when no image was labelled
    top5: float | None
    mean_cosine_to_original: float  # mean over images of cos(embedding, original embedding)
    max_abs_diff_to_original: float  # max |embedding - original embedding| over images and dims


@dataclass(frozen=True)
class DownstreamResult:
    """The scores per condition and what they were computed over."""

    scores: dict[str, ConditionScores]
    label_set: str  # "imagenet" (the 1000 ImageNet-1k classes) or "dataset" (the labels seen)
    n_labels: int
    n_labelled: int  # images with a label, scored
    n_unlabelled: int  # images without one, left out
    loss_batches: int  # batches that entered the loss
    logit_scale: float


def resolve_label_set(choice: str, seen: set[str], imagenet_names: Sequence[str]) -> tuple[str, list[str]]:
    """("imagenet" | "dataset", labels) for --label-set auto|dataset|imagenet given the labels seen."""
    if choice not in LABEL_SETS:
        raise UsageError(f"unknown label set '{choice}'", f"use one of {', '.join(LABEL_SETS)}")
    names = set(imagenet_names)
    if choice == "imagenet" or (choice == "auto" and seen and seen <= names):
        unknown = sorted(seen - names)
        if unknown:
            raise UsageError(f"labels such as '{unknown[0]}' are not ImageNet class names", "use --label-set dataset")
        return "imagenet", list(imagenet_names)
    return "dataset", sorted(seen)


def contrastive_loss(images: torch.Tensor, texts: torch.Tensor, scale: float) -> float:
    """Symmetric CLIP cross-entropy of normalised image and text embeddings paired row by row."""
    logits = scale * images @ texts.T
    target = torch.arange(len(images), device=images.device)
    loss = torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
    return float(loss) / 2


class Downstream:
    """Collects per-condition image embeddings and labels batch by batch and scores them at the end."""

    def __init__(self) -> None:
        """Nothing collected yet."""
        self._embeddings: list[torch.Tensor] = []  # per batch: float32 [conditions, B, E] on the CPU
        self._labels: list[list[str | None]] = []

    def add(self, embeddings: torch.Tensor, labels: Sequence[str | None]) -> None:
        """One batch: normalised embeddings [conditions * B, E] (conditions stacked) and the B labels."""
        batch = embeddings.float().reshape(len(CONDITIONS), len(labels), -1).cpu()
        self._embeddings.append(batch)
        self._labels.append(list(labels))

    def seen_labels(self) -> set[str]:
        """The distinct labels of the collected images."""
        return {label for labels in self._labels for label in labels if label is not None}

    def score(
        self,
        label_set: str,
        labels: Sequence[str],
        text_embeddings: Callable[[Sequence[str]], np.ndarray],
        logit_scale: float,
    ) -> DownstreamResult:
        """Loss and accuracy per condition against the prompts of `labels` (normalised by text_embeddings)."""
        text = torch.from_numpy(np.ascontiguousarray(text_embeddings(labels), dtype=np.float32))
        index = {label: i for i, label in enumerate(labels)}
        all_embeddings = torch.cat(self._embeddings, dim=1) if self._embeddings else torch.zeros(3, 0, 1)
        flat_labels = [label for batch in self._labels for label in batch]
        target = torch.tensor([index.get(label, -1) if label is not None else -1 for label in flat_labels])
        labelled = target >= 0
        loss_sums = np.zeros(len(CONDITIONS))
        loss_weight = 0
        batches = 0
        for embeddings, batch_labels in zip(self._embeddings, self._labels, strict=True):
            rows = [i for i, label in enumerate(batch_labels) if label is not None]
            if len(rows) < 2:
                continue
            texts = text[[index[batch_labels[i]] for i in rows]]
            for c in range(len(CONDITIONS)):
                loss_sums[c] += len(rows) * contrastive_loss(embeddings[c, rows], texts, logit_scale)
            loss_weight += len(rows)
            batches += 1
        original = all_embeddings[0]
        scores = {}
        for c, name in enumerate(CONDITIONS):
            emb = all_embeddings[c]
            top1, top5 = _accuracy(emb[labelled], target[labelled], text)
            scores[name] = ConditionScores(
                loss=float(loss_sums[c] / loss_weight) if loss_weight else None,
                top1=top1,
                top5=top5,
                mean_cosine_to_original=float((emb * original).sum(dim=1).mean()) if len(emb) else float("nan"),
                max_abs_diff_to_original=float((emb - original).abs().max()) if emb.numel() else 0.0,
            )
        return DownstreamResult(
            scores=scores,
            label_set=label_set,
            n_labels=len(labels),
            n_labelled=int(labelled.sum()),
            n_unlabelled=int((~labelled).sum()),
            loss_batches=batches,
            logit_scale=logit_scale,
        )


def _accuracy(embeddings: torch.Tensor, target: torch.Tensor, text: torch.Tensor) -> tuple[float | None, float | None]:
    """(top-1, top-5) zero-shot accuracy of normalised image embeddings against the label prompts."""
    if len(target) == 0:
        return None, None
    k = min(TOP_K, text.shape[0])
    hits1 = hits5 = 0
    for start in range(0, len(target), SCORE_CHUNK):
        logits = embeddings[start : start + SCORE_CHUNK] @ text.T
        top = logits.topk(k, dim=1).indices
        wanted = target[start : start + SCORE_CHUNK, None]
        hits1 += int((top[:, :1] == wanted).sum())
        hits5 += int((top == wanted).any(dim=1).sum())
    return hits1 / len(target), hits5 / len(target)
