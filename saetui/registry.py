"""The SAEs saetui knows: released SAEs of every supported family, the demo's, and user entries from a TOML file.

An entry names the hub repo, the file in it, the open_clip model and the hook point the SAE reads. Families that
describe themselves (ViT-Prisma's config.json, dictionary_learning's config.json) need no entry at all: `saetui
fetch ORG/NAME` reads the repo's files and builds the entry (saetui.families.detect).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saetui.errors import UsageError
from saetui.models.hooks import HOOK_SITES, TOKEN_SETS

SCOPE_REPO = "lewington/CLIP-ViT-L-scope"
SCOPE_MODEL = "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
SCOPE_PRETRAINED = "laion2b_s32b_b82k"
SCOPE_LAYERS = (2, 5, 8, 11, 14, 17, 20, 22)
HF_HUB_PREFIX = "hf-hub:"
BUILT_IN = "built-in"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_REQUIRED_KEYS = {"repo", "model", "layer"}
_OPTIONAL_KEYS = {
    "folder", "file", "pretrained", "d_in", "n_features", "k", "revision", "model_revision",
    "family", "hook", "tokens", "config_file", "keys",
}  # fmt: skip
FAMILIES = ("clip-scope", "vit-prisma", "saev", "dictionary_learning", "generic")
# The reference preprocessing each family's SAEs were trained with (saetui.models.preprocess).
FAMILY_PREPROCESSING = {
    "clip-scope": "hf-clip",
    "vit-prisma": "open_clip",
    "saev": "open_clip",
    "dictionary_learning": "open_clip",
    "generic": "open_clip",
}


@dataclass(frozen=True, kw_only=True)
class SaeSpec:
    """Where a CLIP-Scope-style SAE lives on the hub, the open_clip model it reads and its stated sizes."""

    name: str
    repo_id: str
    model: str  # open_clip model id, "hf-hub:ORG/NAME"
    layer: int  # 0-indexed vision block the SAE reads at (ignored for the pooled embedding)
    folder: str | None = None  # checkpoints are f"{folder}/{tokens}.pt"
    file: str | None = None  # exact path for single-file repos (instead of folder)
    pretrained: str | None = None  # open_clip pretrained tag, where one exists
    d_in: int = 1024
    n_features: int = 65536
    k: int | None = 32  # None: a ReLU / threshold SAE with no fixed number of active latents
    family: str = "clip-scope"
    hook: str = "resid_post"  # resid_post | mlp_out | attn_out | pooled (saetui.models.hooks)
    tokens: str = "all"  # the token set the SAE was trained on: all | cls | patches
    config_file: str | None = None  # the family's config file in the repo (ViT-Prisma, dictionary_learning)
    keys: tuple[tuple[str, object], ...] = ()  # generic family: key names and encode rule (see saetui.families.generic)
    revision: str = "main"
    model_revision: str = "main"  # branch, tag or commit of the model repo
    published_by: str | None = None  # a command that puts the files into the cache (no hub has them)
    source: str = BUILT_IN  # "built-in" or the config file the entry came from

    @property
    def preprocessing(self) -> str:
        """The reference preprocessing of the family (hf-clip or open_clip)."""
        return FAMILY_PREPROCESSING[self.family]

    @property
    def model_repo(self) -> str:
        """The hub repo of the open_clip model ("ORG/NAME" of "hf-hub:ORG/NAME")."""
        return self.model.removeprefix(HF_HUB_PREFIX)

    def checkpoint_file(self, tokens: int) -> str:
        """The repo path of the checkpoint trained on `tokens` tokens (folder entries only)."""
        if self.folder is None:
            raise UsageError(f"SAE '{self.name}' is the single file {self.file}", "leave out --checkpoint for this SAE")
        return f"{self.folder}/{tokens}.pt"


PRISMA_MODEL = "hf-hub:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"
PRISMA_WEIGHTS = "n_images_2600058.pt"
SAEV_CLIP_B16 = "osunlp/SAE_CLIP_24K_ViT-B-16_IN1K"
OPENAI_B16 = "hf-hub:timm/vit_base_patch16_clip_224.openai"
OPENAI_L14_336 = "hf-hub:timm/vit_large_patch14_clip_336.openai"


def _builtin_specs() -> list[SaeSpec]:
    """The released SAEs saetui names: CLIP-Scope's eight, ViT-Prisma's recommended ones, saev's CLIP ViT-B/16.

    Any other ViT-Prisma or dictionary_learning repo is fetched by its repo id (its config describes it).
    """
    scope = [
        SaeSpec(
            name=f"layer{layer}",
            repo_id=SCOPE_REPO,
            folder=f"{layer}_resid",
            model=SCOPE_MODEL,
            pretrained=SCOPE_PRETRAINED,
            layer=layer,
        )
        for layer in SCOPE_LAYERS
    ]
    prisma = [
        SaeSpec(
            name=f"prisma-b32-layer{layer}-{site}",
            repo_id=f"Prisma-Multimodal/sparse-autoencoder-clip-b-32-sae-vanilla-x64-layer-{layer}-hook_{site}-l1-1e-05",
            file=PRISMA_WEIGHTS,
            config_file="config.json",
            model=PRISMA_MODEL,
            layer=layer,
            d_in=768,
            n_features=49152,
            k=None,
            family="vit-prisma",
            hook=site,
        )
        for layer, site in ((11, "resid_post"), (11, "mlp_out"))
    ] + [
        SaeSpec(
            name=f"prisma-b32-cls-topk64-layer{layer}",
            repo_id=f"Prisma-Multimodal/sae-top_k-64-cls_only-layer_{layer}-hook_resid_post",
            file=PRISMA_WEIGHTS,
            config_file="config.json",
            model=PRISMA_MODEL,
            layer=layer,
            d_in=768,
            n_features=49152,
            k=64,
            family="vit-prisma",
            tokens="cls",
        )
        for layer in range(12)
    ]
    saev = [
        SaeSpec(
            name="saev-clip-b16-layer10",
            repo_id=SAEV_CLIP_B16,
            file="sae.pt",
            model=OPENAI_B16,
            layer=10,
            d_in=768,
            n_features=24576,
            k=None,
            family="saev",
            tokens="patches",
        )
    ]
    return scope + prisma + saev


BUILTIN_SPECS: tuple[SaeSpec, ...] = tuple(_builtin_specs())


def config_path() -> Path:
    """The user config file: $SAETUI_CONFIG, else $XDG_CONFIG_HOME (~/.config)/saetui/config.toml."""
    env = os.environ.get("SAETUI_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "saetui" / "config.toml"


def _config_error(path: Path, what: str) -> UsageError:
    """A UsageError about the config file that says which file to fix."""
    return UsageError(f"config {path}: {what}", "fix the [sae.<name>] table (see README, 'Your own SAEs')")


def _typed(path: Path, name: str, table: dict[str, Any], key: str, kind: type) -> Any:
    """table[key] checked to be of `kind` (bool never counts as int)."""
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        what = "an integer" if kind is int else "a string"
        raise _config_error(path, f"[sae.{name}] {key} must be {what}, got {value!r}")
    return value


def _user_spec(path: Path, name: str, table: Any, builtin_names: set[str]) -> SaeSpec:
    """One [sae.<name>] table turned into a SaeSpec, with a clear error for every mistake."""
    if name in builtin_names:
        raise _config_error(path, f"[sae.{name}] would shadow the built-in SAE '{name}'; pick another name")
    if not _NAME.fullmatch(name):
        raise _config_error(path, f"[sae.{name}] is not a valid name (letters, digits, '.', '_', '-')")
    if not isinstance(table, dict):
        raise _config_error(path, f"sae.{name} must be a table")
    missing = sorted(_REQUIRED_KEYS - table.keys())
    if missing:
        raise _config_error(path, f"[sae.{name}] lacks {', '.join(missing)}")
    unknown = sorted(table.keys() - _REQUIRED_KEYS - _OPTIONAL_KEYS)
    if unknown:
        raise _config_error(path, f"[sae.{name}] has unknown keys {', '.join(unknown)}")
    if ("folder" in table) == ("file" in table):
        raise _config_error(path, f"[sae.{name}] needs exactly one of folder (checkpoints <tokens>.pt) or file")
    repo = _typed(path, name, table, "repo", str)
    if not _REPO_ID.fullmatch(repo):
        raise _config_error(path, f"[sae.{name}] repo must look like ORG/NAME, got {repo!r}")
    model = _typed(path, name, table, "model", str)
    if not model.startswith(HF_HUB_PREFIX) or not _REPO_ID.fullmatch(model.removeprefix(HF_HUB_PREFIX)):
        raise _config_error(path, f"[sae.{name}] model must be an open_clip hub id hf-hub:ORG/NAME, got {model!r}")
    layer = _typed(path, name, table, "layer", int)
    if layer < 0:
        raise _config_error(path, f"[sae.{name}] layer must be >= 0, got {layer}")
    sizes = {key: _typed(path, name, table, key, int) for key in ("d_in", "n_features", "k") if key in table}
    for key, value in sizes.items():
        if value <= 0:
            raise _config_error(path, f"[sae.{name}] {key} must be positive, got {value}")
    optional = {
        key: _typed(path, name, table, key, str)
        for key in (
            "folder",
            "file",
            "pretrained",
            "revision",
            "model_revision",
            "family",
            "hook",
            "tokens",
            "config_file",
        )
        if key in table
    }
    choices = {"family": FAMILIES, "hook": HOOK_SITES, "tokens": TOKEN_SETS}
    for key, allowed in choices.items():
        if key in optional and optional[key] not in allowed:
            raise _config_error(path, f"[sae.{name}] {key} must be one of {', '.join(allowed)}, got {optional[key]!r}")
    family = optional.get("family", "clip-scope")
    if family != "clip-scope" and "k" not in sizes:
        sizes["k"] = None  # a family's own config or file says k, if it has one
    keys = table.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, (str, int, float, bool)) for v in keys.values()):
        raise _config_error(path, f"[sae.{name}.keys] must be a table of names, numbers and booleans")
    if (family == "generic") != bool(keys):
        raise _config_error(path, f'[sae.{name}] a [sae.{name}.keys] table goes with family = "generic" (only)')
    optional_keys: dict[str, object] = {"keys": tuple(sorted(keys.items()))} if keys else {}
    for key in ("folder", "file"):
        if key in optional and (not optional[key] or optional[key].startswith("/")):
            raise _config_error(path, f"[sae.{name}] {key} must be a path inside the repo, got {optional[key]!r}")
    if "folder" in optional:
        optional["folder"] = optional["folder"].rstrip("/")
    return SaeSpec(
        name=name, repo_id=repo, model=model, layer=layer, source=str(path), **sizes, **optional, **optional_keys
    )


def user_specs(path: Path | None = None) -> list[SaeSpec]:
    """The entries of the user config file (none when the file does not exist)."""
    path = config_path() if path is None else path
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise _config_error(path, f"not valid TOML ({error})") from None
    unknown = sorted(data.keys() - {"sae"})
    if unknown:
        raise _config_error(path, f"unknown top-level keys {', '.join(unknown)} (SAE entries go in [sae.<name>])")
    tables = data.get("sae", {})
    if not isinstance(tables, dict):
        raise _config_error(path, "sae must be a table of [sae.<name>] tables")
    builtin_names = {spec.name for spec in BUILTIN_SPECS}
    return [_user_spec(path, name, table, builtin_names) for name, table in tables.items()]


# The demo's tiny RANDOM-weight SAE and CLIP model: `saetui demo` publishes them into the cache, after which
# `saetui index PHOTOS --sae demo-random-weights` works like any other SAE (offline, from the cache).
DEMO_SPEC = SaeSpec(
    name="demo-random-weights",
    repo_id="saetui-demo/tiny-clip-scope-random-weights",
    file="20_resid/1000000.pt",
    model="hf-hub:saetui-demo/tiny-clip-random-weights",
    layer=20,
    d_in=32,
    n_features=2048,
    k=16,
    source="saetui demo",
    published_by="saetui demo",
)


def all_specs() -> list[SaeSpec]:
    """Every known SAE: the built-ins first, then the demo's, then the user's entries in file order."""
    return [*BUILTIN_SPECS, DEMO_SPEC, *user_specs()]


def is_repo_id(value: str) -> bool:
    """Whether value looks like a hub repo id ORG/NAME rather than a registry name."""
    return bool(_REPO_ID.fullmatch(value))


def get_spec(name: str) -> SaeSpec:
    """The SAE called `name`; an unknown name is a UsageError that lists the valid ones."""
    specs = all_specs()
    for spec in specs:
        if spec.name == name:
            return spec
    valid = ", ".join(spec.name for spec in specs[:12]) + (", ..." if len(specs) > 12 else "")
    raise UsageError(
        f"unknown SAE '{name}'",
        f"pass a hub repo id ORG/NAME, a name of `saetui fetch --list` ({valid}) or [sae.<name>] in {config_path()}",
    )
