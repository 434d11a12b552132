"""Derived statistics of an indexed database: features, top images, logit lens, errors, coactivation, directions."""

from __future__ import annotations

from saetui.stats.engine import StatsSummary, compute_stats
from saetui.stats.options import StatsOptions
from saetui.stats.run_info import SaeFiles

__all__ = ["SaeFiles", "StatsOptions", "StatsSummary", "compute_stats"]
