"""`saetui effects`: what each feature does to CLIP's class logits when it is removed (stored per feature)."""

from __future__ import annotations

import sys

import typer

from saetui.commands.options import CacheDir, Database, Device, Features, feature_list
from saetui.progress import step_line

HELP = """Compute every alive feature's causal effect: ablate it on each of its top images (the tokens where it is
kept and active: x' = x - v dec, the SAE's error kept), run the rest of CLIP from the hook (later blocks, ln_post,
projection) and average the change of the class logits z_c = s cos(e, t_c) against "A photo of a {label}." over the
logit lens's label set. Stores causal_effects (the classes each feature supports and suppresses) and
feature_effects (drop of p(own label), share of flipped top-1 predictions, and the agreement of the logit lens,
the causal effect and the top images' labels as top-10 overlaps).

The activations are recomputed from the original image files (the database holds codes only), with the run's own
model, preprocessing and SAE from the cache. Run `saetui stats` first (it picks the top images).

Examples:

  saetui effects --db imagenet-val.duckdb --device cuda

  saetui effects --features 12,345,6789 --top-images 32
"""


def register(app: typer.Typer) -> None:
    """Add the `effects` command to the root app."""

    @app.command("effects", help=HELP)
    def effects_command(
        db: Database = None,
        top_images: int = typer.Option(16, "--top-images", min=1, help="Top images per feature to ablate on."),
        features: Features = None,
        batch_images: int = typer.Option(8, "--batch-images", min=1, help="Images run to the hook at once."),
        device: Device = "auto",
        cache: CacheDir = None,
    ) -> None:
        """Compute and store the causal effect of every alive feature."""
        from saetui.effects.causal import compute_effects
        from saetui.effects.context import open_context
        from saetui.paths import default_db
        from saetui.stats.engine import open_for_writing

        with open_for_writing(db or default_db()) as con:
            ctx = open_context(con, cache, device)
            summary = compute_effects(
                con,
                ctx,
                top_images,
                feature_list(features),
                batch_images,
                lambda done, total: step_line("effects: images", done, total),
            )
        sys.stderr.write(
            f"saetui: causal effects of {summary.features} features over {summary.images} images "
            f"({summary.branches} ablations) in {summary.seconds:.1f} s "
            f"({summary.seconds / max(summary.features, 1):.3f} s per feature)\n"
        )
