"""The package's shape: layers import downwards only, and no two modules or folders share a name."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "saetui"
# What each part of the library may not import: the CLI sits above everything, the notebook API and the feature
# card above the statistics, and the browser never reaches torch (it talks to the store).
FORBIDDEN = {
    "saetui": ("saetui.commands",),
    "saetui/stats": ("saetui.api", "saetui.card", "saetui.tui", "saetui.commands"),
    "saetui/store": ("saetui.api", "saetui.card", "saetui.stats", "saetui.tui", "saetui.commands"),
    # The pipeline reads downwards: models and families know nothing of ingest, the store or what is above them.
    "saetui/models": ("saetui.families", "saetui.ingest", "saetui.store", "saetui.stats", "saetui.tui", "saetui.api"),
    "saetui/families": ("saetui.ingest", "saetui.store", "saetui.stats", "saetui.tui", "saetui.api", "saetui.evaluate"),
    "saetui/ingest": ("saetui.stats", "saetui.tui", "saetui.api", "saetui.card", "saetui.evaluate"),
    "saetui/effects": ("saetui.tui", "saetui.api", "saetui.card", "saetui.evaluate"),
    # Naming sits on the API and the store (notes, explanations, scores, exports) and never on the browser.
    "saetui/naming": ("saetui.tui", "saetui.effects", "saetui.evaluate", "saetui.ingest"),
}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_layers_import_downwards_only() -> None:
    """saetui never imports the CLI; stats and store never import the API, the card or the TUI above them."""
    offences = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in _imports(path):
                if name.startswith(forbidden):
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offences == []


def test_module_and_folder_names_are_unique() -> None:
    """A name says where code lives: no two modules (or a module and a folder) of saetui share one."""
    names = Counter(
        path.stem if path.is_file() else path.name
        for path in LIBRARY.rglob("*")
        if (path.suffix == ".py" and path.stem != "__init__") or (path.is_dir() and path.name != "__pycache__")
    )
    assert [name for name, count in names.items() if count > 1] == []
