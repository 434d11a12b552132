"""Everything an intervention needs from a database: its SAE, the full CLIP, the label set and the originals.

The database holds codes, not activations, so the hook activations of an image are recomputed from its original
file (images.path) with the run's own model, preprocessing and SAE; a database whose originals are gone says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import torch

from saetui.device import resolve_device, to_device
from saetui.errors import DataError, NotFoundError, UsageError
from saetui.families.loading import load_sae
from saetui.families.sparse import SparseSae
from saetui.ingest.decoding import decode_rgb
from saetui.ingest.indexer import stored_scaling
from saetui.ingest.pipeline import token_positions
from saetui.models.preprocess import Preprocessing, load_preprocessing, preprocess_image
from saetui.models.trunk import WEIGHT_FILES, VisionTrunk, load_clip
from saetui.paths import cache_dir, file_identity
from saetui.stats.lens import logit_scale, prompt_templates, text_embeddings
from saetui.stats.model_steps import lens_labels
from saetui.stats.run_info import RunInfo, cached_sae_files, read_run


@dataclass
class EffectContext:
    """The model path from the hook to the class logits, the SAE, and the labels scored."""

    trunk: VisionTrunk
    sae: SparseSae
    prep: Preprocessing
    positions: torch.Tensor  # hook positions of the stored tokens (long, on the device)
    labels: list[str]
    text: torch.Tensor  # normalised text embeddings [labels, embed] on the device
    scale: float  # the model's logit scale
    run: RunInfo

    @property
    def device(self) -> torch.device:
        """Where the model and SAE live."""
        return self.trunk.device

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """z_c = s cos(e, t_c) for image embeddings [B, E] -> [B, labels] float32."""
        return self.scale * torch.nn.functional.normalize(embeddings.float(), dim=-1) @ self.text.T

    def pixels(self, paths: list[str]) -> torch.Tensor:
        """Model inputs [B, 3, H, W] of original image files, prepared as the run prepared them."""
        out = []
        for path in paths:
            if not path or not Path(path).is_file():
                raise NotFoundError(
                    f"the original image {path} is gone: interventions recompute activations from the originals",
                    "run from where the indexed files are, or index them again",
                )
            out.append(preprocess_image(decode_rgb(Path(path).read_bytes()), self.prep))
        return to_device(np.stack(out), self.device)


def open_context(
    con: duckdb.DuckDBPyConnection, cache: str | Path | None = None, device: str = "auto"
) -> EffectContext:
    """Load the run's SAE and full CLIP from the cache and the label set of the logit lens."""
    run = read_run(con)
    if run.hook == "attn_out":
        raise UsageError("interventions at attn_out are not supported", "use an SAE on resid_post, mlp_out or pooled")
    files = cached_sae_files(run, cache)
    if files.model_dir is None or files.spec is None:
        raise NotFoundError("the run's model files are not in the cache", f"run `saetui fetch {run.sae_name}`")
    torch_device = resolve_device(device)
    weights = load_sae(files.spec, files.checkpoint_path, files.config_path)
    if weights.n_features != run.n_features:
        raise DataError(f"the cached SAE has {weights.n_features} features, the database {run.n_features}", "refetch")
    scaling = stored_scaling(con)
    keep = int(run.k) if run.k and weights.k is None else None
    sae = weights.sparse(device=torch_device, keep_top=keep, normaliser=scaling)
    model = load_clip(files.model_dir, torch_device)
    trunk = VisionTrunk.from_clip(model, run.layer or 0, run.hook)
    labels, _ = lens_labels(con)
    weights_file = next(files.model_dir / name for name in WEIGHT_FILES if (files.model_dir / name).is_file())
    text = text_embeddings(
        model, files.model_dir, labels, prompt_templates("single"), cache_dir(cache), file_identity(weights_file)
    )
    positions = token_positions(run.tokens or "all", trunk.n_tokens).astype(np.int64)
    return EffectContext(
        trunk=trunk,
        sae=sae,
        prep=load_preprocessing(files.model_dir, files.spec.preprocessing),
        positions=to_device(positions, torch_device),
        labels=labels,
        text=to_device(text, torch_device, torch.float32),
        scale=logit_scale(model),
        run=run,
    )
