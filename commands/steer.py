"""`saetui steer IMAGE`: an image's top classes before and after setting a feature, and its attribution."""

from __future__ import annotations

import sys

import typer

from saetui.commands.options import CacheDir, Database, Device

HELP = """Steer one image: set FEATURE to SCALE x its largest value in the dataset on every stored token
(x' = x + (c max_f - v) dec, the SAE's error kept; --scale 0 ablates it), run the rest of CLIP and print the top
classes before and after. IMAGE is an image id of the database or an image file. --attribute instead ranks the
image's features by gradient x activation for its top-1 class (or --label) and confirms the top ones by ablation.

Examples:

  saetui steer 17 --feature 1234 --scale 5

  saetui steer photo.jpg --feature 1234 --scale -2 --db imagenet-val.duckdb

  saetui steer 17 --attribute
"""


def register(app: typer.Typer) -> None:
    """Add the `steer` command to the root app."""

    @app.command("steer", help=HELP, no_args_is_help=True)
    def steer_command(
        image: str = typer.Argument(..., metavar="IMAGE", help="Image id in the database, or an image file."),
        feature: int | None = typer.Option(None, "--feature", help="The feature to set.", show_default=False),
        scale: float = typer.Option(5.0, "--scale", help="c: the value is c x the feature's max (0 ablates)."),
        attribute_: bool = typer.Option(False, "--attribute", help="Rank the image's features by attribution."),
        label: str | None = typer.Option(None, "--label", help="Class to attribute (default: the top-1)."),
        top: int = typer.Option(5, "--top", min=1, help="Classes (or features) to print."),
        db: Database = None,
        device: Device = "auto",
        cache: CacheDir = None,
    ) -> None:
        """Print the top classes before and after steering, or the image's attribution."""
        from saetui.effects.steering import attribution_lines, steer_lines
        from saetui.errors import UsageError
        from saetui.paths import default_db
        from saetui.store.connection import connect

        if not attribute_ and feature is None:
            raise UsageError("missing --feature", "e.g. saetui steer 17 --feature 1234 --scale 5, or --attribute")
        con = connect(db or default_db())
        try:
            if attribute_:
                lines = attribution_lines(con, image, label, top, cache, device)
            else:
                lines = steer_lines(con, image, int(feature), scale, top, cache, device)
        finally:
            con.close()
        sys.stdout.write("".join(line + "\n" for line in lines))
