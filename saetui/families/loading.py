"""Load any registered SAE: the family's loader for its files, memoised so one command reads a checkpoint once."""

from __future__ import annotations

from pathlib import Path

from saetui.families import clip_scope, dictionary_learning, generic, prisma, saev
from saetui.families.weights import SaeWeights
from saetui.paths import file_identity
from saetui.registry import SaeSpec

_LAST_LOADED: list = []  # [key, SaeWeights] of the last checkpoint loaded in this process


def load_sae(spec: SaeSpec, checkpoint: Path, config: Path | None = None) -> SaeWeights:
    """The SAE in `checkpoint` (and its family's config file) read by the loader of spec.family.

    The last SAE loaded stays in memory, keyed by the files' identity (resolved path, size, mtime) and the entry's
    keys, so the steps of one command (fetch's validation, index, stats) read a large file once; a changed file is
    read anew. Callers treat the tensors as read-only.
    """
    checkpoint = Path(checkpoint)
    key = None
    if checkpoint.is_file() and (config is None or Path(config).is_file()):
        key = (spec.family, spec.keys, file_identity(checkpoint), file_identity(Path(config)) if config else None)
    if key is not None and _LAST_LOADED and _LAST_LOADED[0] == key:
        return _LAST_LOADED[1]
    if spec.family == "clip-scope":
        weights = clip_scope.load_checkpoint(checkpoint)
    elif spec.family == "vit-prisma":
        weights = prisma.load(checkpoint, config)
    elif spec.family == "saev":
        weights = saev.load(checkpoint)
    elif spec.family == "dictionary_learning":
        weights = dictionary_learning.load(checkpoint, config)
    else:
        weights = generic.load(checkpoint, dict(spec.keys))
    _LAST_LOADED[:] = [key, weights] if key is not None else []
    return weights
