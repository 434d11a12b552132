"""Load and validate a CLIP-Scope SAE checkpoint (.pt) with ``torch.load(weights_only=True)`` only."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saetui.errors import DataError, NotFoundError
from saetui.paths import file_identity

_HINT = "delete the file and fetch it again"
# Lines of torch's weights_only error text that carry no detail.
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")
# weights_only unpickler errors that mean damaged bytes rather than a refused object.
_CORRUPT_PICKLE = ("Unsupported operand", "String is too long", "Object created by NEWOBJ")
_LAST_LOADED: list = []  # [file identity, SaeCheckpoint] of the last checkpoint loaded in this process


@dataclass
class SaeCheckpoint:
    """The tensors and metadata of one TopK SAE checkpoint in the CLIP-Scope layout."""

    pre_b: torch.Tensor  # [d_in]
    enc: torch.Tensor  # [d_in, n_features]
    dec: torch.Tensor  # [n_features, d_in]
    k: int
    d_in: int
    n_features: int
    token_count: int | None
    log_id: str | None
    path: Path


def _unpickling_detail(error: Exception) -> str:
    """The one informative line of torch's weights_only refusal (e.g. 'Unsupported global: ...')."""
    for line in str(error).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(_BOILERPLATE):
            return line.split(". ", 1)[0].rstrip(".")
    return type(error).__name__


def _read(path: Path) -> Any:
    """torch.load the file safely, turning every way it can fail into a one-line DataError."""
    if not path.exists():
        raise NotFoundError(f"checkpoint {path} does not exist", "check the path or fetch the SAE")
    if not path.is_file():
        raise DataError(f"checkpoint {path} is not a file", "pass the path of a .pt file")
    try:
        with warnings.catch_warnings():
            # Stray pickles written with a newer protocol make torch warn before it refuses them.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickling_detail(error)
        if detail.startswith(_CORRUPT_PICKLE):
            raise DataError(f"checkpoint {path} is truncated or corrupt ({detail})", _HINT) from None
        raise DataError(
            f"refused to unpickle {path}: not a plain tensor checkpoint ({detail})",
            "use a checkpoint of plain tensors; saetui never runs code from a pickle",
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, KeyError, ValueError) as error:
        readable = str(error) and not isinstance(error, (KeyError, EOFError))
        detail = str(error).splitlines()[0] if readable else "unreadable data"
        raise DataError(f"checkpoint {path} is truncated or corrupt ({detail})", _HINT) from None


def _tensor(state: dict, key: str, ndim: int, path: Path) -> torch.Tensor:
    """One float tensor of model_state_dict with the given number of dimensions."""
    if key not in state:
        raise DataError(f"checkpoint {path} has no model_state_dict['{key}']", _HINT)
    value = state[key]
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise DataError(f"checkpoint {path}: model_state_dict['{key}'] is not a float tensor", _HINT)
    if value.ndim != ndim:
        raise DataError(
            f"checkpoint {path}: model_state_dict['{key}'] has shape {list(value.shape)}, expected {ndim} dims",
            _HINT,
        )
    if not bool(torch.isfinite(value).all()):
        raise DataError(f"checkpoint {path}: model_state_dict['{key}'] holds NaN or inf values", _HINT)
    return value


def _optional_int(data: dict, key: str, path: Path) -> int | None:
    """An integer metadata entry, None when absent."""
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"checkpoint {path}: '{key}' is {type(value).__name__}, expected an integer", _HINT)
    return value


def load_checkpoint(path: Path) -> SaeCheckpoint:
    """Load a CLIP-Scope .pt file and check its keys, shapes and k; every failure is a one-line DataError.

    The last checkpoint loaded stays in memory, keyed by the file's identity (resolved path, size, mtime), so the
    steps of one command (fetch's validation, index, stats) read a 537 MB file once; a changed file is read anew.
    Callers treat the tensors as read-only.
    """
    path = Path(path)
    key = file_identity(path) if path.is_file() else None
    if key is not None and _LAST_LOADED and _LAST_LOADED[0] == key:
        return _LAST_LOADED[1]
    checkpoint = _load(path)
    _LAST_LOADED[:] = [key, checkpoint] if key is not None else []
    return checkpoint


def _load(path: Path) -> SaeCheckpoint:
    """Read and validate one checkpoint file."""
    data = _read(path)
    if not isinstance(data, dict) or "model_state_dict" not in data:
        what = "a dict without 'model_state_dict'" if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{path} is not a checkpoint: found {what}",
            "pass a CLIP-Scope style .pt file (model_state_dict, k)",
        )
    state = data["model_state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {path}: model_state_dict is {type(state).__name__}, not a dict", _HINT)
    pre_b = _tensor(state, "pre_b", 1, path)
    enc = _tensor(state, "enc", 2, path)
    dec = _tensor(state, "dec", 2, path)
    d_in, n_features = enc.shape
    if pre_b.shape[0] != d_in or tuple(dec.shape) != (n_features, d_in):
        raise DataError(
            f"checkpoint {path}: shape mismatch, pre_b {list(pre_b.shape)}, enc {list(enc.shape)}, "
            f"dec {list(dec.shape)} (expected [d_in], [d_in, n], [n, d_in])",
            _HINT,
        )
    k = _optional_int(data, "k", path)
    if k is None:
        raise DataError(f"checkpoint {path} has no 'k'", _HINT)
    if not 0 < k <= n_features:
        raise DataError(f"checkpoint {path}: k = {k} is outside 1..{n_features}", _HINT)
    for key, actual in (("d_in", d_in), ("n_features", n_features)):
        declared = _optional_int(data, key, path)
        if declared is not None and declared != actual:
            raise DataError(f"checkpoint {path}: '{key}' says {declared} but the tensors have {actual}", _HINT)
    log_id = data.get("log_id")
    return SaeCheckpoint(
        pre_b=pre_b,
        enc=enc,
        dec=dec,
        k=k,
        d_in=int(d_in),
        n_features=int(n_features),
        token_count=_optional_int(data, "token_count", path),
        log_id=log_id if isinstance(log_id, str) else None,
        path=path,
    )
