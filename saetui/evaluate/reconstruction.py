"""Reconstruction metrics of an SAE over an image set, in raw and in batch-standardised activation space.

For every token x (a d-dim residual-stream vector) with reconstruction r and SSE = sum_d (x_d - r_d)^2:

- sum-MSE per token = mean over tokens of SSE (CLIP-Scope's "MSE": summed over dims, averaged over tokens);
- explained variance (CLIP-Scope) = mean over tokens of 1 - SSE / sum_d (x_d - mean_d x)^2 (each token against
  its own mean over dims; tokens with zero spread are left out);
- normalised MSE (saev) = sum over tokens of SSE / sum over tokens of ||x - mu||^2, mu = the mean vector of
  every token of the set (1 - explained variance in the usual dataset sense);
- L0 = mean over tokens of the kept latents with value > 0 (CLIP-Scope's top-k has no ReLU: kept values <= 0
  do not count);
- dead fraction = share of features with no value > 0 on any token of the set.

Raw mode feeds the activations as they are (what the reference and `saetui index` do). Standardised mode
z-scores every batch of whole images per dimension first (saetui.families.sparse.standardise_batch), as
CLIP-Scope training did with its 128-image batches; the hub README's MSE / explained-variance table is stated in
that space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saetui.device import to_host
from saetui.families.sparse import reconstruction_error
from saetui.registry import BUILT_IN, SCOPE_REPO, SaeSpec

MODES: tuple[str, ...] = ("raw", "standardised")
METRICS: tuple[str, ...] = ("sum_mse", "explained_variance", "normalised_mse", "l0", "dead_fraction")

# The hub README of lewington/CLIP-ViT-L-scope (standardised space): layer -> sum-MSE, explained variance and
# dead proportion (docs/clip-scope.md). Its "active prop." column has no published definition and is not used.
CLIP_SCOPE_README: dict[int, dict[str, float]] = {
    2: {"sum_mse": 267.95, "explained_variance": 0.763, "dead_fraction": 0.000912},
    5: {"sum_mse": 354.46, "explained_variance": 0.665, "dead_fraction": 0.0},
    8: {"sum_mse": 357.58, "explained_variance": 0.642, "dead_fraction": 0.0},
    11: {"sum_mse": 321.23, "explained_variance": 0.674, "dead_fraction": 0.0},
    14: {"sum_mse": 319.64, "explained_variance": 0.689, "dead_fraction": 0.0},
    17: {"sum_mse": 261.20, "explained_variance": 0.731, "dead_fraction": 0.0},
    20: {"sum_mse": 278.06, "explained_variance": 0.706, "dead_fraction": 0.0000763},
    22: {"sum_mse": 299.96, "explained_variance": 0.684, "dead_fraction": 0.0},
}


def readme_figures(spec: SaeSpec) -> dict[str, float] | None:
    """The hub README's figures for a built-in CLIP-Scope SAE's layer; None for any other SAE."""
    if spec.source != BUILT_IN or spec.repo_id != SCOPE_REPO:
        return None
    return CLIP_SCOPE_README.get(spec.layer)


@dataclass(frozen=True)
class ReconstructionResult:
    """The metrics of one mode over the whole set."""

    tokens: int
    sum_mse: float
    explained_variance: float | None  # None when no token had spread
    normalised_mse: float | None  # None when the set has no variance
    l0: float
    dead_fraction: float

    def as_dict(self) -> dict[str, float | None]:
        """The metrics by name (the METRICS order)."""
        return {name: getattr(self, name) for name in METRICS}


class ReconstructionTotals:
    """Running sums of one mode, added batch by batch (float64 on the CPU)."""

    def __init__(self, d_in: int, n_features: int) -> None:
        """Zeroed sums."""
        self.tokens = 0
        self.sse = 0.0
        self.ev_sum = 0.0
        self.ev_tokens = 0
        self.sum_x = np.zeros(d_in, dtype=np.float64)
        self.sum_sq = 0.0
        self.active = 0
        self.fired = np.zeros(n_features, dtype=bool)

    @torch.no_grad()
    def add(self, x: torch.Tensor, recon: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> None:
        """One batch of tokens x [T, d] with reconstructions [T, d] and the kept latents [T, k]."""
        sse, total_ss = reconstruction_error(x, recon)
        spread = total_ss > 0
        wide = x.double()
        self.tokens += int(x.shape[0])
        self.sse += float(sse.double().sum())
        # Masks as weights, not as indices: no data-dependent shapes, so nothing waits on the device mid-batch.
        ratio = sse.double() / torch.where(spread, total_ss.double(), torch.ones_like(total_ss.double()))
        self.ev_sum += float(torch.where(spread, 1 - ratio, torch.zeros_like(ratio)).sum())
        self.ev_tokens += int(spread.sum())
        self.sum_x += to_host(wide.sum(dim=0))
        self.sum_sq += float(wide.pow(2).sum())
        positive = values > 0
        self.active += int(positive.sum())
        hits = torch.zeros(len(self.fired), dtype=torch.float32, device=values.device)
        # Unused slots (feature -1) have value 0, so clamping them onto feature 0 adds nothing.
        hits.scatter_add_(0, indices.clamp(min=0).reshape(-1), positive.reshape(-1).to(hits.dtype))
        self.fired |= to_host(hits) > 0

    def result(self) -> ReconstructionResult:
        """The metrics over everything added."""
        tokens = max(self.tokens, 1)
        variance = self.sum_sq - float(self.sum_x @ self.sum_x) / tokens  # sum over tokens of ||x - mu||^2
        return ReconstructionResult(
            tokens=self.tokens,
            sum_mse=self.sse / tokens,
            explained_variance=self.ev_sum / self.ev_tokens if self.ev_tokens else None,
            normalised_mse=self.sse / variance if variance > 0 else None,
            l0=self.active / tokens,
            dead_fraction=float(1 - self.fired.mean()),
        )
