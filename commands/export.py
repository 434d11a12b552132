"""`saetui export`: features with their notes, explanations and scores, as an HTML gallery, JSON or Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from saetui.commands.options import Database, Features, feature_list

HELP = """Write chosen features to share: a self-contained HTML gallery (top images with heatmaps, numbers, notes,
explanations, scores; opens from the file, no server, nothing fetched), or JSON / Parquet in the schema the
README documents (the feature card of `saetui show --json`, plus note, explanation and scores).

Which features: --features, else --top N (most frequent alive), else every feature with a note or an
explanation. The format comes from --format or the file's suffix.

Examples:

  saetui export -o interesting.html

  saetui export --top 50 -o top50.parquet

  saetui export --features 12,345 -o features.json
"""


def register(app: typer.Typer) -> None:
    """Add the `export` command to the root app."""

    @app.command("export", help=HELP)
    def export_command(
        output: Path = typer.Option(..., "--output", "-o", help="File to write (.html, .json or .parquet)."),
        features: Features = None,
        top: int | None = typer.Option(None, "--top", min=1, help="The N most frequent alive features."),
        fmt: str | None = typer.Option(None, "--format", "-f", help="html, json or parquet (default: from -o)."),
        images: int = typer.Option(12, "--images", min=1, max=200, help="Top images per feature."),
        tile: int = typer.Option(192, "--tile", min=32, max=1024, help="Tile side in pixels (HTML)."),
        db: Database = None,
    ) -> None:
        """Export features."""
        from saetui.errors import NotFoundError
        from saetui.naming.export import export_features
        from saetui.paths import default_db

        if not output.parent.exists():
            raise NotFoundError(f"folder {output.parent} does not exist", "create it or choose another -o")
        path = db if db is not None else default_db()
        count = export_features(path, output, fmt, feature_list(features), top, images, tile)
        typer.echo(f"wrote {count} features to {output}")
