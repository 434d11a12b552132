"""The root `saetui` command: registers the subcommands and turns known errors into one-line messages."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer

from saetui import __version__
from saetui.errors import ExitCode, SaetuiError

app = typer.Typer(
    name="saetui",
    help=(
        "Analyse released sparse autoencoders on CLIP vision models: fetch a checkpoint, index images into "
        "DuckDB, compute feature statistics, browse features in the terminal and query them with SQL.\n\n"
        "Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 not found, 4 network, 5 invalid data, "
        "6 database locked, 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish and PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    """Print the version and stop."""
    if value:
        typer.echo(f"saetui {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Analyse released sparse autoencoders on CLIP vision models."""


# Each module defines register(app) and keeps torch, open_clip and textual out of its import time.
COMMAND_MODULES: tuple[str, ...] = (
    "fetch", "index", "stats", "show", "browse", "query", "demo", "eval", "compare", "effects", "steer", "note",
    "explain", "score", "export",
)  # fmt: skip

for _name in COMMAND_MODULES:
    importlib.import_module(f"saetui.commands.{_name}").register(app)


def error_line(message: str) -> None:
    """Write one diagnostic line to stderr."""
    sys.stderr.write(f"saetui: error: {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting."""
    try:
        app(args=argv, prog_name="saetui")
    except SystemExit as exc:
        code = exc.code
        if code == ExitCode.INTERRUPTED:  # Typer turns Ctrl-C inside a command into Exit(130)
            error_line("interrupted")
        return code if isinstance(code, int) else (0 if code is None else ExitCode.ERROR)
    except SaetuiError as exc:
        error_line(exc.one_line())
        return int(exc.exit_code)
    except KeyboardInterrupt:
        error_line("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence turns a bug into one line
        if os.environ.get("SAETUI_DEBUG"):
            traceback.print_exc()
        error_line(f"unexpected {type(exc).__name__}: {exc} (set SAETUI_DEBUG=1 for the traceback)")
        return int(ExitCode.ERROR)
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
