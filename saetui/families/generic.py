"""Any state-dict SAE, described in the user config instead of by code from the hub.

A ``[sae.<name>]`` entry with ``family = "generic"`` and a ``[sae.<name>.keys]`` table names the tensors and the
encode rule; the file is read with ``torch.load(weights_only=True)`` (or safetensors) and nothing from the hub runs:

    enc = "encoder.weight"     # the encoder matrix;  transpose_enc = true when it is stored [n, d_in]
    dec = "decoder.weight"     # the decoder matrix;  transpose_dec = true when it is stored [d_in, n]
    b_enc = "encoder.bias"     # optional: added to the pre-activation
    b_dec = "decoder.bias"     # optional: added to the decoder output
    input_bias = "b_dec"       # optional: a [d_in] tensor subtracted before the encoder
    inside = "state_dict"      # optional: the dict inside the file that holds the tensors
    activation = "relu"        # relu | topk;  k = 32;  relu_after_topk = false;  threshold = 0.0
    normalisation = "none"     # none | constant_norm_rescale | layer_norm

The forward is then saetui.families.sparse's: ``f = act((n(x) - input_bias) @ enc + b_enc)``,
``x_hat = n^-1(f @ dec + b_dec)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saetui.errors import DataError, UsageError
from saetui.families.normalisers import Normaliser
from saetui.families.safe_load import check_shapes, float_tensor, read_torch, state_dict
from saetui.families.sparse import Activation
from saetui.families.weights import SaeWeights

FAMILY = "generic"
_KNOWN = {
    "enc", "dec", "b_enc", "b_dec", "input_bias", "inside", "transpose_enc", "transpose_dec",
    "activation", "k", "relu_after_topk", "threshold", "normalisation",
}  # fmt: skip


def _read_state(path: Path, inside: str | None) -> dict[str, Any]:
    """The tensors of a .safetensors file or of a weights_only torch file (optionally a dict inside it)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises several types for a damaged file
            raise DataError(f"cannot read {path}: {error}", "delete the file and fetch it again") from None
    return state_dict(read_torch(path), path, inside)


def _option(keys: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """keys[name] checked to be of `kind` (bool never counts as int)."""
    value = keys.get(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise UsageError(
            f"generic SAE: keys.{name} must be {kind.__name__}, got {value!r}", "fix the [sae.<name>.keys] table"
        )
    return value


def load(path: Path, keys: dict[str, Any]) -> SaeWeights:
    """Load the tensors the keys table names and build the SAE it describes."""
    unknown = sorted(set(keys) - _KNOWN)
    if unknown:
        raise UsageError(f"generic SAE: unknown keys {', '.join(unknown)}", f"use {', '.join(sorted(_KNOWN))}")
    state = _read_state(path, _option(keys, "inside", str, None))

    def tensor(name: str, ndim: int) -> torch.Tensor | None:
        """The tensor keys[name] names, None when the table names none."""
        key = _option(keys, name, str, None)
        return None if key is None else float_tensor(state, key, ndim, path)

    enc, dec = tensor("enc", 2), tensor("dec", 2)
    if enc is None or dec is None:
        raise UsageError("generic SAE: keys.enc and keys.dec are required", "name the encoder and decoder tensors")
    enc = enc.T.contiguous() if _option(keys, "transpose_enc", bool, False) else enc
    dec = dec.T.contiguous() if _option(keys, "transpose_dec", bool, False) else dec
    b_enc, b_dec, input_bias = tensor("b_enc", 1), tensor("b_dec", 1), tensor("input_bias", 1)
    d_in, n_features = enc.shape
    check_shapes(path, enc, dec, ("b_enc", b_enc, n_features), ("b_dec", b_dec, d_in), ("input_bias", input_bias, d_in))
    kind = _option(keys, "activation", str, "relu")
    if kind == "topk":
        activation = Activation(
            "topk", k=_option(keys, "k", int, 32), relu=_option(keys, "relu_after_topk", bool, False)
        )
    elif kind == "relu":
        activation = Activation("threshold", threshold=float(_option(keys, "threshold", float, 0.0)))
    else:
        raise UsageError(f"generic SAE: activation {kind!r} is not relu or topk", "fix keys.activation")
    try:
        normaliser = Normaliser(_option(keys, "normalisation", str, "none"))
    except ValueError as error:
        raise UsageError(f"generic SAE: {error}", "fix keys.normalisation") from None
    return SaeWeights(
        family=FAMILY,
        enc=enc,
        dec=dec,
        activation=activation,
        path=path,
        b_enc=b_enc,
        b_dec=b_dec,
        input_bias=input_bias,
        normaliser=normaliser,
    )
