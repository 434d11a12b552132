"""Random-weight stand-ins at real shapes for the benchmarks (nothing here is a trained model)."""

from __future__ import annotations

import torch

from saetui.families.sparse import Activation
from saetui.families.weights import SaeWeights


def random_scope_sae(d_in: int = 1024, n_features: int = 65536, k: int = 32, seed: int = 0) -> SaeWeights:
    """A CLIP-Scope-shaped TopK SAE with seeded random weights (unit decoder rows, a small pre_b)."""
    gen = torch.Generator().manual_seed(seed)
    pre_b = 0.1 * torch.randn(d_in, generator=gen)
    return SaeWeights(
        family="clip-scope",
        enc=torch.randn(d_in, n_features, generator=gen) / d_in**0.5,
        dec=torch.nn.functional.normalize(torch.randn(n_features, d_in, generator=gen), dim=1),
        activation=Activation("topk", k=k),
        path=None,  # type: ignore[arg-type]
        b_dec=pre_b,
        input_bias=pre_b,
    )
