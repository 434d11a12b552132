"""Reading checkpoint files safely: ``torch.load(weights_only=True)`` only, JSON parsed as JSON, one-line errors.

A pickle that would build anything but tensors and plain containers is refused (never executed); a truncated or
damaged file says so and how to recover. Every family's loader reads its files through these functions.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from saetui.errors import DataError, NotFoundError

REFETCH_HINT = "delete the file and fetch it again"
# Lines of torch's weights_only error text that carry no detail.
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")
# weights_only unpickler errors that mean damaged bytes rather than a refused object.
_CORRUPT_PICKLE = ("Unsupported operand", "String is too long", "Object created by NEWOBJ")


def _unpickling_detail(error: Exception) -> str:
    """The one informative line of torch's weights_only refusal (e.g. 'Unsupported global: ...')."""
    for line in str(error).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and not line.startswith(_BOILERPLATE):
            return line.split(". ", 1)[0].rstrip(".")
    return type(error).__name__


def checked_file(path: Path) -> Path:
    """path, after checking that it is an existing file."""
    if not path.exists():
        raise NotFoundError(f"checkpoint {path} does not exist", "check the path or fetch the SAE")
    if not path.is_file():
        raise DataError(f"checkpoint {path} is not a file", "pass the path of a checkpoint file")
    return path


def read_torch(path: Path, data: bytes | None = None) -> Any:
    """torch.load a file (or the given bytes of it) with weights_only=True; every failure is a one-line DataError."""
    checked_file(path)
    try:
        with warnings.catch_warnings():
            # Stray pickles written with a newer protocol make torch warn before it refuses them.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            source = path if data is None else io.BytesIO(data)
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickling_detail(error)
        if detail.startswith(_CORRUPT_PICKLE):
            raise DataError(f"checkpoint {path} is truncated or corrupt ({detail})", REFETCH_HINT) from None
        raise DataError(
            f"refused to unpickle {path}: not a plain tensor checkpoint ({detail})",
            "use a checkpoint of plain tensors; saetui never runs code from a pickle",
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, KeyError, ValueError) as error:
        readable = str(error) and not isinstance(error, (KeyError, EOFError))
        detail = str(error).splitlines()[0] if readable else "unreadable data"
        raise DataError(f"checkpoint {path} is truncated or corrupt ({detail})", REFETCH_HINT) from None


def read_json(path: Path, what: str = "config") -> dict[str, Any]:
    """A JSON object from a file (or a one-line DataError)."""
    checked_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read the {what} {path}: {error}", REFETCH_HINT) from None
    if not isinstance(data, dict):
        raise DataError(f"the {what} {path} is not a JSON object", REFETCH_HINT)
    return data


def state_dict(data: Any, path: Path, inside: str | None = None) -> dict[str, Any]:
    """The tensor dict of a loaded checkpoint (data itself, or data[inside])."""
    state = data.get(inside) if inside is not None and isinstance(data, dict) else data
    if not isinstance(state, dict):
        what = inside or "the file"
        raise DataError(f"checkpoint {path}: {what} is {type(state).__name__}, not a dict of tensors", REFETCH_HINT)
    return state


def float_tensor(state: dict[str, Any], key: str, ndim: int, path: Path, where: str = "") -> torch.Tensor:
    """One finite float tensor of a state dict with the given number of dimensions."""
    name = f"{where}['{key}']" if where else f"'{key}'"
    if key not in state:
        raise DataError(f"checkpoint {path} has no {name}", REFETCH_HINT)
    value = state[key]
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise DataError(f"checkpoint {path}: {name} is not a float tensor", REFETCH_HINT)
    if value.ndim != ndim:
        raise DataError(f"checkpoint {path}: {name} has shape {list(value.shape)}, expected {ndim} dims", REFETCH_HINT)
    if not bool(torch.isfinite(value).all()):
        raise DataError(f"checkpoint {path}: {name} holds NaN or inf values", REFETCH_HINT)
    return value


def optional_int(data: dict[str, Any], key: str, path: Path) -> int | None:
    """An integer entry (a plain int or a one-element integer tensor), None when absent."""
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.item())
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"checkpoint {path}: '{key}' is {type(value).__name__}, expected an integer", REFETCH_HINT)
    return value


def standard_tensors(
    state: dict[str, Any], path: Path
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_enc [d, n], W_dec [n, d], b_enc [n], b_dec [d]) of the common key layout, checked against each other."""
    enc = float_tensor(state, "W_enc", 2, path)
    dec = float_tensor(state, "W_dec", 2, path)
    b_enc = float_tensor(state, "b_enc", 1, path)
    b_dec = float_tensor(state, "b_dec", 1, path)
    d_in, n_features = enc.shape
    check_shapes(path, enc, dec, ("b_enc", b_enc, n_features), ("b_dec", b_dec, d_in))
    return enc, dec, b_enc, b_dec


def check_shapes(
    path: Path, enc: torch.Tensor, dec: torch.Tensor, *vectors: tuple[str, torch.Tensor | None, int]
) -> None:
    """enc [d, n] and dec [n, d] agree, and each (name, vector, length) has that length."""
    d_in, n_features = enc.shape
    problems = [] if tuple(dec.shape) == (n_features, d_in) else [f"decoder {list(dec.shape)}"]
    problems += [f"{name} {list(v.shape)}" for name, v, length in vectors if v is not None and v.shape != (length,)]
    if problems:
        raise DataError(
            f"checkpoint {path}: shape mismatch with the encoder [{d_in}, {n_features}]: {', '.join(problems)}",
            REFETCH_HINT,
        )
