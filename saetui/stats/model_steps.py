"""The steps that need the SAE checkpoint (and the model): unit decoder rows, neighbour lists, the logit lens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from saetui.errors import DataError
from saetui.paths import file_identity
from saetui.stats.options import StatsOptions
from saetui.stats.run_info import RunInfo, SaeFiles
from saetui.stats.temp import register_columns

Progress = Callable[[str, int, int], None]


def lens_labels(con: duckdb.DuckDBPyConnection) -> tuple[list[str], str]:
    """The lens label set: the database's labels, else the 1000 ImageNet class names."""
    labels = [
        r[0] for r in con.execute("SELECT DISTINCT label FROM images WHERE label IS NOT NULL ORDER BY 1").fetchall()
    ]
    if labels:
        return labels, "dataset"
    from saetui.imagenet import class_names

    return class_names(), "imagenet"


@dataclass
class ModelOutputs:
    """Paths and label source produced by the steps that need the checkpoint (and the model)."""

    decoder_rows: str | None = None
    lens_embeddings: str | None = None
    label_source: str | None = None
    templates: int | None = None
    model_dir: str | None = None
    neighbours: int = 0  # neighbours per feature in _neighbours (0: none)


def model_steps(
    con: duckdb.DuckDBPyConnection,
    files: SaeFiles | None,
    run: RunInfo,
    options: StatsOptions,
    cache_root: Path,
    device: str,
    progress: Progress | None,
) -> ModelOutputs:
    """Decoder-row cache and neighbour lists (temp table _neighbours); with options.lens the logit lens (temp
    table _lens) and the lens embeddings."""
    out = ModelOutputs()
    if files is None:
        return out
    import torch

    from saetui.device import resolve_device, to_host
    from saetui.families.loading import load_sae
    from saetui.stats.directions import save_unit_rows
    from saetui.stats.lens import (
        directions,
        joint_embeddings,
        logit_scale,
        prompt_templates,
        rank_labels,
        text_embeddings,
    )
    from saetui.stats.neighbours import cached_neighbours
    from saetui.stats.run_info import run_spec

    ckpt_key = file_identity(files.checkpoint_path)
    decoder_path = cache_root / "directions" / f"{ckpt_key}-decoder.npy"
    checkpoint = None
    if not decoder_path.is_file() or options.lens:
        checkpoint = load_sae(files.spec or run_spec(run), files.checkpoint_path, files.config_path)
        if checkpoint.n_features != run.n_features:
            raise DataError(
                f"checkpoint {files.checkpoint_path} has {checkpoint.n_features} features, "
                f"the database {run.n_features}",
                "pass the checkpoint the database was indexed with",
            )
    if not decoder_path.is_file():
        save_unit_rows(checkpoint.dec.float().numpy(), decoder_path)
    out.decoder_rows = str(decoder_path.resolve())
    if options.neighbours > 0:
        index, cosine = cached_neighbours(decoder_path, options.neighbours, progress)
        n, k = index.shape
        register_columns(
            con,
            "_neighbours",
            {
                "feature": np.repeat(np.arange(n, dtype=np.int32), k),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
                "other": index.reshape(-1),
                "cosine": cosine.reshape(-1).astype(np.float64),
            },
        )
        out.neighbours = k
    if not options.lens or checkpoint is None:
        return out
    if files.model_dir is None:
        raise DataError("the logit lens needs the model files", "pass --no-lens or fetch the SAE's model")
    from saetui.models.trunk import WEIGHT_FILES, load_clip

    model = load_clip(files.model_dir, resolve_device(device))
    weights = next(files.model_dir / name for name in WEIGHT_FILES if (files.model_dir / name).is_file())
    model_key = file_identity(weights)
    labels, out.label_source = lens_labels(con)
    templates = prompt_templates(options.lens_templates)
    out.templates = len(templates)
    text = text_embeddings(model, files.model_dir, labels, templates, cache_root, model_key)
    with torch.no_grad():
        rows = directions(checkpoint, options.lens_direction)
        embeddings = torch.cat(
            [
                joint_embeddings(model, rows[s : s + 8192], options.lens_ln, projected=run.hook == "pooled")
                for s in range(0, rows.shape[0], 8192)
            ]
        )
    variant = f"{options.lens_direction}-{'ln' if options.lens_ln else 'noln'}"
    lens_path = cache_root / "directions" / f"{ckpt_key}-{model_key}-{variant}-lens.npy"
    if not lens_path.is_file():
        save_unit_rows(to_host(embeddings), lens_path)
    out.lens_embeddings = str(lens_path.resolve())
    out.model_dir = str(files.model_dir.resolve())
    ranked = rank_labels(embeddings, text, logit_scale(model), options.lens_top)
    label_array = np.asarray(labels, dtype=object)
    register_columns(
        con,
        "_lens",
        {
            "feature": ranked["feature"],
            "rank": ranked["rank"],
            "label": label_array[ranked["label_index"]].tolist(),
            "score": ranked["score"],
            "prob": ranked["prob"],
        },
    )
    return out
