"""`saetui demo`: build an offline demo workspace (tiny RANDOM-weight CLIP and SAE, drawn images) and browse it."""

from __future__ import annotations

import sys

import typer

from saetui.commands.options import CacheDir

HELP = """Build a small demo workspace offline and open the browser on it.

Nothing is downloaded: the demo makes a tiny CLIP model and a CLIP-Scope-format SAE with RANDOM weights,
publishes them into the saetui cache (<cache>/hub) the way a fetch would, draws 96 labelled images into DIR
(default <cache>/demo), indexes them with the real index engine, computes the statistics and opens `saetui
browse`. Because the weights are random the features say nothing about CLIP; the demo shows what the tool does.
A second run reuses the workspace (--rebuild makes it again). The database path goes to stdout.

Once the demo has run, its SAE is a named SAE like the released ones, read from the cache:
`saetui index PHOTOS --sae demo-random-weights` indexes your own images with it.

Examples:

  saetui demo

  saetui index ~/Pictures --sae demo-random-weights --db mine.duckdb

  saetui demo /tmp/saetui-demo --images halfcell

  saetui demo --no-browse
"""


def register(app: typer.Typer) -> None:
    """Add the `demo` command to the root app."""

    @app.command("demo", help=HELP)
    def demo_command(
        directory: str | None = typer.Argument(
            None, metavar="DIR", help="Workspace folder (created; default: <cache>/demo).", show_default=False
        ),
        per_class: int = typer.Option(12, "--per-class", min=1, max=500, help="Images drawn per class (8 classes)."),
        rebuild: bool = typer.Option(False, "--rebuild", help="Make the workspace again even if it exists."),
        browse: bool = typer.Option(True, "--browse/--no-browse", help="Open the browser when the database is ready."),
        images: str | None = typer.Option(
            None,
            "--images",
            help="Browser images: auto, kitty, sixel, halfcell, unicode or none (default: $SAETUI_IMAGES, else auto).",
            show_default=False,
        ),
        cache: CacheDir = None,
    ) -> None:
        """Build the demo workspace and browse it."""
        from saetui.demo import RANDOM_WEIGHTS_NOTE, build_demo

        workspace = build_demo(directory, per_class=per_class, rebuild=rebuild, cache=cache)
        if not workspace.built:
            sys.stderr.write(f"saetui demo: reusing {workspace.root} (--rebuild to make it again)\n")
            sys.stderr.write(f"saetui demo: {RANDOM_WEIGHTS_NOTE}\n")
        sys.stderr.write(
            f"saetui demo: its SAE now works by name: saetui index PHOTOS --sae {workspace.fetched.spec.name}"
            f"{'' if cache is None else ' --cache-dir ' + cache}\n"
        )
        sys.stdout.write(f"{workspace.db}\n")
        sys.stdout.flush()
        if not browse:
            return
        from saetui.tui.launch import browse as run_browser
        from saetui.tui.launch import default_image_mode

        code = run_browser(workspace.db, (images or default_image_mode()).lower())
        if code:
            raise typer.Exit(code)
