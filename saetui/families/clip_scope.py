"""CLIP-Scope (lewington/CLIP-ViT-L-scope): one .pt dict per checkpoint, TopK k = 32 with no ReLU.

The file holds ``model_state_dict`` with ``pre_b [d]``, ``enc [d, n]``, ``dec [n, d]`` and the integers ``k``
(plus optional ``d_in``, ``n_features``, ``token_count``, ``log_id``). The forward is
``pre = (x - pre_b) @ enc``, keep the k largest entries (kept values may be negative), reconstruction
``sum value * dec[index] + pre_b``; activations are raw (no normalisation).
"""

from __future__ import annotations

from pathlib import Path

from saetui.errors import DataError
from saetui.families.safe_load import REFETCH_HINT, check_shapes, float_tensor, optional_int, read_torch, state_dict
from saetui.families.sparse import Activation
from saetui.families.weights import SaeWeights

FAMILY = "clip-scope"


def load_checkpoint(path: Path) -> SaeWeights:
    """Load a CLIP-Scope .pt file and check its keys, shapes and k; every failure is a one-line DataError."""
    path = Path(path)
    data = read_torch(path)
    if not isinstance(data, dict) or "model_state_dict" not in data:
        what = "a dict without 'model_state_dict'" if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{path} is not a checkpoint: found {what}",
            "pass a CLIP-Scope style .pt file (model_state_dict, k)",
        )
    state = state_dict(data, path, "model_state_dict")
    pre_b = float_tensor(state, "pre_b", 1, path, "model_state_dict")
    enc = float_tensor(state, "enc", 2, path, "model_state_dict")
    dec = float_tensor(state, "dec", 2, path, "model_state_dict")
    d_in, n_features = enc.shape
    check_shapes(path, enc, dec, ("pre_b", pre_b, d_in))
    k = optional_int(data, "k", path)
    if k is None:
        raise DataError(f"checkpoint {path} has no 'k'", REFETCH_HINT)
    if not 0 < k <= n_features:
        raise DataError(f"checkpoint {path}: k = {k} is outside 1..{n_features}", REFETCH_HINT)
    for key, actual in (("d_in", d_in), ("n_features", n_features)):
        declared = optional_int(data, key, path)
        if declared is not None and declared != actual:
            raise DataError(f"checkpoint {path}: '{key}' says {declared} but the tensors have {actual}", REFETCH_HINT)
    log_id = data.get("log_id")
    return SaeWeights(
        family=FAMILY,
        enc=enc,
        dec=dec,
        activation=Activation("topk", k=k, relu=False),
        path=path,
        b_dec=pre_b,
        input_bias=pre_b,
        token_count=optional_int(data, "token_count", path),
        log_id=log_id if isinstance(log_id, str) else None,
    )
