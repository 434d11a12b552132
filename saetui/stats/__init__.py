"""Derived statistics of an indexed database: features, top images, logit lens, errors, coactivation, directions.

The names below load on first use (PEP 562), so `saetui.stats.options` (the defaults every command shows in its
help) imports without numpy or DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saetui.stats.engine import StatsSummary, compute_stats
    from saetui.stats.options import StatsOptions
    from saetui.stats.run_info import SaeFiles

_WHERE = {
    "StatsSummary": "saetui.stats.engine",
    "compute_stats": "saetui.stats.engine",
    "StatsOptions": "saetui.stats.options",
    "SaeFiles": "saetui.stats.run_info",
}
__all__ = ["SaeFiles", "StatsOptions", "StatsSummary", "compute_stats"]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
