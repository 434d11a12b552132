"""The CLIP-text logit lens of SAE features (needs torch and open_clip; imported only by `saetui stats`/search).

For feature f the direction d_f (decoder row by default; encoder column or decoder row + pre_b as options) is
mapped into the joint image-text space like a CLS token would be: through the vision tower's final LayerNorm
(ln_post, optional) and its projection. Its cosine with the normalised text embedding of "A photo of a {label}."
(or the mean of the 80 ImageNet prompt templates) ranks the labels; prob is the softmax over all labels of
cosine x the model's logit scale (exp(logit_scale)). The lens skips every block after the hooked layer, which is
why it often disagrees with what a feature fires on; the UI says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from saetui.device import module_device, to_device, to_host
from saetui.families.weights import SaeWeights
from saetui.stats.options import SINGLE_TEMPLATE

BLOCK = 4096  # features per block when ranking labels


def prompt_templates(kind: str) -> list[str]:
    """The prompt templates of a lens variant as format strings with a {label} field."""
    if kind == "single":
        return [SINGLE_TEMPLATE]
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{label}") for template in OPENAI_IMAGENET_TEMPLATES]


def text_embeddings(
    model: torch.nn.Module,
    model_dir: Path,
    labels: Sequence[str],
    templates: Sequence[str],
    cache_root: Path,
    model_key: str,
) -> np.ndarray:
    """Normalised text embeddings [labels, embed] of the prompts (template ensemble = mean, renormalised), cached.

    The cache file is keyed by the model weights, the templates and the label list, so the text tower runs once.
    """
    key = hashlib.sha256(json.dumps([model_key, list(templates), list(labels)]).encode()).hexdigest()[:24]
    path = cache_root / "text_embeddings" / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    import open_clip

    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    device = module_device(model)
    out = np.zeros((len(labels), int(model.text_projection.shape[1])), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(labels), 64):
            batch = labels[start : start + 64]
            total = None
            for template in templates:
                tokens = tokenizer([template.format(label=label) for label in batch]).to(device)
                emb = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
                total = emb if total is None else total + emb
            out[start : start + len(batch)] = to_host(torch.nn.functional.normalize(total, dim=-1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(path)
    return out


def directions(checkpoint: SaeWeights, kind: str) -> torch.Tensor:
    """Feature directions [n_features, d_in] in the residual stream for a lens variant."""
    if kind == "decoder":
        return checkpoint.dec.float()
    if kind == "encoder":
        return checkpoint.enc.float().T
    bias = checkpoint.b_dec if checkpoint.b_dec is not None else torch.zeros(checkpoint.d_in)
    return checkpoint.dec.float() + bias.float()[None, :]


def joint_embeddings(model: torch.nn.Module, rows: torch.Tensor, ln: bool, projected: bool = False) -> torch.Tensor:
    """Directions (host rows) mapped into the joint space on the model's device (ln_post optional, then proj),
    L2-normalised; directions of an SAE on the pooled embedding already are in that space (projected=True)."""
    visual = model.visual
    with torch.no_grad():
        x = to_device(rows, visual.proj.device, visual.proj.dtype)
        if projected:
            return torch.nn.functional.normalize(x.float(), dim=-1)
        if ln:
            x = visual.ln_post(x)
        return torch.nn.functional.normalize((x @ visual.proj).float(), dim=-1)


def logit_scale(model: torch.nn.Module) -> float:
    """exp(logit_scale) of the CLIP model (100 for the released laion models)."""
    return float(model.logit_scale.detach().float().exp().item())


def rank_labels(embeddings: torch.Tensor, text: np.ndarray, scale: float, top: int) -> dict[str, np.ndarray]:
    """Top labels per feature: columns feature, rank, label_index, score (cosine), prob (softmax over labels)."""
    text_t = to_device(text, embeddings.device, torch.float32)
    top = min(top, text.shape[0])
    feature, rank, label, score, prob = [], [], [], [], []
    for start in range(0, embeddings.shape[0], BLOCK):
        cos = embeddings[start : start + BLOCK].float() @ text_t.T
        log_norm = torch.logsumexp(cos * scale, dim=1, keepdim=True)
        values, index = torch.topk(cos, top, dim=1)
        n = cos.shape[0]
        feature.append(np.repeat(np.arange(start, start + n, dtype=np.int32), top))
        rank.append(np.tile(np.arange(1, top + 1, dtype=np.int16), n))
        label.append(to_host(index.reshape(-1)).astype(np.int32))
        score.append(to_host(values.reshape(-1)).astype(np.float64))
        prob.append(to_host(torch.exp(values * scale - log_norm).reshape(-1)).astype(np.float64))
    return {
        "feature": np.concatenate(feature),
        "rank": np.concatenate(rank),
        "label_index": np.concatenate(label),
        "score": np.concatenate(score),
        "prob": np.concatenate(prob),
    }
