"""Dense reference forwards of each SAE family, written from that family's own definition (not saetui's code).

Each returns the full latent f [T, n] (zeros where inactive) and the reconstruction in the input's space.
"""

from __future__ import annotations

import torch


def prisma_forward(x: torch.Tensor, t: dict, config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """vit_prisma StandardSparseAutoencoder.encode/decode with its run-time normalisation and activation."""
    norm = config.get("normalize_activations", "layer_norm")
    if norm == "constant_norm_rescale":
        coeff = (x.shape[-1] ** 0.5) / x.norm(dim=-1, keepdim=True)
        sae_in = x * coeff
    elif norm == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        centred = x - mu
        std = centred.std(dim=-1, keepdim=True)
        sae_in = centred / (std + 1e-5)
    else:
        sae_in = x
    hidden_pre = (sae_in - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    if config["activation_fn_str"] == "topk":
        top = torch.topk(hidden_pre, k=config["activation_fn_kwargs"]["k"], dim=-1)
        f = torch.zeros_like(hidden_pre).scatter_(-1, top.indices, torch.relu(top.values))
    else:
        f = torch.relu(hidden_pre)
    out = f @ t["W_dec"] + t["b_dec"]
    if norm == "constant_norm_rescale":
        out = out / coeff
    elif norm == "layer_norm":
        out = out * std + mu
    return f, out


def saev_forward(
    x: torch.Tensor, t: dict, release_era: bool, activation: str, k: int = 0, threshold: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """saev's SparseAutoencoder: release era ReLU((x - b_dec) W_enc + b_enc); later act(x W_enc + b_enc)."""
    h = ((x - t["b_dec"]) if release_era else x) @ t["W_enc"] + t["b_enc"]
    if activation == "Relu":
        f = torch.relu(h)
    elif activation == "TopK" or threshold is None:
        _, idx = torch.topk(h, k, dim=-1)
        mask = torch.zeros_like(h).scatter_(-1, idx, torch.ones_like(h))
        f = mask * h
    else:  # BatchTopK at inference: values above the threshold, ReLU when it is <= 0
        f = h * (h > threshold) if threshold > 0 else torch.relu(h)
    return f, f @ t["W_dec"] + t["b_dec"]


def dictionary_learning_forward(
    x: torch.Tensor, t: dict, kind: str, k: int, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """dictionary_learning's encode at inference: Matryoshka/BatchTopK threshold, AutoEncoderTopK top-k."""
    post_relu = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    if kind == "threshold":
        f = post_relu * (post_relu > threshold)
    else:
        top = post_relu.topk(k, dim=-1)
        f = torch.zeros_like(post_relu).scatter_(-1, top.indices, top.values)
    return f, f @ t["W_dec"] + t["b_dec"]


def dense_codes(values: torch.Tensor, features: torch.Tensor, n: int) -> torch.Tensor:
    """saetui's padded sparse codes [T, K] (pads -1) as a dense [T, n] latent."""
    dense = torch.zeros((values.shape[0], n), dtype=torch.float32)
    kept = features >= 0
    rows = torch.arange(values.shape[0])[:, None].expand_as(features)
    dense[rows[kept], features[kept]] = values[kept]
    return dense
