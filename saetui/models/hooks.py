"""Hook points: where in the vision tower an SAE reads its activations, and which tokens it reads there.

Sites follow HookedViT's names (ViT-Prisma) on open_clip's blocks, 0-indexed:

* ``resid_post``: output of block L (``blocks.{L}.hook_resid_post``; CLIP-Scope, saev, dictionary_learning);
* ``mlp_out``: block L's MLP output before it is added to the residual stream (``blocks.{L}.hook_mlp_out``);
* ``attn_out``: block L's attention output before it is added (``blocks.{L}.hook_attn_out``);
* ``pooled``: the tower's final image embedding (ln_post on the pooled token, then the projection), one token.

Token positions: 0 = CLS (or the pooled embedding), 1..rows*cols = patches row-major.
"""

from __future__ import annotations

from dataclasses import dataclass

from saetui.errors import UsageError

HOOK_SITES = ("resid_post", "mlp_out", "attn_out", "pooled")
TOKEN_SETS = ("all", "cls", "patches")


@dataclass(frozen=True)
class HookPoint:
    """A site of a block (the layer is ignored for the pooled embedding)."""

    layer: int
    site: str = "resid_post"

    def __post_init__(self) -> None:
        """Refuse an unknown site."""
        if self.site not in HOOK_SITES:
            raise UsageError(f"unknown hook site {self.site!r}", f"use one of {', '.join(HOOK_SITES)}")

    def name(self) -> str:
        """HookedViT's name of the hook (e.g. blocks.11.hook_resid_post), or 'pooled'."""
        return "pooled" if self.site == "pooled" else f"blocks.{self.layer}.hook_{self.site}"


def check_token_set(tokens: str, site: str) -> str:
    """tokens, after checking it is a token set the site has (the pooled embedding is one token)."""
    if tokens not in TOKEN_SETS:
        raise UsageError(f"unknown token set {tokens!r}", f"use one of {', '.join(TOKEN_SETS)}")
    if site == "pooled" and tokens == "patches":
        raise UsageError("the pooled embedding has no patch tokens", "use --tokens all or cls with a pooled SAE")
    return tokens
