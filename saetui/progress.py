"""Stderr progress lines: a rate-and-ETA line redrawn in place on a terminal (sparse otherwise), and step counts."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    """Seconds as H:MM:SS or M:SS."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts done items against a total and reports rate and ETA on stderr."""

    def __init__(
        self,
        total: int,
        label: str,
        stream: TextIO | None = None,
        interval: float | None = None,
        unit: str = "img",
    ) -> None:
        """Start counting; on a non-terminal stream report at most every `interval` seconds (default 10)."""
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.live else 10.0)
        self.done = 0
        self.extra = ""
        self.started = time.perf_counter()
        self._last = 0.0

    def advance(self, n: int, extra: str = "") -> None:
        """Record n more items and redraw when due."""
        self.done += n
        self.extra = extra
        now = time.perf_counter()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The current progress line."""
        elapsed = (now or time.perf_counter()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        tail = f" {self.extra}" if self.extra else ""
        return (
            f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {rate:.1f} {self.unit}/s "
            f"elapsed {_clock(elapsed)} eta {_clock(eta)}{tail}"
        )

    def _draw(self, now: float) -> None:
        """Write the line, in place on a terminal."""
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line(now))
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the live line so later output starts on a fresh line."""
        if self.live and self.done:
            self.stream.write("\n")
            self.stream.flush()


def step_line(label: str, done: int, total: int, stream: TextIO | None = None) -> None:
    """'label done/total' on stderr, overwritten in place on a terminal, one line per step otherwise."""
    stream = stream if stream is not None else sys.stderr
    end = "\n" if done == total or not stream.isatty() else ""
    stream.write(f"\r{label} {done}/{total}{end}")
    stream.flush()
