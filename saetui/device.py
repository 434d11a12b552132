"""Device placement, the one rule every model step follows (index, stats and its lens, search, eval).

`saetui index` also takes a list (`resolve_devices`): one model replica per device, batches dealt round-robin.

A step resolves its device once with `resolve_device` (a name from the command line, or a torch.device from a
caller), builds its modules there, moves every host input onto it with `to_device` (numpy arrays, CPU tensors
such as checkpoint rows and cached text embeddings), and copies results back with `to_host` only at its end.
Checkpoints always load on the CPU (weights_only) and are moved by the step that uses them.

The index engine feeds a GPU without waiting on it: a batch's pixels are staged in page-locked memory
(`staging_buffer`) and copied without blocking (`upload`), and its results come back through
`HostCopies`, which queues the copies and waits only when the arrays are asked for; on other devices both are
the plain synchronous copies.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def staging_buffer(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An empty float32 host tensor for inputs bound for device: page-locked for a GPU, so the copy is asynchronous."""
    return torch.empty(shape, dtype=torch.float32, pin_memory=device.type == "cuda")


def upload(buffer: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A staging buffer's contents on device: on a GPU copied from page-locked memory without blocking the host
    (the stream orders the copy before the ops that use it); elsewhere a plain copy."""
    return buffer.to(device=device, non_blocking=device.type == "cuda")


class HostCopies:
    """A step's results on their way to the host: on a GPU, copies into page-locked memory queued behind the ops
    that compute them, so the host can queue the next batch meanwhile; `arrays()` waits for them."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], device: torch.device) -> None:
        """Queue the copies of tensors (all on device)."""
        self._event = None
        if device.type == "cuda":
            self._tensors = {
                name: torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
                for name, t in tensors.items()
            }
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(device))
        else:
            self._tensors = dict(tensors)

    def arrays(self) -> dict[str, np.ndarray]:
        """The results as numpy arrays, once their copies have ended (owned copies: page-locked memory is reused)."""
        if self._event is None:
            return {name: to_host(t) for name, t in self._tensors.items()}
        self._event.synchronize()
        return {name: t.numpy().copy() for name, t in self._tensors.items()}


def to_host(x: torch.Tensor) -> np.ndarray:
    """A result back on the host as a numpy array."""
    return x.detach().cpu().numpy()
