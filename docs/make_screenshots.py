"""Write SVG screenshots of the browser's main pages into docs/screenshots/ for the README.

The database is the `saetui demo` workspace (a tiny RANDOM-weight CLIP and SAE over drawn images of eight
classes), built in a temporary folder and browsed with the half-cell renderer pinned as the snapshot tests do
(tests/harness/tui.py).

    .venv/bin/python docs/make_screenshots.py [--size 150x42]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.tui import browser, settle  # noqa: E402
from saetui.demo import build_demo  # noqa: E402
from saetui.tui.navigation import Location  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
FEATURE = 183  # a demo feature that fires on the red circles


async def shoot(db: Path, name: str, start: Location | None, keys: tuple[str, ...], size: tuple[int, int]) -> Path:
    """Open the browser at start, press keys (settling after each) and save the screen as name.svg."""
    app = browser(db, start)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        path = OUT / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(OUT))
    return path


def main(argv: list[str] | None = None) -> None:
    """Build the database and write one SVG per page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="150x42", help="terminal size as COLUMNSxROWS")
    args = parser.parse_args(argv)
    columns, rows = (int(v) for v in args.size.lower().split("x"))
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = build_demo(Path(tmp) / "demo").db
        feature = Location("feature", FEATURE)
        pages = [
            ("features", None, ("down", "down")),
            ("feature", feature, ()),
            ("image", feature, ("t", "enter")),
            ("overview", Location("overview"), ()),
            ("sql", Location("sql"), ("ctrl+r",)),
            ("help", None, ("question_mark",)),
        ]
        for name, start, keys in pages:
            print(asyncio.run(shoot(db, name, start, keys, (columns, rows))))


if __name__ == "__main__":
    main()
