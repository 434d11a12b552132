"""Deterministic tiny artefacts: an open_clip CLIP repo and CLIP-Scope SAE checkpoints in their real formats.

The tiny model keeps everything that decides fidelity in the real ViT-L/14 (224 px input, patch 14 so
257 tokens, 24 pre-LN blocks with GELU, learnable class/positional embeddings, ln_pre) and shrinks only
the width, so tests run in a fraction of a second. The SAE files are the CLIP-Scope layout exactly (a
plain dict loadable with ``torch.load(weights_only=True)``). Every generator is seeded and cached, so
equal arguments give equal bytes.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections import OrderedDict
from pathlib import Path

import torch

from saetui.demo import preprocessor_config

TINY_WIDTH = 32  # vision width == SAE d_in
TINY_LAYERS = 24  # 24 blocks like ViT-L/14 so every CLIP-Scope layer (2..22) exists
TINY_EMBED_DIM = 16
SCOPE_LAYERS = (2, 5, 8, 11, 14, 17, 20, 22)
FINAL_TOKENS = 1200013184  # name of every layer's final CLIP-Scope checkpoint
EARLY_TOKENS = 100069632  # the first intermediate checkpoint
MODEL_REPO = "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
SCOPE_REPO = "lewington/CLIP-ViT-L-scope"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_open_clip_config() -> dict:
    """Content of the tiny repo's open_clip_config.json (ViT-L/14 geometry at width 32)."""
    return {
        "model_cfg": {
            "embed_dim": TINY_EMBED_DIM,
            "vision_cfg": {
                "image_size": 224,
                "layers": TINY_LAYERS,
                "width": TINY_WIDTH,
                "head_width": 16,
                "mlp_ratio": 4.0,
                "patch_size": 14,
            },
            "text_cfg": {
                "context_length": 77,
                "vocab_size": 49408,
                "width": 32,
                "heads": 2,
                "layers": 2,
            },
        },
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }


def tiny_preprocessor_config() -> dict:
    """Content of the tiny repo's preprocessor_config.json, shaped like the HF CLIPImageProcessor ports."""
    return dict(preprocessor_config())


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter of model with seeded values, non-trivial for LayerNorms and embeddings."""
    gen = torch.Generator().manual_seed(seed)

    def randn(shape: torch.Size) -> torch.Tensor:
        """Standard normal values from the seeded generator."""
        return torch.randn(shape, generator=gen)

    layer_norm_params = set()
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            layer_norm_params.add(f"{module_name}.weight")
            layer_norm_params.add(f"{module_name}.bias")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name == "logit_scale":
                value = torch.full(param.shape, math.log(1 / 0.07))
            elif name in layer_norm_params and name.endswith("weight"):
                value = 1.0 + 0.2 * randn(param.shape)
            elif name in layer_norm_params or name.endswith("bias"):
                value = 0.1 * randn(param.shape)
            elif name.endswith(("class_embedding", "positional_embedding")):
                value = 0.5 * randn(param.shape)
            elif name == "token_embedding.weight":
                value = 0.02 * randn(param.shape)
            elif name.endswith(("proj", "text_projection")) and param.ndim == 2:
                value = randn(param.shape) / math.sqrt(param.shape[0])
            elif name.endswith(("out_proj.weight", "c_proj.weight")):
                # Residual-branch outputs scaled like open_clip's init, so 24 blocks keep the stream O(1).
                value = randn(param.shape) / math.sqrt(param[0].numel() * 2 * TINY_LAYERS)
            else:
                value = randn(param.shape) / math.sqrt(param[0].numel())
            param.copy_(value)


@functools.lru_cache(maxsize=8)
def _tiny_state_dict(seed: int) -> OrderedDict[str, torch.Tensor]:
    """Seeded state dict of the tiny open_clip CLIP (vision and text towers)."""
    import open_clip

    cfg = tiny_open_clip_config()["model_cfg"]
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**cfg["text_cfg"]),
    )
    _randomise(model, seed)
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in model.state_dict().items())


def tiny_state_dict(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A fresh copy of the tiny model's open_clip state dict (the weights inside the repo files)."""
    return OrderedDict((k, v.clone()) for k, v in _tiny_state_dict(seed).items())


_MODEL_README = """---
license: mit
library_name: open_clip
pipeline_tag: zero-shot-image-classification
---
# Tiny stand-in for CLIP ViT-L/14 - LAION-2B

Seeded random weights with the ViT-L/14 geometry (224 px, patch 14, 24 blocks) at width 32, for tests only.
"""

_SCOPE_README = """---
license: cc-by-4.0
---
# Tiny stand-in for CLIP-Scope

TopK sparse autoencoders (k = 32) on the residual stream of 8 layers of the tiny CLIP (CLIP-Scope format).
"""


