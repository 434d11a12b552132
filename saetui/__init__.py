"""saetui: analyse released sparse autoencoders on CLIP vision models from the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from saetui.api import Database, open  # noqa: A004

__all__ = ["Database", "__version__", "open"]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - module-level lazy attributes (PEP 562)
    """Import the notebook API on first use, so `import saetui` stays light."""
    if name in ("open", "Database"):
        from saetui import api

        return getattr(api, name)
    raise AttributeError(f"module 'saetui' has no attribute {name!r}")
