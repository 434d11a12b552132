"""TopK SAE with CLIP-Scope semantics: chunked top-k encode (no dense latent), sparse decode, standardisation.

CLIP-Scope's forward is ``pre = (x - pre_b) @ enc``, keep the k largest entries of each row (NO ReLU: a
kept value can be negative), reconstruction ``= sum value * dec[index] + pre_b``. The reference builds the
dense tokens x n_features latent; here the encoder runs over bounded token chunks and feature blocks
(top-k per block, then top-k of the candidates), so memory is ``token_chunk x feature_block`` whatever
the batch, and the decoder gathers only the k kept rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from saetui.checkpoint import SaeCheckpoint

DEFAULT_TOKEN_CHUNK = 2048
DEFAULT_FEATURE_BLOCK = 8192


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

    CLIP-Scope's explained variance of a token is 1 - sse / total_ss.
    """
    x = x.float()
    sse = (x - recon.float()).pow(2).sum(dim=-1)
    total_ss = (x - x.mean(dim=-1, keepdim=True)).pow(2).sum(dim=-1)
    return sse, total_ss


class TopKSae:
    """A CLIP-Scope TopK SAE held on one device, encoding in bounded chunks."""

    def __init__(
        self,
        pre_b: torch.Tensor,
        enc: torch.Tensor,
        dec: torch.Tensor,
        k: int,
        token_chunk: int = DEFAULT_TOKEN_CHUNK,
        feature_block: int = DEFAULT_FEATURE_BLOCK,
    ) -> None:
        """Keep pre_b [d_in], dec [n, d_in] and enc [d_in, n] split into contiguous column blocks."""
        self.d_in, self.n_features = enc.shape
        if not 0 < k <= self.n_features:
            raise ValueError(f"k = {k} must be in 1..{self.n_features}")
        self.k = k
        self.token_chunk = max(1, token_chunk)
        self.feature_block = max(k, feature_block)
        self.pre_b = pre_b
        self.dec = dec.contiguous()
        self.dtype = enc.dtype
        self.device = enc.device
        starts = range(0, self.n_features, self.feature_block)
        self._enc_blocks = [enc[:, s : s + self.feature_block].contiguous() for s in starts]
        self._block_starts = list(starts)

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: SaeCheckpoint,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        token_chunk: int = DEFAULT_TOKEN_CHUNK,
        feature_block: int = DEFAULT_FEATURE_BLOCK,
    ) -> TopKSae:
        """Move a loaded checkpoint's tensors to device/dtype and build the encoder blocks."""

        def move(t: torch.Tensor) -> torch.Tensor:
            """t on the target device in the target dtype."""
            return t.to(device=device, dtype=dtype)

        return cls(move(ckpt.pre_b), move(ckpt.enc), move(ckpt.dec), ckpt.k, token_chunk, feature_block)

    @torch.no_grad()
    def _encode_chunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k of one token chunk: top-k inside each feature block, then top-k of the candidates."""
        centred = x - self.pre_b
        if len(self._enc_blocks) == 1:
            return torch.topk(centred @ self._enc_blocks[0], self.k, dim=-1, sorted=True)
        values, indices = [], []
        for start, block in zip(self._block_starts, self._enc_blocks, strict=True):
            top = torch.topk(centred @ block, min(self.k, block.shape[1]), dim=-1, sorted=False)
            values.append(top.values)
            indices.append(top.indices + start)
        candidates = torch.cat(values, dim=-1)
        best = torch.topk(candidates, self.k, dim=-1, sorted=True)
        return best.values, torch.cat(indices, dim=-1).gather(-1, best.indices)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, standardise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [T, k] float32, descending; indices [T, k] int64) of the kept latents of x [T, d_in].

        standardise=True z-scores x per dimension over this batch first (see standardise_batch); pass whole
        images so the statistics match training.
        """
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"expected activations [tokens, {self.d_in}], got {list(x.shape)}")
        if standardise:
            x = standardise_batch(x)
        x = x.to(device=self.device, dtype=self.dtype)
        out_values = torch.empty((x.shape[0], self.k), dtype=torch.float32, device=self.device)
        out_indices = torch.empty((x.shape[0], self.k), dtype=torch.int64, device=self.device)
        for start in range(0, x.shape[0], self.token_chunk):
            stop = start + self.token_chunk
            values, indices = self._encode_chunk(x[start:stop])
            out_values[start:stop] = values
            out_indices[start:stop] = indices
        return out_values, out_indices

    @torch.no_grad()
    def decode(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Reconstruction [T, d_in] float32: sum of value * dec[index] over the kept latents, plus pre_b."""
        values = values.to(device=self.device, dtype=self.dtype)
        indices = indices.to(device=self.device, dtype=torch.int64)
        recon = F.embedding_bag(indices, self.dec, per_sample_weights=values, mode="sum")
        return (recon + self.pre_b).float()
