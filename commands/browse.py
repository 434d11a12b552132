"""`saetui browse`: the Textual app for flipping through features, images and SQL over one database."""

from __future__ import annotations

import typer

HELP = """Browse a saetui database in the terminal: the features list (sort, search, jump to an id), feature
pages with top-image thumbnails and patch heatmaps, image pages, an overview and a read-only SQL console.

Thumbnails come from the database, so a database copied to another machine browses without the image files.
Images are drawn with textual-image: --images auto detects kitty graphics or sixel and falls back to coloured
half blocks; pick halfcell over slow SSH or in tmux (kitty/sixel in tmux need `set -g allow-passthrough on`),
none for text only. $SAETUI_IMAGES sets the default. Keys: ? shows them all; q quits.

Examples:

  saetui browse

  saetui browse --db imagenet-layer20.duckdb --images halfcell

  saetui browse --feature 1234
"""


def register(app: typer.Typer) -> None:
    """Add the `browse` command to the root app."""

    @app.command("browse", help=HELP)
    def browse_command(
        db: str | None = typer.Option(
            None, "--db", help="Database file (default: $SAETUI_DB, else ./saetui.duckdb).", show_default=False
        ),
        images: str | None = typer.Option(
            None,
            "--images",
            help="auto, kitty, sixel, halfcell, unicode or none (default: $SAETUI_IMAGES, else auto).",
            show_default=False,
        ),
        feature: int | None = typer.Option(None, "--feature", help="Open this feature's page first."),
        compare: str | None = typer.Option(
            None,
            "--compare",
            help="Show each feature's best match in this database (run `saetui compare DB OTHER` first).",
            show_default=False,
        ),
    ) -> None:
        """Open the browser."""
        from saetui.paths import default_db
        from saetui.tui.launch import browse, default_image_mode

        code = browse(db or default_db(), (images or default_image_mode()).lower(), feature, compare)
        if code:
            raise typer.Exit(code)
