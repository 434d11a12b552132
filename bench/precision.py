"""bf16 and tf32 fidelity: the share of fp32's kept (token, feature) pairs that a bf16 or tf32 run keeps too.

Random-weight open_clip ViT-L-14 (no download) hooked at layer 20 and a random SAE 1024 x 65,536 with k = 32, the
index engine's own trunk and encoder, in fp32 (IEEE float32 throughout), tf32 (float32 weights, TF32 CUDA matmuls
and convolutions: the same as fp32 on a CPU) and bf16 (open_clip's low-precision mode: matmuls in bf16, LayerNorms
in fp32; the SAE encoder in bf16), on random-noise pixels. Agreement = mean over tokens of |kept_fp32 & kept_x| / k.
Random weights are not a trained CLIP: the figure says how much rounding moves the top-k boundary at these
shapes, not what a trained model does.

    python bench/precision.py [--images 2] [--device cuda]

Prints the headline last: `bf16_kept_pair_agreement: X`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_models import random_scope_sae  # noqa: E402

from saetui.device import resolve_device
from saetui.models.trunk import VisionTrunk, resolve_precision


def main() -> None:
    """Compare the kept pairs of fp32 and bf16 and print the agreement last."""
    import open_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)  # the random tower is the same in every run
    model = open_clip.create_model("ViT-L-14").eval().requires_grad_(False)
    weights = random_scope_sae()
    pixels = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
    kept = {}
    for name in ("fp32", "tf32", "bf16"):
        dtype = resolve_precision(name)  # sets CUDA's float32 matmul mode for tf32
        visual_model = copy.deepcopy(model).to(device)
        if dtype != torch.float32:
            open_clip.model.convert_weights_to_lp(visual_model.visual, dtype=dtype)
        trunk = VisionTrunk.from_clip(visual_model, 20)
        started = time.perf_counter()
        x = trunk(pixels).reshape(-1, 1024)
        _, features = weights.sparse(device=device, dtype=dtype).encode(x)
        kept[name] = features.cpu()
        print(f"{name}: {args.images} images x 257 tokens in {time.perf_counter() - started:.1f} s on {device}")
    resolve_precision("fp32")
    agreement = {}
    for name in ("tf32", "bf16"):
        a, b = kept["fp32"], kept[name]
        shared = (a[:, :, None] == b[:, None, :]).any(dim=2).float().mean(dim=1)
        agreement[name] = float(shared.mean())
        print(f"{name}: tokens {a.shape[0]}; per-token agreement min {shared.min():.3f}, median {shared.median():.3f}")
    print(f"tf32_kept_pair_agreement: {agreement['tf32']:.4f}")
    print(f"bf16_kept_pair_agreement: {agreement['bf16']:.4f}")


if __name__ == "__main__":
    main()
