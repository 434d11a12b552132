"""Neuron alignment: how close each SAE feature's encoder direction is to one MLP neuron of the hooked block.

The hooked block writes into the residual stream through its MLP output weight (open_clip ``mlp.c_proj``, a
Linear(mlp_width, d_in) whose weight is [d_in, mlp_width]); neuron n adds activation_n times the d_in-dim
column n. For feature f with encoder column e_f (the direction it reads), alignment = max over neurons n of
|cos(e_f, w_n)|, with the neuron that attains it. A value near 1 means the feature reads (almost) one neuron's
output direction; for comparison the same figure is computed for random Gaussian directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saetui.device import to_host
from saetui.errors import DataError

FEATURE_BLOCK = 8192  # features per cosine block (neurons x block floats)
HISTOGRAM_BINS = 20  # bins of width 0.05 over [0, 1]
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
BASELINE_DIRECTIONS = 4096
BASELINE_SEED = 0


@dataclass(frozen=True)
class Alignment:
    """Per-feature alignment, its summary and histogram, and the random-direction baseline."""

    max_abs_cosine: np.ndarray  # float32 [n_features]
    neuron: np.ndarray  # int32 [n_features]: argmax neuron
    n_neurons: int
    summary: dict[str, float]  # mean, p10, p50, p90, p99, max
    histogram: list[tuple[float, float, int]]  # (low, high, features)
    baseline: dict[str, float]  # the summary of random directions


def neuron_directions(weight: torch.Tensor, d_in: int) -> torch.Tensor:
    """The neurons' d_in-dim output directions [neurons, d_in] from an MLP output weight in either orientation.

    torch's Linear stores [out, in] = [d_in, neurons], so the columns are the directions; a weight stored the
    other way round ([neurons, d_in]) gives them as rows. A square weight is read the Linear way.
    """
    if weight.ndim != 2 or d_in not in weight.shape:
        raise DataError(
            f"the MLP output weight has shape {list(weight.shape)}, none of whose sides is d_in = {d_in}",
            "the SAE does not belong to this model's residual stream",
        )
    return weight.T if weight.shape[0] == d_in else weight


@torch.no_grad()
def max_abs_cosine(directions: torch.Tensor, neurons: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each column of directions [d_in, n]: the largest |cosine| with a row of neurons and that row."""
    unit_neurons = torch.nn.functional.normalize(neurons.float(), dim=1)
    best = torch.empty(directions.shape[1], dtype=torch.float32, device=directions.device)
    which = torch.empty(directions.shape[1], dtype=torch.int64, device=directions.device)
    for start in range(0, directions.shape[1], FEATURE_BLOCK):
        block = torch.nn.functional.normalize(directions[:, start : start + FEATURE_BLOCK].float(), dim=0)
        cosine = (unit_neurons.to(block.device) @ block).abs()
        best[start : start + block.shape[1]], which[start : start + block.shape[1]] = cosine.max(dim=0)
    return to_host(best), to_host(which.to(torch.int32))


def summarise(values: np.ndarray) -> dict[str, float]:
    """mean, the QUANTILES (as p10, p50, ...) and max of a set of alignments."""
    summary = {"mean": float(values.mean())}
    for q, value in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
        summary[f"p{round(q * 100)}"] = float(value)
    summary["max"] = float(values.max())
    return summary


def histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[tuple[float, float, int]]:
    """Counts of values in equal bins over [0, 1] (the last bin includes 1)."""
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=bins, range=(0.0, 1.0))
    return [(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(bins)]


@torch.no_grad()
def neuron_alignment(enc: torch.Tensor, c_proj_weight: torch.Tensor) -> Alignment:
    """Alignment of every encoder column of enc [d_in, n_features] with the neurons of c_proj_weight."""
    d_in = enc.shape[0]
    neurons = neuron_directions(c_proj_weight.detach(), d_in).to(enc.device)
    best, which = max_abs_cosine(enc, neurons)
    generator = torch.Generator().manual_seed(BASELINE_SEED)
    random_dirs = torch.randn(d_in, BASELINE_DIRECTIONS, generator=generator).to(enc.device)
    baseline, _ = max_abs_cosine(random_dirs, neurons)
    return Alignment(
        max_abs_cosine=best,
        neuron=which,
        n_neurons=int(neurons.shape[0]),
        summary=summarise(best),
        histogram=histogram(best),
        baseline=summarise(baseline),
    )
