"""The CLI entry point stays light: --help lists the commands without importing torch, open_clip or textual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from saetui.commands.main import COMMAND_MODULES, main

SAETUI = Path(sys.executable).with_name("saetui")

HEAVY = ("torch", "open_clip", "textual", "textual_image", "transformers", "ray")


def test_help_lists_every_command(capsys) -> None:
    """`saetui --help` exits 0 and names every registered command."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMAND_MODULES:
        assert name in out


def test_help_imports_no_heavy_module() -> None:
    """Running --help in a fresh interpreter leaves torch, open_clip and textual unimported."""
    probe = (
        "import json, sys\n"
        "from saetui.commands.main import main\n"
        "code = main(['--help'])\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    code, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0
    assert heavy == []


def test_version(capsys) -> None:
    """--version prints the package version."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("saetui ")


@pytest.mark.parametrize(
    "args",
    [
        ["query", "select 1", "--db", "{dir}"],
        ["stats", "--db", "{dir}"],
        ["show", "0", "--db", "{dir}"],
        ["browse", "--db", "{dir}"],
        ["index", "{dir}", "--db", "{dir}"],
        ["compare", "{dir}", "{dir}"],
    ],
    ids=lambda args: args[0],
)
def test_a_folder_as_database_is_one_usage_error_everywhere(args: list[str], tmp_path: Path, capsys) -> None:
    """Every command that takes a database says the same line, with exit 2, when the path is a folder."""
    from saetui.commands.main import main

    folder = tmp_path / "images"
    folder.mkdir()
    code = main([arg.format(dir=folder) for arg in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert (
        err[-1]
        == f"saetui: error: database {folder} is a folder, not a file (pass a file path, e.g. {folder}/saetui.duckdb)"
    )


def test_shell_completion_completes_commands() -> None:
    """--show-completion prints a bash script, and the completion protocol answers `saetui ind` with index."""
    script = subprocess.run([str(SAETUI), "--show-completion", "bash"], capture_output=True, text=True, check=True)
    assert "_saetui_completion" in script.stdout
    env = {**os.environ, "COMP_WORDS": "saetui ind", "COMP_CWORD": "1", "_SAETUI_COMPLETE": "complete_bash"}
    done = subprocess.run([str(SAETUI)], capture_output=True, text=True, env=env, check=False)
    assert done.stdout.split() == ["index"]