def tiny_model_config_files() -> dict[str, bytes]:
    """The tiny model repo's two config files only (cheap: builds no weights)."""
    return {
        "open_clip_config.json": json.dumps(tiny_open_clip_config(), indent=2).encode(),
        "preprocessor_config.json": json.dumps(tiny_preprocessor_config(), indent=2).encode(),
    }


@functools.lru_cache(maxsize=4)
def _tiny_model_repo_files(seed: int) -> dict[str, bytes]:
    """Cached bytes of every file in the tiny model repo."""
    from safetensors.torch import save as save_safetensors

    state = _tiny_state_dict(seed)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return {
        **tiny_model_config_files(),
        "open_clip_model.safetensors": save_safetensors(dict(state)),
        "open_clip_pytorch_model.bin": buffer.getvalue(),
        "README.md": _MODEL_README.encode(),
    }


def tiny_model_repo_files(seed: int = 0) -> dict[str, bytes]:
    """Files of the fake "laion/CLIP-ViT-L-14-laion2B-s32B-b82K" repo, path -> bytes."""
    return dict(_tiny_model_repo_files(seed))


def tiny_sae_tensors(
    d_in: int = TINY_WIDTH, n_features: int = 512, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded (pre_b, enc, dec) of a tiny CLIP-Scope SAE.

    enc gets a rank-one shift along a random direction u, so tokens with a large component along u have every
    pre-activation pushed below zero (negative kept values, as CLIP-Scope allows: no ReLU); decoder rows have
    norms between 0.5 and 2 and pre_b is non-zero.
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    pre_b = 0.5 * torch.randn(d_in, generator=gen)
    u = torch.randn(d_in, generator=gen)
    u = u / u.norm()
    enc = torch.randn(d_in, n_features, generator=gen) / math.sqrt(d_in) - 2.0 * u[:, None]
    dec = torch.randn(n_features, d_in, generator=gen)
    norms = 0.5 + 1.5 * torch.rand(n_features, 1, generator=gen)
    dec = dec / dec.norm(dim=1, keepdim=True) * norms
    return pre_b, enc.contiguous(), dec.contiguous()


@functools.lru_cache(maxsize=64)
def tiny_sae_bytes(
    d_in: int = TINY_WIDTH,
    n_features: int = 512,
    k: int = 32,
    seed: int = 0,
    token_count: int = FINAL_TOKENS,
    log_id: str = "20_resid-00000000",
) -> bytes:
    """An SAE checkpoint in exactly the CLIP-Scope .pt layout (see docs/clip-scope.md), as bytes."""
    pre_b, enc, dec = tiny_sae_tensors(d_in, n_features, seed)
    gen = torch.Generator().manual_seed(20_000 + seed)
    checkpoint = {
        "model_state_dict": OrderedDict([("pre_b", pre_b), ("enc", enc), ("dec", dec)]),
        "d_in": d_in,
        "n_features": n_features,
        "k": k,
        "token_count": token_count,
        "n_iter": token_count,
        "dead_latents": torch.randint(0, 5000, (n_features,), generator=gen).to(torch.float32),
        "log_id": log_id,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def scope_sae_seed(layer: int, token_count: int, seed: int = 0) -> int:
    """The SAE seed of one layer/checkpoint of the fake scope repo (so tests can rebuild its tensors)."""
    return seed * 1000 + layer * 2 + (0 if token_count == FINAL_TOKENS else 1)


def _log_lines(layer: int) -> bytes:
    """A few training-log lines like the CLIP-Scope jsonl logs."""
    lines = [
        {"step": step, "tokens": step * 32768, "mse": round(400.0 / (1 + step / 1000), 3), "layer": layer}
        for step in (0, 1000, 2000, 3000)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@functools.lru_cache(maxsize=4)
def _scope_repo_files(seed: int) -> dict[str, bytes]:
    """Cached bytes of every file in the fake scope repo."""
    files: dict[str, bytes] = {}
    for layer in SCOPE_LAYERS:
        log_id = f"{layer}_resid-{0x425B3AFF + layer + seed:08x}"
        for tokens in (FINAL_TOKENS, EARLY_TOKENS):
            files[f"{layer}_resid/{tokens}.pt"] = tiny_sae_bytes(
                seed=scope_sae_seed(layer, tokens, seed), token_count=tokens, log_id=log_id
            )
    files["20_resid/20_resid-425b3aff.jsonl"] = _log_lines(20)
    files["README.md"] = _SCOPE_README.encode()
    return files


def scope_repo_files(seed: int = 0) -> dict[str, bytes]:
    """Files of the fake "lewington/CLIP-ViT-L-scope" repo, path -> bytes."""
    return dict(_scope_repo_files(seed))


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """Write a path -> bytes mapping under root (creating folders) and return root."""
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root
