"""`saetui score`: the Monosemanticity Score of features, and the CLIP score of their explanations."""

from __future__ import annotations

import math

import typer

from saetui.commands.options import CacheDir, Database, Device, Features, feature_list

HELP = """Score features without a language model, and store the scores in the side file (table feature_scores).

monosemanticity: Pach et al.'s Monosemanticity Score, the activation-weighted mean pairwise cosine of a feature's
top images' embeddings (the model's final image embedding stored by `index --embeddings`): 1 when its top images
look alike to the image encoder, near the dataset's mean similarity when they do not.

clip_auroc (--explanations): for each explained feature, how well the CLIP text embedding of its explanation
separates its top images from random indexed images (AUROC: 0.5 chance, 1 perfect). Loads the text tower.

Both appear on the feature page, in `saetui export` and in SQL:
  saetui query "select f.feature, s.value from feature_scores s join features f using (feature)
                where s.score = 'monosemanticity' order by s.value desc limit 20"

Examples:

  saetui score

  saetui score --top 100 --explanations
"""


def register(app: typer.Typer) -> None:
    """Add the `score` command to the root app."""

    @app.command("score", help=HELP)
    def score_command(
        features: Features = None,
        top: int | None = typer.Option(None, "--top", min=1, help="The N most frequent alive features."),
        images: int | None = typer.Option(
            None, "--images", min=2, help="Top images per feature (default: all stored).", show_default=False
        ),
        explanations: bool = typer.Option(False, "--explanations", help="Also score each stored explanation."),
        device: Device = "cpu",
        cache: CacheDir = None,
        db: Database = None,
    ) -> None:
        """Compute and store feature scores."""
        from saetui.naming.scores import score_features
        from saetui.paths import default_db

        results = score_features(
            db if db is not None else default_db(),
            feature_list(features),
            top,
            images,
            explanations,
            cache,
            device,
        )
        for name, rows in results.items():
            values = [v for _, v, _, _ in rows if v is not None and not math.isnan(v)]
            mean = f"mean {sum(values) / len(values):.3f}" if values else "no value"
            typer.echo(f"{name}: {len(values)} of {len(rows)} features scored, {mean}")
