"""Splicing an SAE into the open_clip vision tower: a forward hook that fans each batch out into three conditions.

The hook sits on ``visual.transformer.resblocks[layer]``. For a batch of B images it encodes the block's output
x with the SAE, decodes the kept latents (reconstruction r, error e = x - r) and replaces the output with the
3B-image batch [x; r; r + e], so blocks 0..layer run once and every later block, the final LayerNorm, the pool
and the projection see the three conditions in the same pass: ``original``, ``reconstruction`` (the SAE output
replaces the residual stream for all tokens) and ``reconstruction+error`` (r + e, which must equal the original
up to float rounding; a check that the splice itself changes nothing). The last batch's activations and codes
wait on the splice (take_batch) for the reconstruction metrics.
"""

from __future__ import annotations

from types import TracebackType

import torch

from saetui.errors import DataError
from saetui.families.sparse import SparseSae
from saetui.models.trunk import blocks_are_sequence_first

CONDITIONS: tuple[str, ...] = ("original", "reconstruction", "reconstruction+error")


def hooked_block(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The vision tower's residual block `layer` (0-indexed) of an open_clip CLIP model."""
    transformer = getattr(getattr(model, "visual", None), "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if blocks is None:
        raise DataError("the model's vision tower has no transformer.resblocks", "use an open_clip ViT CLIP model")
    if not 0 <= layer < len(blocks):
        raise DataError(
            f"layer {layer} does not exist: the vision tower has blocks 0..{len(blocks) - 1}",
            "check the layer of the SAE entry",
        )
    return blocks[layer]


class SaeSplice:
    """A context manager that hooks the SAE into one block and fans every batch out into the three conditions."""

    def __init__(self, model: torch.nn.Module, layer: int, sae: SparseSae) -> None:
        """Prepare the hook on the model's vision block `layer` (registered on entering the context)."""
        self.block = hooked_block(model, layer)
        self.batch_first = not blocks_are_sequence_first(model.visual.transformer)
        self.sae = sae
        self.activations: torch.Tensor | None = None  # float32 [B * T, d] of the last batch, image-major
        self.values: torch.Tensor | None = None  # [B * T, k]
        self.indices: torch.Tensor | None = None  # [B * T, k]
        self.reconstruction: torch.Tensor | None = None  # float32 [B * T, d]
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> SaeSplice:
        """Register the forward hook."""
        self._handle = self.block.register_forward_hook(self._hook)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Remove the forward hook."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def take_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(activations, reconstruction, values, indices) of the batch the hook last saw, handed over once."""
        if self.activations is None or self.reconstruction is None or self.values is None or self.indices is None:
            raise DataError("the SAE hook did not run during the forward pass", "use an open_clip ViT CLIP model")
        taken = (self.activations, self.reconstruction, self.values, self.indices)
        self.activations = self.reconstruction = self.values = self.indices = None
        return taken

    def _hook(self, module: torch.nn.Module, args: tuple[object, ...], output: object) -> torch.Tensor:
        """Replace the block output [B, T, d] by [original; reconstruction; reconstruction + error] along B."""
        if not isinstance(output, torch.Tensor) or output.ndim != 3:
            raise DataError("the hooked block did not return a [batch, tokens, width] tensor", "use an open_clip ViT")
        x = output if self.batch_first else output.transpose(0, 1)
        n_images, n_tokens, width = x.shape
        flat = x.reshape(-1, width).float()
        values, indices = self.sae.encode(flat)
        recon = self.sae.reconstruct(flat, values, indices)
        error = flat - recon
        self.activations, self.values, self.indices, self.reconstruction = flat, values, indices, recon
        fanned = torch.cat([flat, recon, recon + error]).reshape(len(CONDITIONS) * n_images, n_tokens, width)
        fanned = fanned.to(output.dtype)
        return fanned if self.batch_first else fanned.transpose(0, 1)
