"""saev (OSU): ``sae.pt`` = one JSON header line, then a ``torch.save`` state dict (``W_enc, b_enc, W_dec, b_dec``).

Header schemas: legacy (no ``schema`` key; the raw config, ``d_vit``, ``exp_factor``, ...: a ReLU SAE), schema 1
(variant A: ``cls`` names the activation, ``cfg.top_k``; variant B: ``cfg.activation = {cls, params}``) and schemas
2 and later (``cfg.activation = {"cls": "Relu" | "TopK" | "BatchTopK", "params": {"top_k": ...}}``).

The encode changed on 2025-07-31: release-era code computed ``ReLU((x - b_dec) @ W_enc + b_enc)``; later code
``act(x @ W_enc + b_enc)``. saetui reads legacy and schema-1 headers with the release-era rule and later schemas with
the later one (a reading of the code, not confirmed numerically). TopK keeps the raw top-k values (no ReLU);
BatchTopK keeps values above its ``activation.threshold`` buffer at inference (ReLU when it is <= 0) and the per-row
top k when the file has no threshold. ``x_hat = f @ W_dec + b_dec``.

Release-era runs scaled their inputs ``x <- (x - mu) / s`` (mu the dataset mean activation, s = mean ||x - mu|| /
sqrt(d)) with constants the checkpoint does not ship: such an SAE asks the index engine to estimate them from the
images it indexes (``needs_scaling``), and its codes are then approximate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from saetui.errors import DataError
from saetui.families.safe_load import REFETCH_HINT, checked_file, read_torch, standard_tensors, state_dict
from saetui.families.sparse import Activation
from saetui.families.weights import SaeWeights

FAMILY = "saev"
WEIGHTS = "sae.pt"
MAX_HEADER = 1 << 20  # bytes of the JSON line
APPROXIMATE = (
    "saev's input scaling (x - mu) / s is not in the checkpoint: mu and s were estimated from the indexed images"
)


def read_header(path: Path) -> tuple[dict[str, Any], bytes]:
    """The JSON header (parsed as JSON, never executed) and the bytes of the state dict after it."""
    checked_file(path)
    data = path.read_bytes()
    end = data.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise DataError(f"{path} does not start with a JSON header line", "pass a saev sae.pt")
    try:
        header = json.loads(data[:end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: the header line is not JSON ({error})", REFETCH_HINT) from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: the header line is not a JSON object", REFETCH_HINT)
    return header, data[end + 1 :]


def _activation_spec(header: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """(activation class name, its params, release-era encode) for any header schema."""
    schema = header.get("schema")
    if schema is None:
        return "Relu", {}, True
    cfg = header.get("cfg") if isinstance(header.get("cfg"), dict) else {}
    if schema == 1 and header.get("cls") in ("Relu", "TopK", "BatchTopK"):
        return header["cls"], {"top_k": cfg.get("top_k", 32)}, True
    activation = cfg.get("activation", {"cls": "Relu", "params": {}})
    if not isinstance(activation, dict) or not isinstance(activation.get("cls"), str):
        raise DataError(f"saev header: activation {activation!r} is not {{cls, params}}", REFETCH_HINT)
    return activation["cls"], activation.get("params") or {}, schema == 1


def load(path: Path, config_path: Path | None = None) -> SaeWeights:
    """Load a saev sae.pt of any header schema; every failure is a one-line DataError."""
    header, body = read_header(path)
    state = state_dict(read_torch(path, body), path)
    enc, dec, b_enc, b_dec = standard_tensors(state, path)
    name, params, release_era = _activation_spec(header)
    k = params.get("top_k", 32)
    if name == "Relu":
        activation = Activation("threshold")
    elif name == "TopK":
        activation = Activation("topk", k=int(k), relu=False)
    elif name == "BatchTopK":
        threshold = state.get("activation.threshold")
        if threshold is not None:
            activation = Activation("threshold", threshold=max(float(threshold.reshape(-1)[0]), 0.0))
        else:
            activation = Activation("topk", k=int(k), relu=False)
    else:
        raise DataError(f"{path}: saev activation {name!r} is not supported", "use a Relu, TopK or BatchTopK SAE")
    return SaeWeights(
        family=FAMILY,
        enc=enc,
        dec=dec,
        activation=activation,
        path=path,
        b_enc=b_enc,
        b_dec=b_dec,
        input_bias=b_dec if release_era else None,
        needs_scaling=release_era,
    )
