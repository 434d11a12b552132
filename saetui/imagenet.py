"""ImageNet-1k class metadata: the 1000 wnids in class-index order and their human-readable names."""

from __future__ import annotations

import functools
import importlib.util
import re
from importlib import resources
from pathlib import Path

_WNID = re.compile(r"n\d{8}")


def wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids (e.g. "n01440764") in class-index order, from saetui's package data."""
    return list(_wnids())


def class_names() -> list[str]:
    """The 1000 class names open_clip uses for zero-shot ImageNet ("tench", ...) in class order."""
    return list(_class_names())


def wnid_to_name() -> dict[str, str]:
    """Map every ImageNet-1k wnid to its class name."""
    return dict(zip(_wnids(), _class_names(), strict=True))


def is_wnid(name: str) -> bool:
    """Whether name is one of the 1000 ImageNet-1k wnids."""
    return _WNID.fullmatch(name) is not None and name in _wnid_set()


@functools.cache
def _wnids() -> tuple[str, ...]:
    """The wnids read once from the package data file."""
    text = resources.files("saetui").joinpath("resources", "imagenet_wnids.txt").read_text(encoding="ascii")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@functools.cache
def _wnid_set() -> frozenset[str]:
    """The wnids as a set, for membership tests."""
    return frozenset(_wnids())


@functools.cache
def _class_names() -> tuple[str, ...]:
    """The class names read once from open_clip's zero_shot_metadata.py.

    open_clip's ``zero_shot_metadata`` module is plain data, but importing it as
    ``open_clip.zero_shot_metadata`` runs ``open_clip/__init__.py``, which imports torch (seconds). The file
    is therefore loaded on its own from the installed open_clip package, so sources and the browser can name
    classes without importing torch.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip is not installed; reinstall saetui")
    location = Path(next(iter(spec.submodule_search_locations))) / "zero_shot_metadata.py"
    module_spec = importlib.util.spec_from_file_location("_saetui_open_clip_zero_shot_metadata", location)
    if module_spec is None or module_spec.loader is None:
        raise ModuleNotFoundError(f"cannot load {location}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return tuple(module.IMAGENET_CLASSNAMES)
