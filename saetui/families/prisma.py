"""ViT-Prisma: ``config.json`` beside a weights ``.pt`` (``W_enc, b_enc, W_dec, b_dec``), ReLU or TopK SAEs.

The forward (vit_prisma.sae.sae.StandardSparseAutoencoder) is ``x' = n(x)``,
``f = act((x' - b_dec) @ W_enc + b_enc)``, ``x_hat = n^-1(f @ W_dec + b_dec)``; ``act`` is ReLU
(``activation_fn_str = relu``) or TopK whose kept values then pass a ReLU (``topk`` with ``activation_fn_kwargs.k``);
``n`` is ``normalize_activations`` (none / constant_norm_rescale / layer_norm; the code's default is layer_norm, so
a config without the field normalises). The hook is ``blocks.{hook_point_layer}.{layer_subtype}`` of open_clip's
vision tower, on all tokens, the CLS token only (``cls_token_only``) or the patches only (``use_patches_only``).
Gated, JumpReLU and transcoder checkpoints are refused rather than read with the wrong forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saetui.errors import DataError
from saetui.families.normalisers import Normaliser
from saetui.families.safe_load import REFETCH_HINT, read_json, read_torch, standard_tensors, state_dict
from saetui.families.sparse import Activation
from saetui.families.weights import SaeWeights

FAMILY = "vit-prisma"
CONFIG = "config.json"
_SITES = {"hook_resid_post": "resid_post", "hook_mlp_out": "mlp_out", "hook_attn_out": "attn_out"}
_NORMALISATIONS = {
    "none": "none",
    None: "none",
    "constant_norm_rescale": "constant_norm_rescale",
    "layer_norm": "layer_norm",
}


def _weights_and_config(path: Path, config_path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state dict and the config: config.json, or the legacy single file's plain-dict cfg."""
    data = read_torch(path)
    legacy = isinstance(data, dict) and "state_dict" in data and "cfg" in data
    state = state_dict(data, path, "state_dict" if legacy else None)
    if config_path is not None:
        return state, read_json(config_path, "ViT-Prisma config")
    if legacy and isinstance(data["cfg"], dict):
        return state, data["cfg"]
    raise DataError(f"{path} has no config.json beside it", "fetch the SAE repo again (config.json and the .pt)")


def activation_of(config: dict[str, Any], where: Path) -> Activation:
    """ReLU or TopK-then-ReLU, from activation_fn_str and activation_fn_kwargs."""
    name = config.get("activation_fn_str", "relu")
    if name == "relu":
        return Activation("threshold")
    if name == "topk":
        k = (config.get("activation_fn_kwargs") or {}).get("k")
        if not isinstance(k, int) or k <= 0:
            raise DataError(f"{where}: topk SAE without a positive activation_fn_kwargs.k", REFETCH_HINT)
        return Activation("topk", k=k, relu=True)
    raise DataError(f"{where}: activation_fn_str {name!r} is not supported", "saetui reads relu and topk Prisma SAEs")


def describe(config: dict[str, Any], where: Path) -> dict[str, Any]:
    """What the config says the SAE reads: model, layer, hook site, token set, sizes (SaeSpec fields)."""
    model = config.get("model_name", "")
    if not isinstance(model, str) or not model.startswith(("open-clip:", "hf-hub:")):
        raise DataError(f"{where}: model_name {model!r} is not an open_clip hub model", "add a [sae.<name>] entry")
    site = _SITES.get(config.get("layer_subtype", "hook_resid_post"))
    if site is None:
        raise DataError(
            f"{where}: hook {config.get('layer_subtype')!r} is not supported", "use resid_post, mlp_out or attn_out"
        )
    tokens = "cls" if config.get("cls_token_only") else "patches" if config.get("use_patches_only") else "all"
    d_in = int(config.get("d_in", 768))
    return {
        "model": "hf-hub:" + model.split(":", 1)[1],
        "layer": int(config.get("hook_point_layer", 0)),
        "hook": site,
        "tokens": tokens,
        "d_in": d_in,
        "n_features": int(config.get("d_sae") or d_in * int(config.get("expansion_factor", 1))),
        "k": activation_of(config, where).k,
    }


def load(path: Path, config_path: Path | None) -> SaeWeights:
    """Load a ViT-Prisma SAE and its config; every failure is a one-line DataError."""
    state, config = _weights_and_config(path, config_path)
    where = config_path or path
    if config.get("is_transcoder"):
        raise DataError(f"{where} is a transcoder, not an SAE", "pick an SAE repo")
    if config.get("architecture", "standard") != "standard":
        raise DataError(
            f"{where}: architecture {config['architecture']!r} is not supported", "use a standard Prisma SAE"
        )
    kind = config.get("normalize_activations", "layer_norm")
    if kind not in _NORMALISATIONS:
        raise DataError(
            f"{where}: normalize_activations {kind!r} is not supported", "use none, constant_norm_rescale or layer_norm"
        )
    enc, dec, b_enc, b_dec = standard_tensors(state, path)
    return SaeWeights(
        family=FAMILY,
        enc=enc,
        dec=dec,
        activation=activation_of(config, where),
        path=path,
        b_enc=b_enc,
        b_dec=b_dec,
        input_bias=b_dec,
        normaliser=Normaliser(_NORMALISATIONS[kind]),
    )
