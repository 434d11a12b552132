"""bf16 fidelity: the share of fp32's kept (token, feature) pairs that a bf16 run keeps too, at real shapes.

Random-weight open_clip ViT-L-14 (no download) hooked at layer 20 and a random SAE 1024 x 65,536 with k = 32, the
index engine's own trunk and encoder, once in fp32 and once in bf16 (open_clip's low-precision mode: matmuls in
bf16, LayerNorms in fp32; the SAE encoder in bf16), on random-noise pixels. Agreement = mean over tokens of
|kept_fp32 & kept_bf16| / k. Random weights are not a trained CLIP: the figure says how much bf16 rounding moves
the top-k boundary at these shapes, not what a trained model does.

    python bench/precision.py [--images 2]

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

from saetui.models.trunk import VisionTrunk


def main() -> None:
    """Compare the kept pairs of fp32 and bf16 and print the agreement last."""
    import open_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args()
    model = open_clip.create_model("ViT-L-14").eval().requires_grad_(False)
    weights = random_scope_sae()
    pixels = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    kept = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        visual_model = copy.deepcopy(model)
        if dtype != torch.float32:
            open_clip.model.convert_weights_to_lp(visual_model.visual, dtype=dtype)
        trunk = VisionTrunk.from_clip(visual_model, 20)
        started = time.perf_counter()
        x = trunk(pixels).reshape(-1, 1024)
        _, features = weights.sparse(dtype=dtype).encode(x)
        kept[name] = features
        print(f"{name}: {args.images} images x 257 tokens in {time.perf_counter() - started:.1f} s")
    a, b = kept["fp32"], kept["bf16"]
    shared = (a[:, :, None] == b[:, None, :]).any(dim=2).float().mean(dim=1)
    print(f"tokens {a.shape[0]}; per-token agreement min {shared.min():.3f}, median {shared.median():.3f}")
    print(f"bf16_kept_pair_agreement: {shared.mean():.4f}")


if __name__ == "__main__":
    main()
