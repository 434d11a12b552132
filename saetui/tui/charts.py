"""Text charts (Rich Text, no widgets): horizontal bar lists, column histograms and number formats."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"
LEVELS = " ▁▂▃▄▅▆▇█"


def percent(value: float | None) -> str:
    """A share in [0, 1] as a compact percentage ('–' for missing)."""
    if value is None or not math.isfinite(value):
        return "–"
    pct = value * 100
    if pct == 0:
        return "0%"
    if pct >= 10:
        return f"{pct:.1f}%"
    if pct >= 0.01:
        return f"{pct:.2f}%"
    return f"{pct:.0e}%"


def number(value: float | None, digits: int = 3) -> str:
    """A float with `digits` significant digits ('–' for missing)."""
    if value is None or not math.isfinite(value):
        return "–"
    if value != 0 and (abs(value) >= 10**digits or abs(value) < 10 ** -(digits - 1)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def bar(fraction: float, width: int) -> str:
    """A left-aligned bar of width cells filled to fraction, with eighth-cell resolution."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part else "")
    return text.ljust(width)


def bar_rows(rows: Sequence[tuple[str, float, str]], width: int, style: str = "cyan") -> Text:
    """Lines 'label  ████    value' with bars scaled to the largest value; width is the whole line."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not rows:
        return text
    label_width = min(max(len(label) for label, _, _ in rows), max(8, width // 3))
    value_width = max(len(value) for _, _, value in rows)
    bar_width = max(4, width - label_width - value_width - 2)
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    for i, (label, value, shown) in enumerate(rows):
        if i:
            text.append("\n")
        name = label if len(label) <= label_width else label[: label_width - 1] + "…"
        text.append(name.ljust(label_width) + " ")
        text.append(bar(value / top, bar_width), style)
        text.append(" " + shown.rjust(value_width), "dim")
    return text


def column_chart(counts: Sequence[int], height: int, log: bool = False, style: str = "magenta") -> Text:
    """A vertical histogram: one column per count, `height` rows of eighth-block resolution."""
    values = [math.log1p(c) if log else float(c) for c in counts]
    top = max(values, default=0.0) or 1.0
    text = Text(no_wrap=True, overflow="crop")
    for row in range(height, 0, -1):
        line = []
        for value in values:
            level = value / top * height - (row - 1)
            line.append(LEVELS[min(8, max(0, round(level * 8)))])
        text.append("".join(line), style)
        if row > 1:
            text.append("\n")
    return text
