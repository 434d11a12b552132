"""Device placement, the one rule every model step follows (index, stats and its lens, search, eval).

`saetui index` also takes a list (`resolve_devices`): one model replica per device, batches dealt round-robin.

A step resolves its device once with `resolve_device` (a name from the command line, or a torch.device from a
caller), builds its modules there, moves every host input onto it with `to_device` (numpy arrays, CPU tensors
such as checkpoint rows and cached text embeddings), and copies results back with `to_host` only at its end.
Checkpoints always load on the CPU (weights_only) and are moved by the step that uses them.
"""

from __future__ import annotations

import numpy as np
import torch

from saetui.errors import UsageError

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device) -> torch.device:
    """auto|cpu|cuda[:N]|mps (or a torch.device, kept as it is) -> torch.device; auto picks cuda, then mps, then cpu."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError("device mps is not available on this machine", "use --device auto or cpu")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {name} is not available: torch sees no CUDA GPU", "use --device auto or cpu")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UsageError(f"invalid device {name!r}", "use cuda or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name} does not exist: {torch.cuda.device_count()} GPU(s)", "use cuda:0")
        return device
    raise UsageError(f"unknown device {name!r}", f"use {DEVICE_NAMES}")


def resolve_devices(names: str | torch.device) -> list[torch.device]:
    """A comma-separated device list (cuda:0,cuda:1 or cuda:0,1; one model replica per entry) -> torch.devices."""
    if isinstance(names, torch.device):
        return [names]
    devices: list[torch.device] = []
    for part in (p.strip() for p in names.split(",")):
        if not part:
            raise UsageError(f"empty entry in the device list {names!r}", "e.g. --device cuda:0,cuda:1")
        if part.isdigit() and devices and devices[-1].type == "cuda":
            part = f"cuda:{part}"  # cuda:0,1,2: the index alone continues the list
        devices.append(resolve_device(part))
    return devices


def module_device(module: torch.nn.Module) -> torch.device:
    """The device a module's parameters live on."""
    return next(module.parameters()).device


def to_device(x: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host array or tensor on the step's device (and in dtype, if given)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    return tensor.to(device=device, dtype=dtype) if dtype is not None else tensor.to(device=device)


def to_host(x: torch.Tensor) -> np.ndarray:
    """A result back on the host as a numpy array."""
    return x.detach().cpu().numpy()
