"""What every family's loader returns: the SAE's tensors, its encode rule, and what its files say it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from saetui.families.normalisers import Normaliser
from saetui.families.sparse import DEFAULT_FEATURE_BLOCK, DEFAULT_TOKEN_CHUNK, Activation, SparseSae


@dataclass(frozen=True)
class SaeWeights:
    """One loaded SAE checkpoint in family-neutral form (see saetui.families.sparse for the forward)."""

    family: str
    enc: torch.Tensor  # [d_in, n_features]
    dec: torch.Tensor  # [n_features, d_in]
    activation: Activation
    path: Path
    b_enc: torch.Tensor | None = None  # [n_features]
    b_dec: torch.Tensor | None = None  # [d_in], added to the decoder output
    input_bias: torch.Tensor | None = None  # [d_in], subtracted before the encoder
    normaliser: Normaliser = field(default_factory=Normaliser)
    token_count: int | None = None  # tokens trained, where the file says
    log_id: str | None = None
    needs_scaling: bool = False  # saev release era: inputs scaled by (x - mu) / s that the file does not hold

    @property
    def d_in(self) -> int:
        """Width of the activations the SAE reads."""
        return int(self.enc.shape[0])

    @property
    def n_features(self) -> int:
        """Number of latents."""
        return int(self.enc.shape[1])

    @property
    def k(self) -> int | None:
        """k of a TopK SAE, None for a threshold (ReLU) SAE."""
        return self.activation.k

    def sparse(
        self,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        keep_top: int | None = None,
        normaliser: Normaliser | None = None,
        token_chunk: int = DEFAULT_TOKEN_CHUNK,
        feature_block: int = DEFAULT_FEATURE_BLOCK,
    ) -> SparseSae:
        """The encoder on device/dtype (normaliser overrides the file's, e.g. with estimated constants)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            """t on the target device in the target dtype."""
            return None if t is None else t.to(device=device, dtype=dtype)

        return SparseSae(
            move(self.enc),
            move(self.dec),
            self.activation,
            b_enc=move(self.b_enc),
            b_dec=move(self.b_dec),
            input_bias=move(self.input_bias),
            normaliser=(normaliser or self.normaliser).to(device),
            keep_top=keep_top,
            token_chunk=token_chunk,
            feature_block=feature_block,
        )
