"""A second torch device for machines without a GPU: `meta`, with torch's device checks made as strict as CUDA's.

On a GPU box a CPU tensor meeting a CUDA tensor in an op raises; on `meta` some ops (matmul, index_select) quietly
accept a CPU operand. `strict_meta()` installs a TorchFunctionMode that raises for any op whose tensor operands
sit on more than one device (0-dim CPU scalars excepted, as CUDA allows them), so a model step run on `meta`
under it fails exactly where it would mix devices on a GPU. Copies back to the host (`.cpu()`, `.numpy()`,
`.item()`, `.tolist()`, `.to("cpu")`) return zeros of the right shape and dtype, so the step runs to its end; the
mode counts them, which shows the results really were computed on the second device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

META = torch.device("meta")


# Calls that move data between devices on purpose (module.to, param.data = ...), not ops that compute.
_MOVES = ("to", "copy_", "set_", "__set__", "__get__", "new_tensor", "_has_compatible_shallow_copy_type")
_SCALARS = {"item": lambda v: v, "__float__": float, "__int__": int, "__bool__": bool, "__index__": int}


class MixedDevices(RuntimeError):
    """An op got tensors on two devices (what CUDA refuses)."""


def _zeros_like_host(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor of zeros with the meta tensor's shape and dtype."""
    return torch.zeros(tensor.shape, dtype=tensor.dtype)


@dataclass
class StrictMeta(TorchFunctionMode):
    """Refuses mixed-device ops and turns host copies of meta tensors into zeros."""

    host_copies: int = 0
    ops: int = 0
    seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        """Initialise the mode base class (a dataclass does not call it)."""
        super().__init__()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """Check the operands' devices, answer host copies of meta tensors, run everything else."""
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        first = tensors[0] if tensors else None
        name = getattr(func, "__name__", str(func))
        if first is not None and first.device.type == "meta" and self._is_host_copy(name, args, kwargs):
            self.host_copies += 1
            host = _zeros_like_host(first)
            if name in ("numpy", "__array__"):
                return host.numpy()
            if name == "tolist":
                return host.tolist()
            if name in _SCALARS:
                return _SCALARS[name](host.reshape(-1)[0].item() if host.numel() else 0)
            return host
        devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
        if len(devices) > 1 and name not in _MOVES:
            raise MixedDevices(f"{name} got tensors on {sorted(map(str, devices))}")
        self.ops += 1
        self.seen.add(name)
        return func(*args, **kwargs)

    @staticmethod
    def _is_host_copy(name: str, args: tuple, kwargs: dict) -> bool:
        """Whether the call copies a meta tensor's data to the host."""
        if name in ("cpu", "numpy", "tolist", "__array__", *_SCALARS):
            return True
        if name == "to":
            target = kwargs.get("device")
            for arg in args[1:]:
                if isinstance(arg, (str, torch.device)):
                    target = arg
            return target is not None and torch.device(target).type == "cpu"
        return False


@contextmanager
def strict_meta() -> Iterator[StrictMeta]:
    """Run the block with the strict mode on (this thread only, as TorchFunctionModes are)."""
    with StrictMeta() as mode:
        yield mode
