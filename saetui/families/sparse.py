"""The one sparse encoder every family runs: normalise, centre, encode in bounded chunks, activate, decode sparsely.

Every released vision SAE is one instance of

    x' = n(x);  pre = (x' - input_bias) @ W_enc + b_enc;  f = act(pre);  x_hat = n^-1(f @ W_dec + b_dec)

with its own normaliser n (saetui.families.normalisers), biases (either may be absent) and activation:

* ``topk``: keep the k largest entries of each row; ``relu=True`` then zeroes the kept values that are <= 0
  (ViT-Prisma, dictionary_learning's TopK), ``relu=False`` keeps them as they are (CLIP-Scope, saev's TopK);
* ``threshold``: keep the entries above ``threshold`` and above 0 (ReLU SAEs have threshold 0; the
  Matryoshka / BatchTopK SAEs of dictionary_learning and saev a learned global threshold at inference).

The dense tokens x n_features latent is never built: TopK runs over bounded token chunks and feature blocks
(top-k per block, then top-k of the candidates), threshold SAEs over token chunks sized to a fixed budget of
pre-activations. Codes come back as [tokens, K] (values, features) with the kept pairs in descending value order
and the unused slots of a row marked by feature -1 and value 0, so rows of a ReLU SAE can hold any number of pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from saetui.families.normalisers import Normaliser

DEFAULT_TOKEN_CHUNK = 2048
DEFAULT_FEATURE_BLOCK = 8192
DENSE_BUDGET = 1 << 25  # pre-activations held at once by a threshold SAE (128 MiB in float32)
PAD = -1  # the feature id of an unused slot


@dataclass(frozen=True)
class Activation:
    """Which pairs of the pre-activation an SAE keeps: its top k (ReLU'd or not) or those above a threshold."""

    kind: str  # "topk" | "threshold"
    k: int | None = None  # topk only
    relu: bool = False  # topk only: kept values <= 0 become 0 (and are not stored)
    threshold: float = 0.0  # threshold only: keep pre > max(threshold, 0)

    def describe(self) -> str:
        """A short human-readable form, as the runs table records it."""
        if self.kind == "topk":
            return f"top-{self.k}" + (" then ReLU" if self.relu else " (no ReLU)")
        if self.threshold > 0:
            return f"ReLU, keep > {self.threshold:g}"
        return "ReLU"


def standardise_batch(x: torch.Tensor) -> torch.Tensor:
    """Per-dimension z-scores of x over its tokens, as CLIP-Scope training did to every batch it saw.

    Training standardised each batch of whole images (128 images x 257 tokens) with that batch's own mean
    and (population) std per dimension and never saved them; standardising a batch of whole images
    reproduces that space, in which the hub README's MSE / explained-variance table is stated. Dimensions
    with zero spread map to 0.
    """
    x = x.float()
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, correction=0, keepdim=True)
    return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))


