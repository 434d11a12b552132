"""dictionary_learning (Pach et al.'s Matryoshka / BatchTopK SAEs, HPAI's TopK SAEs): ``ae.pt`` + ``config.json``.

Two key layouts: ``W_enc [d, F], b_enc, W_dec [F, d], b_dec`` (MatryoshkaBatchTopKSAE, with buffers k, threshold,
group_sizes) and ``encoder.weight [F, d], encoder.bias, decoder.weight [d, F], b_dec`` (BatchTopKSAE,
AutoEncoderTopK; buffers k, threshold). The forward is ``f = ReLU((x - b_dec) @ W_enc + b_enc)``, then at
inference the (Matryoshka) BatchTopK SAEs keep ``f > threshold`` (the learned global threshold; -1 when never set,
i.e. plain ReLU) and AutoEncoderTopK keeps the top k of each row; ``x_hat = f @ W_dec + b_dec``. No normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saetui.errors import DataError
from saetui.families.safe_load import (
    REFETCH_HINT,
    check_shapes,
    float_tensor,
    read_json,
    read_torch,
    standard_tensors,
    state_dict,
)
from saetui.families.sparse import Activation
from saetui.families.weights import SaeWeights

FAMILY = "dictionary_learning"
WEIGHTS = "ae.pt"
CONFIG = "config.json"
TOPK_CLASSES = ("AutoEncoderTopK",)
THRESHOLD_CLASSES = ("MatryoshkaBatchTopKSAE", "BatchTopKSAE")


def _scalar(state: dict[str, Any], key: str, path: Path) -> float | None:
    """A one-element buffer as a Python number, None when absent."""
    value = state.get(key)
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise DataError(f"checkpoint {path}: '{key}' is not a one-element tensor", REFETCH_HINT)
    return value.item()


def trainer_config(config_path: Path | None) -> dict[str, Any]:
    """The trainer section of config.json (empty without one)."""
    if config_path is None:
        return {}
    trainer = read_json(config_path, "dictionary_learning config").get("trainer", {})
    return trainer if isinstance(trainer, dict) else {}


def load(path: Path, config_path: Path | None) -> SaeWeights:
    """Load a dictionary_learning ae.pt (either key layout); every failure is a one-line DataError."""
    state = state_dict(read_torch(path), path)
    trainer = trainer_config(config_path)
    if "W_enc" in state:
        enc, dec, b_enc, b_dec = standard_tensors(state, path)
    elif "encoder.weight" in state:
        enc = float_tensor(state, "encoder.weight", 2, path).T
        dec = float_tensor(state, "decoder.weight", 2, path).T
        b_enc = float_tensor(state, "encoder.bias", 1, path)
        b_dec = float_tensor(state, "b_dec", 1, path)
        d_in, n_features = enc.shape
        check_shapes(path, enc, dec, ("b_enc", b_enc, n_features), ("b_dec", b_dec, d_in))
    else:
        raise DataError(f"checkpoint {path} has neither W_enc nor encoder.weight", "pass a dictionary_learning ae.pt")
    dict_class = trainer.get("dict_class") or ("MatryoshkaBatchTopKSAE" if "W_enc" in state else "BatchTopKSAE")
    k = _scalar(state, "k", path)
    if dict_class in TOPK_CLASSES:
        if k is None or int(k) <= 0:
            raise DataError(f"checkpoint {path}: a TopK SAE without a positive 'k' buffer", REFETCH_HINT)
        activation = Activation("topk", k=int(k), relu=True)
    elif dict_class in THRESHOLD_CLASSES:
        threshold = _scalar(state, "threshold", path)
        activation = Activation("threshold", threshold=max(float(threshold if threshold is not None else -1.0), 0.0))
    else:
        raise DataError(f"{config_path}: dict_class {dict_class!r} is not supported", "use a TopK or BatchTopK SAE")
    return SaeWeights(
        family=FAMILY,
        enc=enc.contiguous(),
        dec=dec.contiguous(),
        activation=activation,
        path=path,
        b_enc=b_enc,
        b_dec=b_dec,
        input_bias=b_dec,
    )
