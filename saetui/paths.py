"""Where saetui keeps downloads and derived data, and where a database lives by default."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_DB = "saetui.duckdb"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: the explicit override, else $SAETUI_CACHE, else ./cache."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("SAETUI_CACHE")
    return Path(env).expanduser() if env else Path("cache")


def hub_cache(root: Path) -> Path:
    """The huggingface_hub cache folder inside a saetui cache root."""
    return root / "hub"


def default_db() -> Path:
    """The database used when --db is not given: $SAETUI_DB, else ./saetui.duckdb."""
    env = os.environ.get("SAETUI_DB")
    return Path(env).expanduser() if env else Path(DEFAULT_DB)


def file_identity(path: Path) -> str:
    """A short key for a local file: its resolved path (a content hash in a hub cache), size and mtime."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return hashlib.sha256(f"{resolved}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