def reconstruction_error(x: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (sse, total_ss): sum over dims of (x - recon)^2, and of (x_d - mean over dims of x)^2.

    The explained variance of a token is 1 - sse / total_ss.
    """
    x = x.float()
    sse = (x - recon.float()).pow(2).sum(dim=-1)
    total_ss = (x - x.mean(dim=-1, keepdim=True)).pow(2).sum(dim=-1)
    return sse, total_ss


def pad_columns(parts: list[torch.Tensor], fill: float | int) -> torch.Tensor:
    """Concatenate [rows, K_i] tensors along rows after padding each to the widest K with `fill`."""
    width = max((part.shape[1] for part in parts), default=0)
    return torch.cat([F.pad(part, (0, width - part.shape[1]), value=fill) for part in parts])


class SparseSae:
    """An SAE of any family held on one device, encoding in bounded chunks to padded sparse codes."""

    def __init__(
        self,
        enc: torch.Tensor,
        dec: torch.Tensor,
        activation: Activation,
        *,
        b_enc: torch.Tensor | None = None,
        b_dec: torch.Tensor | None = None,
        input_bias: torch.Tensor | None = None,
        normaliser: Normaliser | None = None,
        keep_top: int | None = None,
        token_chunk: int = DEFAULT_TOKEN_CHUNK,
        feature_block: int = DEFAULT_FEATURE_BLOCK,
    ) -> None:
        """Keep the tensors (enc [d_in, n], dec [n, d_in], biases [n] / [d_in]) and the encode settings."""
        self.d_in, self.n_features = enc.shape
        if activation.kind == "topk" and not 0 < (activation.k or 0) <= self.n_features:
            raise ValueError(f"k = {activation.k} must be in 1..{self.n_features}")
        if keep_top is not None and keep_top <= 0:
            raise ValueError(f"keep_top must be positive, got {keep_top}")
        self.activation = activation
        self.normaliser = normaliser or Normaliser()
        self.keep_top = keep_top
        self.b_enc = b_enc
        self.b_dec = b_dec
        self.input_bias = input_bias
        self.dec = dec.contiguous()
        self.dtype = enc.dtype
        self.device = enc.device
        if activation.kind == "topk":
            self.k = min(activation.k or 0, keep_top or self.n_features)
            self.token_chunk = max(1, token_chunk)
            self.feature_block = max(self.k, feature_block)
        else:
            self.k = keep_top  # None: every active pair is kept
            self.token_chunk = max(1, min(token_chunk, DENSE_BUDGET // self.n_features))
            self.feature_block = self.n_features
        starts = range(0, self.n_features, self.feature_block)
        self._enc_blocks = [enc[:, s : s + self.feature_block].contiguous() for s in starts]
        self._benc_blocks = [None if b_enc is None else b_enc[s : s + self.feature_block] for s in starts]
        self._block_starts = list(starts)

    @property
    def max_pairs(self) -> int | None:
        """The most pairs a token can keep (k of a TopK SAE, the keep-top limit, or None: no bound)."""
        return self.k

    def _pre(self, block: int, centred: torch.Tensor) -> torch.Tensor:
        """Pre-activations of one feature block."""
        pre = centred @ self._enc_blocks[block]
        bias = self._benc_blocks[block]
        return pre if bias is None else pre + bias

    def _topk_chunk(self, centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k of one token chunk: top-k inside each feature block, then top-k of the candidates."""
        k = self.k
        if len(self._enc_blocks) == 1:
            values, indices = torch.topk(self._pre(0, centred), k, dim=-1, sorted=True)
        else:
            candidates, candidate_ids = [], []
            for i, (start, block) in enumerate(zip(self._block_starts, self._enc_blocks, strict=True)):
                top = torch.topk(self._pre(i, centred), min(k, block.shape[1]), dim=-1, sorted=False)
                candidates.append(top.values)
                candidate_ids.append(top.indices + start)
            best = torch.topk(torch.cat(candidates, dim=-1), k, dim=-1, sorted=True)
            values, indices = best.values, torch.cat(candidate_ids, dim=-1).gather(-1, best.indices)
        if self.activation.relu:
            kept = values > 0
            values = torch.where(kept, values, torch.zeros_like(values))
            indices = torch.where(kept, indices, torch.full_like(indices, PAD))
        return values, indices

    def _threshold_chunk(self, centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every pair above the threshold (the largest keep_top of them when a limit is set), descending."""
        pre = self._pre(0, centred)
        active = pre > max(self.activation.threshold, 0.0)
        width = int(active.sum(dim=-1).max()) if pre.shape[0] else 0
        width = min(width, self.keep_top or width)
        if width == 0:
            empty = torch.zeros((pre.shape[0], 0), device=pre.device)
            return empty.to(pre.dtype), empty.to(torch.int64)
        masked = torch.where(active, pre, torch.full_like(pre, -torch.inf))
        values, indices = torch.topk(masked, width, dim=-1, sorted=True)
        kept = values > -torch.inf
        return (
            torch.where(kept, values, torch.zeros_like(values)),
            torch.where(kept, indices, torch.full_like(indices, PAD)),
        )

    @torch.no_grad()
    def encode(self, x: torch.Tensor, standardise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [T, K] float32, features [T, K] int64) of x [T, d_in]: kept pairs descending, pads -1 / 0.

        standardise=True z-scores x per dimension over this batch first (see standardise_batch); pass whole
        images so the statistics match training.
        """
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"expected activations [tokens, {self.d_in}], got {list(x.shape)}")
        if standardise:
            x = standardise_batch(x)
        x = self.normaliser.apply(x.to(device=self.device).float()).to(self.dtype)
        chunk = self._topk_chunk if self.activation.kind == "topk" else self._threshold_chunk
        values, features = [], []
        for start in range(0, x.shape[0], self.token_chunk):
            part = x[start : start + self.token_chunk]
            centred = part if self.input_bias is None else part - self.input_bias
            chunk_values, chunk_features = chunk(centred)
            values.append(chunk_values.float())
            features.append(chunk_features)
        if not values:
            width = self.k or 0
            return (
                torch.zeros((0, width), dtype=torch.float32, device=self.device),
                torch.zeros((0, width), dtype=torch.int64, device=self.device),
            )
        return pad_columns(values, 0.0), pad_columns(features, PAD)

    @torch.no_grad()
    def decode(self, values: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The SAE-space output [T, d_in] float32: sum of value * dec[feature] over the kept pairs, plus b_dec."""
        values = values.to(device=self.device, dtype=self.dtype)
        features = features.to(device=self.device, dtype=torch.int64)
        if features.shape[1] == 0:
            recon = torch.zeros((features.shape[0], self.d_in), dtype=self.dtype, device=self.device)
        else:
            pad = features < 0
            weights = torch.where(pad, torch.zeros_like(values), values)
            recon = F.embedding_bag(features.clamp(min=0), self.dec, per_sample_weights=weights, mode="sum")
        return (recon if self.b_dec is None else recon + self.b_dec).float()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, values: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The reconstruction of x in x's own space: decode, then undo the normaliser x was encoded with."""
        return self.normaliser.invert(self.decode(values, features), x.to(device=self.device).float())
