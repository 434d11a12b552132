"""Tiny models and SAE checkpoints in each family's exact on-disk format, served under the real repo ids.

Models keep the geometry that decides fidelity and shrink the width to 32:
  - ViT-B/32 (laion DataComp, ViT-Prisma's model): 224 px, patch 32 -> 7 x 7 + CLS = 50 tokens, 12 blocks;
  - ViT-B/16 (OpenAI, saev's): 224 px, patch 16 -> 14 x 14 + CLS = 197 tokens, 12 blocks;
  - ViT-L/14-336 (OpenAI, Pach et al.'s): 336 px, patch 14 -> 24 x 24 + CLS = 577 tokens, 24 blocks.
Open_clip model repos carry no preprocessor_config.json here, like the timm/ repos on the hub.

SAE files: ViT-Prisma config.json + n_images_2600058.pt (a plain state dict); saev sae.pt = JSON header line +
torch.save(state dict) in the legacy and the schema-5 header forms; dictionary_learning config.json + ae.pt in
the Matryoshka (W_enc ...) and the TopK (encoder.weight ...) layouts.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections import OrderedDict

import torch

from harness.tiny import _randomise
from saetui.registry import BUILTIN_SPECS

WIDTH = 32
PRISMA_MODEL = "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"
SAEV_MODEL = "timm/vit_base_patch16_clip_224.openai"
PACH_MODEL = "timm/vit_large_patch14_clip_336.openai"
PACH_REPO = "mateuszpach/sae-for-vlm"
PRISMA_REPO = "Prisma-Multimodal/sparse-autoencoder-clip-b-32-sae-vanilla-x64-layer-11-hook_resid_post-l1-1e-05"
PRISMA_MLP_REPO = "Prisma-Multimodal/sparse-autoencoder-clip-b-32-sae-vanilla-x64-layer-11-hook_mlp_out-l1-1e-05"
SAEV_REPO = "osunlp/SAE_CLIP_24K_ViT-B-16_IN1K"
SAEV5_REPO = "osunlp/SAE_DINOv3_TopK_ViT-L-16_IN1K"  # a schema-5 header (served on the B/16 stand-in)
EXPANSION = 16
GEOMETRY = {  # model repo -> (image size, patch, blocks, quick_gelu, mean/std in preprocess_cfg)
    PRISMA_MODEL: (224, 32, 12, False, None),
    SAEV_MODEL: (224, 16, 12, True, "openai"),
    PACH_MODEL: (336, 14, 24, True, "openai"),
}


def model_config(repo: str) -> dict:
    """open_clip_config.json of a tiny stand-in model."""
    size, patch, layers, quick_gelu, _ = GEOMETRY[repo]
    cfg: dict = {
        "model_cfg": {
            "embed_dim": 16,
            "quick_gelu": quick_gelu,
            "vision_cfg": {"image_size": size, "layers": layers, "width": WIDTH, "head_width": 16, "patch_size": patch},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    if repo == PRISMA_MODEL:
        cfg["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    return cfg


@functools.lru_cache(maxsize=4)
def model_repo_files(repo: str, seed: int = 1) -> dict[str, bytes]:
    """Files of a tiny open_clip model repo (config, safetensors weights)."""
    import open_clip
    from safetensors.torch import save as save_safetensors

    cfg = model_config(repo)["model_cfg"]
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**cfg["text_cfg"]),
        quick_gelu=cfg["quick_gelu"],
    )
    _randomise(model, seed)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return {
        "open_clip_config.json": json.dumps(model_config(repo), indent=2).encode(),
        "open_clip_model.safetensors": save_safetensors(state),
    }


def sae_tensors(n_features: int, seed: int, d_in: int = WIDTH) -> dict[str, torch.Tensor]:
    """Seeded W_enc [d, n], b_enc [n], W_dec [n, d] (unit rows), b_dec [d] of a ReLU-style SAE.

    b_enc is negative on average so a ReLU keeps a fraction of the latents, and a few latents get a large negative
    bias so they never fire.
    """
    gen = torch.Generator().manual_seed(30_000 + seed)
    enc = torch.randn(d_in, n_features, generator=gen) / math.sqrt(d_in)
    b_enc = -0.3 + 0.2 * torch.randn(n_features, generator=gen)
    b_enc[:4] = -50.0
    dec = torch.randn(n_features, d_in, generator=gen)
    dec = dec / dec.norm(dim=1, keepdim=True)
    b_dec = 0.3 * torch.randn(d_in, generator=gen)
    return {"W_enc": enc.contiguous(), "b_enc": b_enc, "W_dec": dec.contiguous(), "b_dec": b_dec}


def _saved(obj: object) -> bytes:
    """torch.save bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def prisma_config(
    layer: int, site: str, normalise: str, activation: str = "relu", k: int = 64, **extra: object
) -> dict:
    """A ViT-Prisma config.json with the fields that change the maths."""
    return {
        "model_class_name": "HookedViT",
        "model_name": f"open-clip:{PRISMA_MODEL}",
        "hook_point_layer": layer,
        "layer_subtype": f"hook_{site}",
        "context_size": 50,
        "d_in": WIDTH,
        "expansion_factor": EXPANSION,
        "activation_fn_str": activation,
        "activation_fn_kwargs": {"k": k} if activation == "topk" else {},
        "normalize_activations": normalise,
        "architecture": "standard",
        "is_transcoder": False,
        "cls_token_only": False,
        "use_patches_only": False,
        **extra,
    }


