"""The independent reference: HF CLIPVisionModel on converted weights and a dense clipscope SAE forward.

Neither function shares code with saetui: the vision reference is HF's own implementation (the one the
CLIP-Scope reference package runs), and the SAE reference is the clipscope forward written plainly
(dense latent, top-k, scatter, dense matmul).
"""

from __future__ import annotations

from typing import Any

import torch

from saetui.families.weights import SaeWeights


def open_clip_to_hf(state_dict: dict[str, torch.Tensor], cfg: dict[str, Any]):
    """A transformers CLIPVisionModel (fp32, eval) holding the vision weights of an open_clip CLIP state dict.

    cfg is the open_clip model_cfg (embed_dim, vision_cfg). in_proj is split into q/k/v; the class and
    positional embeddings, patch conv and the pre/post LayerNorms are renamed to HF's layout.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vision = cfg["vision_cfg"]
    width = vision["width"]
    layers = vision["layers"]
    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=int(width * vision.get("mlp_ratio", 4.0)),
        num_hidden_layers=layers,
        num_attention_heads=width // vision.get("head_width", 64),
        image_size=vision["image_size"],
        patch_size=vision["patch_size"],
        hidden_act="quick_gelu" if cfg.get("quick_gelu", False) else "gelu",
        layer_norm_eps=1e-5,
        projection_dim=cfg["embed_dim"],
    )
    model = CLIPVisionModel(config)
    sd = {k.removeprefix("visual."): v for k, v in state_dict.items() if k.startswith("visual.")}
    hf: dict[str, torch.Tensor] = {
        "embeddings.class_embedding": sd["class_embedding"],
        "embeddings.patch_embedding.weight": sd["conv1.weight"],
        "embeddings.position_embedding.weight": sd["positional_embedding"],
        "pre_layrnorm.weight": sd["ln_pre.weight"],
        "pre_layrnorm.bias": sd["ln_pre.bias"],
        "post_layernorm.weight": sd["ln_post.weight"],
        "post_layernorm.bias": sd["ln_post.bias"],
    }
    for i in range(layers):
        src = f"transformer.resblocks.{i}."
        dst = f"encoder.layers.{i}."
        q, k, v = sd[src + "attn.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = sd[src + "attn.in_proj_bias"].chunk(3, dim=0)
        hf.update(
            {
                dst + "self_attn.q_proj.weight": q,
                dst + "self_attn.q_proj.bias": qb,
                dst + "self_attn.k_proj.weight": k,
                dst + "self_attn.k_proj.bias": kb,
                dst + "self_attn.v_proj.weight": v,
                dst + "self_attn.v_proj.bias": vb,
                dst + "self_attn.out_proj.weight": sd[src + "attn.out_proj.weight"],
                dst + "self_attn.out_proj.bias": sd[src + "attn.out_proj.bias"],
                dst + "layer_norm1.weight": sd[src + "ln_1.weight"],
                dst + "layer_norm1.bias": sd[src + "ln_1.bias"],
                dst + "layer_norm2.weight": sd[src + "ln_2.weight"],
                dst + "layer_norm2.bias": sd[src + "ln_2.bias"],
                dst + "mlp.fc1.weight": sd[src + "mlp.c_fc.weight"],
                dst + "mlp.fc1.bias": sd[src + "mlp.c_fc.bias"],
                dst + "mlp.fc2.weight": sd[src + "mlp.c_proj.weight"],
                dst + "mlp.fc2.bias": sd[src + "mlp.c_proj.bias"],
            }
        )
    # Older transformers nest the tower under "vision_model."; follow whatever this version's model uses.
    prefix = "vision_model." if any(k.startswith("vision_model.") for k in model.state_dict()) else ""
    model.load_state_dict({prefix + k: v.clone() for k, v in hf.items()}, strict=True)
    return model.eval()


def hf_hidden_states(model, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """HF hidden states: index 0 = embeddings after pre-LN, index L + 1 = output of block L."""
    with torch.no_grad():
        return model(pixel_values=pixels, output_hidden_states=True).hidden_states


def dense_reference_encode(ckpt: SaeWeights, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """clipscope's TopKSAE forward in fp32: (top-k values [T, k], top-k indices [T, k], recon [T, d])."""
    pre_b, enc, dec = ckpt.input_bias.float(), ckpt.enc.float(), ckpt.dec.float()
    pre_activation = (x.float() - pre_b) @ enc  # dense [T, n_features], no ReLU
    top = torch.topk(pre_activation, k=ckpt.k, dim=-1)
    latent = torch.zeros((x.shape[0], dec.shape[0]), dtype=dec.dtype)
    latent.scatter_(dim=-1, index=top.indices, src=top.values)
    reconstruction = latent @ dec + pre_b
    return top.values, top.indices, reconstruction
