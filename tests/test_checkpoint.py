"""load_checkpoint: the CLIP-Scope layout loads; every broken or unsafe file is a one-line DataError."""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.tiny import TINY_WIDTH, scope_repo_files, scope_sae_seed, tiny_sae_bytes, tiny_sae_tensors
from saetui.errors import DataError, NotFoundError
from saetui.families.clip_scope import load_checkpoint


class _Payload:
    """An object whose unpickling would run a shell command (what weights_only must refuse)."""

    def __init__(self, marker: Path) -> None:
        """Remember the file the command would create."""
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Tell pickle to rebuild this object by calling os.system."""
        return (os.system, (f"touch {self.marker}",))


def _valid() -> dict[str, Any]:
    """A fresh, valid CLIP-Scope checkpoint dict (as torch.load returns it)."""
    return torch.load(io.BytesIO(tiny_sae_bytes()), weights_only=True)


def _save(tmp_path: Path, obj: Any, name: str = "sae.pt") -> Path:
    """torch.save obj to tmp_path/name."""
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _fails(path: Path, match: str) -> DataError:
    """load_checkpoint(path) raises a one-line DataError naming the file and matching match."""
    with pytest.raises(DataError, match=match) as info:
        load_checkpoint(path)
    line = info.value.one_line()
    assert "\n" not in line and str(path) in line
    return info.value


def test_loads_the_clip_scope_layout(tmp_path: Path) -> None:
    """A scope-repo file loads with its tensors, k, token count and log id."""
    path = tmp_path / "1200013184.pt"
    path.write_bytes(scope_repo_files()["20_resid/1200013184.pt"])
    ckpt = load_checkpoint(path)
    pre_b, enc, dec = tiny_sae_tensors(seed=scope_sae_seed(20, 1200013184))
    assert (
        torch.equal(ckpt.input_bias, pre_b)
        and torch.equal(ckpt.b_dec, pre_b)
        and torch.equal(ckpt.enc, enc)
        and torch.equal(ckpt.dec, dec)
    )
    assert (ckpt.k, ckpt.d_in, ckpt.n_features) == (32, TINY_WIDTH, 512)
    assert ckpt.token_count == 1200013184
    assert ckpt.log_id is not None and ckpt.log_id.startswith("20_resid-")
    assert ckpt.path == path


def test_optional_metadata_may_be_absent(tmp_path: Path) -> None:
    """Only model_state_dict and k are required; token_count/log_id become None."""
    data = _valid()
    ckpt = load_checkpoint(_save(tmp_path, {"model_state_dict": data["model_state_dict"], "k": 4}))
    assert (ckpt.k, ckpt.token_count, ckpt.log_id, ckpt.n_features) == (4, None, None, 512)


def test_truncated_empty_and_garbage_files(tmp_path: Path) -> None:
    """Half a file, an empty file and random bytes are reported as truncated or corrupt."""
    data = tiny_sae_bytes()
    for name, content in [
        ("half.pt", data[: len(data) // 2]),
        ("empty.pt", b""),
        ("junk.pt", b"not a zip" * 9),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        _fails(path, "truncated or corrupt")


def test_unsafe_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    """weights_only refuses a pickle that would call os.system; the command never runs."""
    marker = tmp_path / "pwned"
    path = _save(tmp_path, {"model_state_dict": _Payload(marker), "k": 32})
    error = _fails(path, "refused to unpickle .*not a plain tensor checkpoint")
    assert "system" in error.message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([1, 2, 3], "not a checkpoint: found list"),
        ({"weights": torch.zeros(3)}, "not a checkpoint"),
        ({"model_state_dict": [1], "k": 1}, "model_state_dict is list"),
    ],
)
def test_not_a_checkpoint(obj: Any, match: str, tmp_path: Path) -> None:
    """Plain-tensor pickles of the wrong structure are not checkpoints."""
    _fails(_save(tmp_path, obj), match)


def test_missing_keys(tmp_path: Path) -> None:
    """A missing tensor or a missing k is named."""
    data = _valid()
    del data["model_state_dict"]["enc"]
    _fails(_save(tmp_path, data, "no_enc.pt"), r"no model_state_dict\['enc'\]")
    data = _valid()
    del data["k"]
    _fails(_save(tmp_path, data, "no_k.pt"), "has no 'k'")


def test_wrong_shapes_and_values(tmp_path: Path) -> None:
    """Transposed/short tensors, a bad k, disagreeing metadata, NaNs and non-float tensors are refused."""
    cases: list[tuple[str, Any, Any, str]] = [
        ("dec", None, lambda t: t.T.contiguous(), "shape mismatch"),
        ("pre_b", None, lambda t: t[:-1].clone(), "shape mismatch"),
        ("enc", None, lambda t: t.reshape(-1), "expected 2 dims"),
        ("enc", None, lambda t: t.to(torch.int64), "not a float tensor"),
        ("dec", None, lambda t: t.index_fill(0, torch.tensor([3]), float("nan")), "NaN or inf"),
        (None, "k", 0, "outside 1..512"),
        (None, "k", 513, "outside 1..512"),
        (None, "k", 32.0, "expected an integer"),
        (None, "d_in", 1024, "'d_in' says 1024 but the tensors have 32"),
        (None, "n_features", 65536, "'n_features' says 65536"),
    ]
    for i, (tensor_key, meta_key, change, match) in enumerate(cases):
        data = _valid()
        if tensor_key is not None:
            state = OrderedDict(data["model_state_dict"])
            state[tensor_key] = change(state[tensor_key])
            data["model_state_dict"] = state
        else:
            data[meta_key] = change
        _fails(_save(tmp_path, data, f"case{i}.pt"), match)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing path is NotFoundError; a directory is a DataError."""
    with pytest.raises(NotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    _fails(tmp_path, "not a file")