def prisma_repo_files(config: dict, seed: int) -> dict[str, bytes]:
    """config.json + n_images_2600058.pt (an OrderedDict of tensors, as on the hub)."""
    state = OrderedDict(sae_tensors(WIDTH * EXPANSION, seed))
    return {"config.json": json.dumps(config, indent=2).encode(), "n_images_2600058.pt": _saved(state)}


def saev_file(header: dict, seed: int, threshold: float | None = None) -> bytes:
    """A saev sae.pt: one JSON header line, then torch.save(state dict)."""
    state = OrderedDict(sae_tensors(WIDTH * EXPANSION, seed))
    if threshold is not None:
        state["activation.threshold"] = torch.tensor(threshold)
    return (json.dumps(header) + "\n").encode() + _saved(state)


SAEV_LEGACY_HEADER = {
    "d_vit": WIDTH, "exp_factor": EXPANSION, "n_reinit_samples": 524288, "sparsity_coeff": 0.0004,
    "ghost_grads": False, "remove_parallel_grads": True, "normalize_w_dec": True, "seed": 42,
}  # fmt: skip
SAEV_SCHEMA5_HEADER = {
    "schema": 5,
    "cfg": {"d_model": WIDTH, "exp_factor": EXPANSION, "activation": {"cls": "TopK", "params": {"top_k": 16}}},
    "commit": "0000000",
    "lib": "1.0.0",
}


def dl_files(layout: str, seed: int, threshold: float = 0.15, k: int = 20) -> dict[str, bytes]:
    """config.json + ae.pt of a dictionary_learning SAE: layout 'matryoshka' (W_enc ...) or 'topk' (encoder.weight)."""
    t = sae_tensors(WIDTH * EXPANSION, seed)
    n = WIDTH * EXPANSION
    if layout == "matryoshka":
        sizes = [n // 16, n // 8, n // 4, n - n // 16 - n // 8 - n // 4]
        state = OrderedDict(
            [("W_enc", t["W_enc"]), ("b_enc", t["b_enc"]), ("W_dec", t["W_dec"]), ("b_dec", t["b_dec"]),
             ("k", torch.tensor(k, dtype=torch.int)), ("threshold", torch.tensor(threshold)),
             ("group_sizes", torch.tensor(sizes))]
        )  # fmt: skip
        dict_class = "MatryoshkaBatchTopKSAE"
    else:
        state = OrderedDict(
            [("encoder.weight", t["W_enc"].T.contiguous()), ("encoder.bias", t["b_enc"]),
             ("decoder.weight", t["W_dec"].T.contiguous()), ("b_dec", t["b_dec"]),
             ("k", torch.tensor(k, dtype=torch.int)), ("threshold", torch.tensor(-1.0))]
        )  # fmt: skip
        dict_class = "AutoEncoderTopK"
    config = {
        "trainer": {"dict_class": dict_class, "activation_dim": WIDTH, "dict_size": n, "k": k, "layer": 22},
        "buffer": {"d_submodule": WIDTH},
    }
    return {"config.json": json.dumps(config).encode(), "ae.pt": _saved(state)}


@functools.lru_cache(maxsize=1)
def family_repos() -> dict[str, dict[str, bytes]]:
    """Every family repo the fake hub serves: the built-in Prisma and saev entries, a schema-5 saev repo, Pach's."""
    repos: dict[str, dict[str, bytes]] = {}
    for i, spec in enumerate(s for s in BUILTIN_SPECS if s.family == "vit-prisma"):
        activation, normalise = ("topk", "none") if spec.k else ("relu", "layer_norm")
        if spec.hook == "mlp_out":
            normalise = "constant_norm_rescale"
        config = prisma_config(spec.layer, spec.hook, normalise, activation, k=8, cls_token_only=spec.tokens == "cls")
        repos[spec.repo_id] = prisma_repo_files(config, seed=100 + i)
    repos[SAEV_REPO] = {"sae.pt": saev_file(SAEV_LEGACY_HEADER, seed=200), "README.md": b"# saev stand-in\n"}
    repos[SAEV5_REPO] = {"sae.pt": saev_file(SAEV_SCHEMA5_HEADER, seed=201)}
    pach = {f"clip-vit-l14-336/layer22/trainer_0/{name}": data for name, data in dl_files("matryoshka", 300).items()}
    repos[PACH_REPO] = pach
    for repo in GEOMETRY:
        repos[repo] = model_repo_files(repo)
    return repos


def serve_families(hub: object) -> None:
    """Serve every family repo under its real id."""
    for repo, files in family_repos().items():
        hub.add_repo(repo, files)
