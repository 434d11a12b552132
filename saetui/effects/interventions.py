"""Exact interventions at the hook: a feature's contribution replaced, the reconstruction error kept as it is.

For stored token t with SAE code v_t,f and decoder row dec_f, an edit sets the feature to a target value u_t:
the SAE-space output changes by (u_t - v_t,f) dec_f, mapped back through the SAE's own normaliser exactly
(n^-1 is affine in its argument for every family, so the change in activation space is
n^-1(y + d, x) - n^-1(y, x)); everything else of x_t, the error e_t = x_t - r_t included, stays.
- ablation: u_t = 0 where the feature is kept and active (v_t,f > 0): x'_t = x_t - v_t,f dec_f;
- steering: u_t = c max_f on every stored token (saev's convention, c on a slider, max_f over the dataset).
The edited residual stream then runs the blocks after the hook, the tower's pooling, ln_post and projection; an
SAE on mlp_out edits the residual by the same amount (the MLP output is added to it), a pooled SAE the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saetui.effects.context import EffectContext

FINISH_CHUNK = 32  # edited copies of one image run through the rest of the tower at once


@dataclass
class HookState:
    """One batch of images at the hook: activations, residual stream, SAE codes of the stored tokens, logits."""

    hook: torch.Tensor  # [B, N, d] float32, every position
    residual: torch.Tensor | None  # [B, N, width] float32 after block L (None for a pooled SAE)
    values: torch.Tensor  # [B, T, K] codes of the stored tokens (unused slots 0)
    features: torch.Tensor  # [B, T, K] (-1 in unused slots)
    logits: torch.Tensor  # [B, labels] of the unedited model


def hook_state(ctx: EffectContext, pixels: torch.Tensor) -> HookState:
    """Run a batch up to the hook, encode the stored tokens and score the unedited embeddings."""
    with torch.no_grad():
        hook, residual = ctx.trunk.hook_and_residual(pixels)
        hook = hook.float()
        stored = hook[:, ctx.positions]
        values, features = ctx.sae.encode(stored.reshape(-1, stored.shape[-1]))
        shape = (*stored.shape[:2], values.shape[-1])
        embeddings = hook[:, 0] if residual is None else ctx.trunk.finish(residual)
        return HookState(
            hook=hook,
            residual=None if residual is None else residual.float(),
            values=values.reshape(shape),
            features=features.reshape(shape),
            logits=ctx.logits(embeddings),
        )


def feature_values(state: HookState, image: int, features: torch.Tensor) -> torch.Tensor:
    """v [F, T]: each feature's code on each stored token of one image (0 where not kept)."""
    match = state.features[image][None] == features[:, None, None]
    return (match * state.values[image][None]).sum(dim=-1)


def deltas(
    ctx: EffectContext, state: HookState, image: int, features: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """The change of the hook activations [F, N, d] when each feature's codes go from v to target [F, T]."""
    current = feature_values(state, image, features)
    rows = ctx.sae.dec[features].float()  # [F, d]
    sae_space = (target - current)[..., None] * rows[:, None, :]  # [F, T, d]
    x = state.hook[image, ctx.positions]  # [T, d]
    normaliser = ctx.sae.normaliser
    change = normaliser.invert(sae_space, x) - normaliser.invert(torch.zeros_like(x), x)
    full = torch.zeros((len(features), *state.hook.shape[1:]), dtype=torch.float32, device=x.device)
    full[:, ctx.positions] = change
    return full


def edited_embeddings(ctx: EffectContext, state: HookState, image: int, change: torch.Tensor) -> torch.Tensor:
    """Image embeddings [F, E] (not normalised) of one image with each of F hook edits [F, N, d] applied."""
    out = []
    with torch.no_grad():
        for start in range(0, change.shape[0], FINISH_CHUNK):
            part = change[start : start + FINISH_CHUNK]
            if state.residual is None:
                out.append(state.hook[image, 0][None] + part[:, 0])
            else:
                out.append(ctx.trunk.finish(state.residual[image][None] + part).float())
    return torch.cat(out)


def edited_logits(ctx: EffectContext, state: HookState, image: int, change: torch.Tensor) -> torch.Tensor:
    """Logits [F, labels] of one image with each of F hook edits [F, N, d] applied."""
    return ctx.logits(edited_embeddings(ctx, state, image, change))


def ablate(ctx: EffectContext, state: HookState, image: int, features: torch.Tensor) -> torch.Tensor:
    """Logit changes [F, labels] of ablating each feature on the tokens where it is kept and active."""
    current = feature_values(state, image, features)
    target = torch.where(current > 0, torch.zeros_like(current), current)
    change = deltas(ctx, state, image, features, target)
    return edited_logits(ctx, state, image, change) - state.logits[image][None]


def steer(
    ctx: EffectContext, state: HookState, image: int, feature: int, value: float, tokens: torch.Tensor | None = None
) -> torch.Tensor:
    """The embedding [E] of one image with the feature set to `value` on every stored token (or on `tokens`)."""
    features = torch.tensor([feature], device=state.values.device)
    current = feature_values(state, image, features)
    target = torch.full_like(current, value)
    if tokens is not None:
        chosen = torch.zeros_like(current, dtype=torch.bool)
        chosen[:, tokens] = True
        target = torch.where(chosen, target, current)
    return edited_embeddings(ctx, state, image, deltas(ctx, state, image, features, target))[0]
