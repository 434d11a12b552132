"""`saetui stats`: (re)compute the derived tables of a database (features, top images, lens, errors, ...)."""

from __future__ import annotations

import sys

import typer

from saetui.commands.options import CacheDir, Database, Device
from saetui.progress import step_line
from saetui.stats.options import StatsOptions

DEFAULTS = StatsOptions()  # the one source of every default: `saetui index` computes with these too

HELP = """Compute the derived tables of an indexed database, in place.

Writes features (frequency, image_frequency, mean/max value, label entropy, top label, dead flag),
feature_images (top images per feature by image-level activation), feature_histograms, coactivations (top
partners per feature), logit_lens (top labels per feature), position_errors and image_errors, plus stats_info
(how they were computed). A rerun on unchanged data does nothing (--force recomputes); after indexing more
images it recomputes everything, so the tables always describe the whole database.

The logit lens and similar-direction lookups need the run's SAE checkpoint and model in the cache (fetched by
`saetui index`); --no-lens skips the lens (similar directions still come from the checkpoint when present).
Statistics go to stdout as `key value` lines; progress to stderr.

Examples:

  saetui stats

  saetui stats --db imagenet-val.duckdb --lens-templates imagenet80

  saetui stats --image-tokens cls --lens-direction decoder+pre_b --no-lens-ln --force
"""


def register(app: typer.Typer) -> None:
    """Add the `stats` command to the root app."""

    @app.command("stats", help=HELP)
    def stats_command(
        db: Database = None,
        cache: CacheDir = None,
        force: bool = typer.Option(False, "--force", help="Recompute even when nothing changed."),
        image_tokens: str = typer.Option(
            DEFAULTS.image_tokens,
            "--image-tokens",
            help="Tokens whose max is the image-level activation: all, cls or patches.",
        ),
        top_images: int = typer.Option(
            DEFAULTS.top_images, "--top-images", help="Images kept per feature in feature_images."
        ),
        entropy_top: int = typer.Option(
            DEFAULTS.entropy_top, "--entropy-top", help="N: label entropy over the top-N images."
        ),
        lens: bool = typer.Option(DEFAULTS.lens, "--lens/--no-lens", help="Compute the logit lens (needs the model)."),
        lens_direction: str = typer.Option(
            DEFAULTS.lens_direction, "--lens-direction", help="Lens direction: decoder, encoder or decoder+pre_b."
        ),
        lens_ln: bool = typer.Option(
            DEFAULTS.lens_ln, "--lens-ln/--no-lens-ln", help="Apply the final LayerNorm (ln_post)."
        ),
        lens_templates: str = typer.Option(
            DEFAULTS.lens_templates, "--lens-templates", help="'single' (\"A photo of a {label}.\") or 'imagenet80'."
        ),
        lens_top: int = typer.Option(DEFAULTS.lens_top, "--lens-top", help="Labels kept per feature in logit_lens."),
        coactivation_sample: int = typer.Option(
            DEFAULTS.coactivation_sample,
            "--coactivation-sample",
            help="Active tokens per feature sampled for the coactivation lists.",
        ),
        device: Device = "auto",
        threads: int | None = typer.Option(
            None,
            "--threads",
            min=1,
            help="Threads scanning the codes, each a range of images (default: CPU cores, at most 8).",
            show_default=False,
        ),
    ) -> None:
        """Compute the derived tables."""
        from saetui.paths import default_db
        from saetui.stats import compute_stats

        options = StatsOptions(
            image_tokens=image_tokens,  # type: ignore[arg-type]
            top_images=top_images,
            entropy_top=entropy_top,
            lens=lens,
            lens_direction=lens_direction,  # type: ignore[arg-type]
            lens_ln=lens_ln,
            lens_templates=lens_templates,  # type: ignore[arg-type]
            lens_top=lens_top,
            coactivation_sample=coactivation_sample,
        )
        path = db or default_db()
        summary = compute_stats(
            path,
            options,
            cache=cache,
            force=force,
            device=device,
            progress=lambda stage, done, total: step_line(f"stats: {stage}", done, total),
            threads=threads,
        )
        if not summary.computed:
            sys.stderr.write("saetui: statistics are up to date (use --force to recompute)\n")
        rows = [
            ("database", str(path)),
            ("computed", "yes" if summary.computed else "no (up to date)"),
            ("images", str(summary.n_images)),
            ("tokens", str(summary.n_tokens)),
            ("features", str(summary.n_features)),
            ("alive", str(summary.alive)),
            ("dead", str(summary.n_features - summary.alive)),
            ("logit_lens", "yes" if summary.lens else "no"),
            ("neighbours", "yes" if summary.neighbours else "no"),
            ("seconds", f"{summary.seconds:.1f}"),
        ]
        for key, value in rows:
            sys.stdout.write(f"{key} {value}\n")
