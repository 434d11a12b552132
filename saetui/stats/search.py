"""Free-text feature search: the CLIP text embedding of a query against every feature's lens embedding.

The lens embeddings (unit vectors in the joint space, written by `saetui stats`) are memory-mapped; the query is
embedded by the model's text tower exactly as typed, so this is the one on-demand function that needs torch.
The model is loaded once per process.
"""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb
import numpy as np

from saetui.errors import NotFoundError, UsageError
from saetui.stats.directions import load_rows, nearest
from saetui.stats.queries import stats_info
from saetui.stats.run_info import cached_sae_files, read_run


@functools.lru_cache(maxsize=2)
def _model(model_dir: str, device: object):  # noqa: ANN202 - an open_clip model; torch types stay out of module scope
    """The CLIP model of a local folder on a device, loaded once per process."""
    from saetui.models.trunk import load_clip

    return load_clip(Path(model_dir), device)


def embed_text(model_dir: Path, text: str, device: object = "cpu") -> np.ndarray:
    """The normalised CLIP text embedding of one string (one short text: the CPU is the default device)."""
    import open_clip
    import torch

    from saetui.device import module_device, resolve_device, to_device, to_host

    model = _model(str(model_dir), resolve_device(device))
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    with torch.no_grad():
        emb = model.encode_text(to_device(tokenizer([text]), module_device(model)))
        return to_host(torch.nn.functional.normalize(emb.float(), dim=-1)[0])


def text_model_dir(con: duckdb.DuckDBPyConnection, cache: str | Path | None) -> Path:
    """The model folder stats used (recorded in stats_info), else the run's model in the hub cache."""
    recorded = stats_info(con).get("model_dir")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    files = cached_sae_files(read_run(con), cache)
    if files.model_dir is None:
        raise NotFoundError("the model files are not available", "fetch the SAE again")
    return files.model_dir


def search_text(
    con: duckdb.DuckDBPyConnection, text: str, n: int = 20, cache: str | Path | None = None, device: object = "cpu"
) -> list[tuple[int, float]]:
    """The n features whose lens embedding has the largest cosine with the text's CLIP embedding."""
    if not text.strip():
        raise UsageError("empty search text", "type a few words, e.g. 'a red bus'")
    rows = load_rows(stats_info(con).get("lens_embeddings"), "lens embeddings")
    query = embed_text(text_model_dir(con, cache), text, device)
    index, score = nearest(rows, query, n)
    return [(int(f), float(s)) for f, s in zip(index, score, strict=True)]
