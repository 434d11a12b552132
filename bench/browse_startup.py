"""Browser startup: seconds from starting `saetui browse` in a terminal to its first frame and to a filled list.

Runs the real console script in a pseudo-terminal (80 x 24, TERM=xterm-256color, like tmux without a graphics
protocol) on a CLIP-Scope-wide database: 65,536 features, k = 32, synthetic codes written through saetui's own
writer (bench/synthetic.py: realistic statistics, NOT a real model) and `saetui stats` tables computed from them
(without the logit lens, which needs real weights). The database is cached in bench/out/.

Measured per run, from process start:
- first_frame: the first screen Textual draws (the top bar of the features page is on it);
- list_filled: the features list shows its rows (the status line with the feature count is drawn);
then `q` is sent and the exit status checked. Target: first frame <= 1.5 s.

    .venv/bin/python bench/browse_startup.py [--images 1000] [--runs 5] [--mode halfcell]

Prints one line per run, the medians, and `first_frame_s: X` last.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SAETUI = Path(sys.executable).with_name("saetui")
sys.path.insert(0, str(BENCH))


def build_database(n_images: int) -> Path:
    """The cached benchmark database: synthetic codes for n_images images plus the statistics tables."""
    from synthetic import write_synthetic

    from saetui.stats import StatsOptions, compute_stats

    db = BENCH / "out" / f"browse-startup-{n_images}.duckdb"
    if db.is_file():
        return db
    db.parent.mkdir(parents=True, exist_ok=True)
    partial = db.with_suffix(".partial.duckdb")
    print(f"writing {n_images} synthetic images (not a real model) to {partial}", file=sys.stderr)
    write_synthetic(partial, n_images)
    print("computing statistics (no logit lens: synthetic codes have no weights)", file=sys.stderr)
    compute_stats(partial, StatsOptions(lens=False), progress=None)
    partial.rename(db)
    return db


def _read_until(fd: int, needle: bytes, deadline: float, seen: bytearray) -> float | None:
    """Read the terminal's output until needle appears; the time it appeared, or None at the deadline."""
    while time.perf_counter() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.02)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return None
        if not chunk:
            return None
        seen.extend(chunk)
        if needle in seen:
            return time.perf_counter()
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(db: Path, mode: str, timeout: float = 30.0) -> tuple[float, float, float, float, int]:
    """One start in a fresh 80 x 24 pseudo-terminal.

    Returns (first frame s, CPU s used by then, list filled s, seconds from q to exit, exit status).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    env.pop("TMUX", None)
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(SAETUI), "browse", "--db", str(db), "--images", mode],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        first = _read_until(master, b"saetui", start + timeout, seen)
        cpu = cpu_seconds(process.pid)
        filled = _read_until(master, b"alive)", start + timeout, seen) if b"alive)" not in seen else first
        if first is None or filled is None:
            raise RuntimeError(f"no frame within {timeout} s; output tail: {bytes(seen[-400:])!r}")
        time.sleep(0.2)
        asked = time.perf_counter()
        os.write(master, b"q")
        end = asked + timeout
        while process.poll() is None and time.perf_counter() < end:
            _read_until(master, b"\x00never", min(end, time.perf_counter() + 0.05), seen)
        quit_s = time.perf_counter() - asked
        status = process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return first - start, cpu, filled - start, quit_s, status


def main(argv: list[str] | None = None) -> None:
    """Build (or reuse) the database, start the browser several times, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="synthetic images in the database")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mode", default="halfcell", help="--images mode passed to saetui browse")
    args = parser.parse_args(argv)
    db = build_database(args.images)
    print(f"database: {db} ({db.stat().st_size / 1e6:.1f} MB, 65,536 features, synthetic codes)")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (wall times grow with load)")
    firsts, cpus, filleds, quits = [], [], [], []
    for run in range(args.runs):
        first, cpu, filled, quit_s, status = run_once(db, args.mode)
        print(
            f"run {run + 1}: first frame {first:.3f} s (CPU {cpu:.2f} s), list filled {filled:.3f} s, "
            f"q to exit {quit_s:.3f} s, exit status {status}"
        )
        if status != 0:
            raise SystemExit(f"saetui browse exited with {status}")
        firsts.append(first)
        cpus.append(cpu)
        filleds.append(filled)
        quits.append(quit_s)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"median cpu_s_to_first_frame: {statistics.median(cpus):.3f}")
    print(f"median list_filled_s: {statistics.median(filleds):.3f}")
    print(f"median quit_s: {statistics.median(quits):.3f}")
    print(f"first_frame_s: {statistics.median(firsts):.3f}")


if __name__ == "__main__":
    main()
