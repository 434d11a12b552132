"""Input normalisations of the SAE families, each with the exact inverse its reference applies to the output.

* ``none``: x as it is (CLIP-Scope, dictionary_learning, saev's later runs).
* ``constant_norm_rescale`` (ViT-Prisma): x' = x * sqrt(d) / ||x|| per token; the output is divided by the same
  factor.
* ``layer_norm`` (ViT-Prisma): per token mu = mean(x), sigma = std(x - mu) with torch's default unbiased (n - 1)
  estimate, x' = (x - mu) / (sigma + 1e-5); the output is y * sigma + mu (Prisma adds no epsilon on the way back).
* ``affine`` (saev's release-era runs): x' = (x - mean) / scale with a dataset mean [d] and one scale; output
  y * scale + mean. saev's checkpoints do not ship mean and scale: saetui estimates them (see saetui.families.saev).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NORMALISATIONS = ("none", "constant_norm_rescale", "layer_norm", "affine")
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class Normaliser:
    """One family's input normalisation; `mean` and `scale` are used by `affine` only."""

    kind: str = "none"
    mean: torch.Tensor | None = None  # [d]
    scale: float | None = None

    def __post_init__(self) -> None:
        """Refuse an unknown kind or an affine normaliser without its constants."""
        if self.kind not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.kind!r}: use one of {', '.join(NORMALISATIONS)}")
        if self.kind == "affine" and (self.mean is None or not self.scale):
            raise ValueError("an affine normaliser needs a mean and a non-zero scale")

    def to(self, device: torch.device | str) -> Normaliser:
        """The same normaliser with its mean on device."""
        if self.mean is None:
            return self
        return Normaliser(self.kind, self.mean.to(device=device, dtype=torch.float32), self.scale)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, d] in the SAE's input space."""
        if self.kind == "constant_norm_rescale":
            return x * (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
        if self.kind == "layer_norm":
            centred = x - x.mean(dim=-1, keepdim=True)
            return centred / (centred.std(dim=-1, keepdim=True) + LAYER_NORM_EPS)
        if self.kind == "affine":
            return (x - self.mean) / self.scale
        return x

    def invert(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The SAE output y [T, d] mapped back to the space of the input x it was computed from."""
        if self.kind == "constant_norm_rescale":
            return y / (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
        if self.kind == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            return y * (x - mu).std(dim=-1, keepdim=True) + mu
        if self.kind == "affine":
            return y * self.scale + self.mean
        return y

    def describe(self) -> str:
        """A short form for the runs table."""
        if self.kind == "affine":
            return f"affine (x - mean) / {self.scale:.6g}"
        return self.kind
