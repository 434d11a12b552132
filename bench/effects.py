"""Causal-effect cost: seconds per feature for ablation over N = 16 top images, random-weight real shapes.

Builds open_clip's ViT-L-14 with random weights (no download), hooks it at layer 20 (blocks 21-23, ln_post and the
projection follow), and a random SAE of the real shape (1024 x 65,536, k = 32) in the CLIP-Scope form; 1,000 random
unit text embeddings stand in for the label set. Each image's hook activations are computed once, then every
feature's ablated branch runs the rest of the tower (saetui.effects.interventions, the code `saetui effects` runs),
FINISH_CHUNK branches at a time. The figure: (time for the branches of one image) / branches x 16.

    python bench/effects.py [--device cpu] [--branches 32] [--images 2]

Prints the headline last: `seconds_per_feature_at_16: S`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_models import random_scope_sae  # noqa: E402

from saetui.device import resolve_device
from saetui.effects.context import EffectContext
from saetui.effects.interventions import ablate, hook_state
from saetui.models.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocessing
from saetui.models.trunk import VisionTrunk
from saetui.stats.run_info import RunInfo


def build(device: torch.device) -> EffectContext:
    """A random-weight ViT-L-14 and real-shape SAE wrapped as an EffectContext."""
    import open_clip

    model = open_clip.create_model("ViT-L-14", device=device).eval().requires_grad_(False)
    weights = random_scope_sae()
    gen = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(1000, 768, generator=gen), dim=1)
    trunk = VisionTrunk.from_clip(model, 20)
    return EffectContext(
        trunk=trunk,
        sae=weights.sparse(device=device),
        prep=Preprocessing(224, 224, OPENAI_MEAN, OPENAI_STD, "bench"),
        positions=torch.arange(257, device=device),
        labels=[f"class {i}" for i in range(1000)],
        text=text.to(device),
        scale=100.0,
        run=RunInfo(65536, "bench", None, None, None, None, None, 20, 32, "all"),
    )


def main() -> None:
    """Time the ablation branches and print seconds per feature at N = 16 last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--branches", type=int, default=32, help="features ablated per image")
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device(args.device)
    ctx = build(device)
    pixels = torch.randn(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
    start = time.perf_counter()
    state = hook_state(ctx, pixels)
    hook_seconds = time.perf_counter() - start
    per_image = []
    for image in range(args.images):
        active = torch.unique(state.features[image][state.values[image] > 0])[: args.branches]
        start = time.perf_counter()
        ablate(ctx, state, image, active)
        if device.type == "cuda":
            torch.cuda.synchronize()
        per_image.append((time.perf_counter() - start) / len(active))
    per_branch = min(per_image)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"hook activations (blocks 0-20 + SAE encode) for {args.images} images: {hook_seconds:.2f} s")
    print(f"one ablation branch (blocks 21-23, ln_post, proj, 1,000 logits): {per_branch * 1000:.1f} ms (best image)")
    print(f"seconds_per_feature_at_16: {16 * per_branch:.3f}")


if __name__ == "__main__":
    main()
