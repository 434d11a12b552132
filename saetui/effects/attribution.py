"""Per-image attribution: gradient x activation of a class logit with respect to every kept (token, feature) code.

With the codes v as the variables of the edit x'_t = x_t + n^-1((v_t - v0_t) dec) (x' = x at v = v0), the attribution
of feature f is sum_t v_t,f * dz_c / dv_t,f: the first-order estimate of what ablating f does to z_c. The top
features are then confirmed by exact ablation, and the agreement (same sign, and the rank correlation of the two)
is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saetui.effects.context import EffectContext
from saetui.effects.interventions import HookState, ablate


@dataclass(frozen=True)
class Attribution:
    """Features ranked by attribution to one class of one image, the top ones confirmed by ablation."""

    label: str
    features: list[int]
    attribution: list[float]  # estimated change of z_c when the feature is removed is minus this
    ablation: list[float | None]  # exact delta z_c of ablating it (the confirmed ones), None beyond
    sign_agreement: float | None  # share of confirmed features where -attribution and ablation share a sign
    rank_correlation: float | None  # Spearman correlation of attribution and -ablation over the confirmed ones


def attribute(
    ctx: EffectContext, state: HookState, image: int, label: int | None = None, top: int = 10, confirm: int = 5
) -> Attribution:
    """Attribution of the image's codes to class `label` (default: the model's top-1)."""
    label = int(state.logits[image].argmax()) if label is None else label
    x = state.hook[image, ctx.positions]  # [T, d]
    values0 = state.values[image]
    features = state.features[image]
    kept = features >= 0
    rows = ctx.sae.dec[features.clamp(min=0)].float()  # [T, K, d]
    values = values0.clone().requires_grad_(True)
    with torch.enable_grad():
        sae_space = ((values - values0)[..., None] * rows * kept[..., None]).sum(dim=1)  # [T, d]
        normaliser = ctx.sae.normaliser
        change = normaliser.invert(sae_space, x) - normaliser.invert(torch.zeros_like(x), x)
        full = torch.zeros_like(state.hook[image]).index_add(0, ctx.positions, change)
        if state.residual is None:
            embedding = state.hook[image, 0] + full[0]
        else:
            embedding = ctx.trunk.finish((state.residual[image] + full)[None])[0]
        ctx.logits(embedding[None])[0, label].backward()
    per_slot = (values.grad * values0 * (kept & (values0 > 0))).detach()  # the pairs an ablation removes
    n = ctx.sae.n_features
    per_feature = torch.zeros(n, dtype=torch.float32, device=per_slot.device)
    per_feature.index_add_(0, features.clamp(min=0).reshape(-1), per_slot.reshape(-1))
    active = torch.unique(features[kept & (values0 > 0)])
    scores = per_feature[active]
    order = torch.argsort(scores.abs(), descending=True)[:top]
    chosen = active[order]
    checked = chosen[:confirm]
    exact = ablate(ctx, state, image, checked)[:, label].cpu().numpy() if len(checked) else np.zeros(0)
    estimate = scores[order].cpu().numpy()
    sign = rank = None
    if len(checked):
        sign = float(np.mean(np.sign(-estimate[: len(checked)]) == np.sign(exact)))
    if len(checked) >= 3:
        a = np.argsort(np.argsort(estimate[: len(checked)]))
        b = np.argsort(np.argsort(-exact))
        rank = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None
    return Attribution(
        label=ctx.labels[label],
        features=[int(f) for f in chosen.cpu().tolist()],
        attribution=[float(v) for v in estimate],
        ablation=[float(v) for v in exact] + [None] * (len(chosen) - len(checked)),
        sign_agreement=sign,
        rank_correlation=rank,
    )
