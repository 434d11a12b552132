"""`saetui show FEATURE`: a feature card as text or JSON, for scripts and terminals without graphics."""

from __future__ import annotations

import json
import sys

import typer

from saetui.commands.options import Database

HELP = """Print one feature's card: statistics, top images with labels and paths, the labels of its top images,
logit-lens labels, coactivating features and similar-direction features.

Reads the tables `saetui stats` wrote (run it first). Similar directions come from the decoder rows cached by
`saetui stats`; nothing here loads torch. Coactivations are token level by default; --level image counts shared
images instead, and --exact counts every token instead of reading the precomputed lists (one scan of the
activations: seconds on large databases). --json prints the same card as one JSON object.

Examples:

  saetui show 1234

  saetui show 1234 --db imagenet-val.duckdb --top 20

  saetui show 1234 --json | jq '.top_images[].path'
"""


def register(app: typer.Typer) -> None:
    """Add the `show` command to the root app."""

    @app.command("show", help=HELP, no_args_is_help=True)
    def show_command(
        feature: int = typer.Argument(..., metavar="FEATURE", help="Feature id, e.g. 1234.", show_default=False),
        db: Database = None,
        as_json: bool = typer.Option(False, "--json", help="Print the card as JSON."),
        top: int = typer.Option(10, "--top", min=1, help="Top images to list."),
        related: int = typer.Option(10, "--related", min=1, help="Labels, coactivating and similar features to list."),
        level: str = typer.Option("token", "--level", help="Coactivation level: token or image."),
        exact: bool = typer.Option(False, "--exact", help="Count coactivations exactly (slower)."),
    ) -> None:
        """Print a feature card."""
        from saetui.api import Database
        from saetui.card import feature_card, render_card

        with Database(db) as database:
            card = feature_card(database, feature, n_images=top, n_related=related, level=level, exact=exact)
        if as_json:
            sys.stdout.write(json.dumps(card, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(render_card(card))
