"""Which family a hub repo holds, from its file names alone, and the registry entry its own config implies.

* ViT-Prisma: ``config.json`` beside ``n_images_<N>.pt`` (the largest N when there are several);
* dictionary_learning: ``ae.pt`` with ``config.json`` in the same folder (one folder per trained SAE);
* saev: ``sae.pt`` (at the root, or one per run folder);
* CLIP-Scope: ``<layer>_resid/<tokens>.pt``.

ViT-Prisma's config names the model, layer, hook and tokens, so any Prisma repo becomes an entry. saev headers and
dictionary_learning configs do not name the model: those repos need a built-in or user entry (or, for
dictionary_learning, the model a known release was trained on, KNOWN_MODELS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from saetui.errors import NotFoundError, UsageError

_PRISMA_WEIGHTS = re.compile(r"n_images_(\d+)\.pt")
_SCOPE = re.compile(r"\d+_resid/\d+\.pt")
# dictionary_learning releases whose configs do not name the model: (open_clip model, token set).
KNOWN_MODELS = {"mateuszpach/sae-for-vlm": ("hf-hub:timm/vit_large_patch14_clip_336.openai", "cls")}


@dataclass(frozen=True)
class Detected:
    """The family of a repo, the checkpoint file chosen and the config file beside it."""

    family: str
    file: str
    config_file: str | None


def _choose(repo_id: str, candidates: list[str], wanted: str | None, what: str) -> str:
    """The candidate file the user asked for, or the only one, or a one-line error listing them."""
    if wanted is not None:
        if wanted not in candidates:
            raise NotFoundError(f"{repo_id} has no {what} {wanted}", f"pick one of {', '.join(candidates[:8])}")
        return wanted
    if len(candidates) == 1:
        return candidates[0]
    raise UsageError(
        f"{repo_id} holds {len(candidates)} {what}s", f"pick one with --checkpoint PATH: {', '.join(candidates[:8])}"
    )


def detect(repo_id: str, files: list[str], wanted: str | None = None) -> Detected:
    """The family and checkpoint of a repo from its file list (wanted: a repo path the user chose)."""
    names = set(files)

    def beside(path: str, name: str) -> str | None:
        """The file `name` in the folder of path, when the repo has it."""
        parent = PurePosixPath(path).parent
        sibling = str(parent / name) if str(parent) != "." else name
        return sibling if sibling in names else None

    prisma = sorted(
        (f for f in files if _PRISMA_WEIGHTS.fullmatch(PurePosixPath(f).name) and beside(f, "config.json")),
        key=lambda f: int(_PRISMA_WEIGHTS.fullmatch(PurePosixPath(f).name).group(1)),
    )
    if prisma:
        file = wanted if wanted in prisma else prisma[-1]
        return Detected("vit-prisma", file, beside(file, "config.json"))
    learned = sorted(f for f in files if PurePosixPath(f).name == "ae.pt" and beside(f, "config.json"))
    if learned:
        file = _choose(repo_id, learned, wanted, "dictionary_learning checkpoint")
        return Detected("dictionary_learning", file, beside(file, "config.json"))
    saev = sorted(f for f in files if PurePosixPath(f).name == "sae.pt")
    if saev:
        return Detected("saev", _choose(repo_id, saev, wanted, "saev checkpoint"), None)
    scope = sorted(f for f in files if _SCOPE.fullmatch(f))
    if scope:
        raise UsageError(f"{repo_id} is a CLIP-Scope repo", "fetch one of its SAEs by name (saetui fetch --list)")
    raise NotFoundError(
        f"cannot tell which SAE family {repo_id} holds (no n_images_*.pt + config.json, ae.pt + config.json or sae.pt)",
        "describe it as a [sae.<name>] entry with family = \"generic\" (see README, 'Your own SAEs')",
    )


def entry_fields(repo_id: str, detected: Detected, config: dict[str, Any] | None) -> dict[str, Any]:
    """The SaeSpec fields a repo's own config implies (model, layer, hook, tokens, sizes)."""
    from saetui.families import prisma

    if detected.family == "vit-prisma":
        return prisma.describe(config or {}, PurePosixPath(repo_id) / (detected.config_file or "config.json"))
    if detected.family == "dictionary_learning" and repo_id in KNOWN_MODELS:
        model, tokens = KNOWN_MODELS[repo_id]
        trainer = (config or {}).get("trainer", {})
        layer = trainer.get("layer") if isinstance(trainer, dict) else None
        if not isinstance(layer, int):
            match = re.search(r"(\d+)", detected.file)
            layer = int(match.group(1)) if match else 0
        return {"model": model, "layer": layer, "tokens": tokens, "k": trainer.get("k"),
                "d_in": trainer.get("activation_dim", 1024), "n_features": trainer.get("dict_size", 0)}  # fmt: skip
    raise UsageError(
        f"{repo_id} is a {detected.family} repo whose files do not name the model it reads",
        "add it as a [sae.<name>] entry with model, layer and tokens (see README, 'Your own SAEs')",
    )
