"""`saetui index`: push a folder, list file, Parquet data or HF dataset through CLIP + SAE into a database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from saetui.commands.options import (
    CacheDir,
    Checkpoint,
    Device,
    ImageColumn,
    LabelColumn,
    ModelRevision,
    Revision,
    SaeName,
    Split,
    Workers,
)
from saetui.defaults import BATCH_SIZE, COMMIT_IMAGES
from saetui.errors import UsageError

if TYPE_CHECKING:
    from saetui.hub import FetchedSae

HELP = """Index images: run them through the CLIP vision tower up to the SAE's hook point and the SAE, and store
every stored token's kept (feature, value) pairs (TopK SAEs: k; ReLU SAEs: every active latent, or the largest
--keep-top N), its reconstruction error, and a thumbnail of each image's model input in a DuckDB database.

SOURCE is an image folder (recursive; label = parent folder name, ImageNet wnid folders get class names), a
text file of image paths (optional TAB + label), a Parquet file or folder (image bytes or paths, optional
label column), a dataset saved with `datasets` (save_to_disk folder) or hf:NAME[:CONFIG] (needs the
datasets extra).

The SAE (--sae: a name of `saetui fetch --list` or a hub repo id; default layer20) and its CLIP model are
fetched into the cache first when missing; images are preprocessed as the SAE's family was trained (HF's
CLIPImageProcessor for CLIP-Scope, open_clip's transform for the others). Running
the same command again continues an interrupted run; indexing another source into the same database appends
to it; a database made with another model, layer, SAE, k, token set or preprocessing is refused. Images that
cannot be read or decoded are recorded in the `skipped` table with the reason and never stop the run. Ctrl-C
keeps every whole batch written so far (exit 130). Statistics (`saetui stats`) are computed at the end
unless --no-stats.

Progress and the summary go to stderr.

Examples:

  saetui index ~/data/imagenet/val --db imagenet-val.duckdb

  saetui index photos/ --sae layer11 --tokens cls --batch-size 64

  saetui index photos/ --sae Prisma-Multimodal/sae-top_k-64-cls_only-layer_11-hook_resid_post --db prisma.duckdb

  saetui index hf:ylecun/mnist --split test --limit 1000 --device cuda --precision bf16

  saetui index more-photos/ --db imagenet-val.duckdb   # appends to the same database
"""


def _check(batch_size: int, limit: int | None, workers: int | None, tokens: str | None, keep_top: int | None) -> None:
    """Reject option values that cannot work, with the flag to fix."""
    from saetui.models.hooks import TOKEN_SETS

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}", "pass e.g. --batch-size 32")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}", "leave it out to index everything")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}", "pass e.g. --workers 4")
    if tokens is not None and tokens not in TOKEN_SETS:
        raise UsageError(f"unknown token set '{tokens}'", f"use one of {', '.join(TOKEN_SETS)}")
    if keep_top is not None and keep_top < 1:
        raise UsageError(f"--keep-top must be at least 1, got {keep_top}", "leave it out to keep every active latent")


def _stats(db: Path, fetched: FetchedSae, cache: str | None, device: str) -> None:
    """Compute the derived tables and say what ran."""
    from saetui.stats import SaeFiles, compute_stats

    files = SaeFiles(
        checkpoint_path=fetched.checkpoint_path,
        model_dir=fetched.model_dir,
        spec=fetched.spec,
        config_path=fetched.config_path,
    )
    summary = compute_stats(db, cache=cache, sae_files=files, device=device)
    if summary.computed:
        sys.stderr.write(
            f"saetui: statistics computed in {summary.seconds:.1f} s: {summary.alive} of {summary.n_features} "
            f"features alive over {summary.n_images} images\n"
        )
    else:
        sys.stderr.write("saetui: statistics were already up to date\n")


def register(app: typer.Typer) -> None:
    """Add the `index` command to the root app."""

    @app.command("index", help=HELP, no_args_is_help=True)
    def index_command(
        source: str = typer.Argument(
            ..., metavar="SOURCE", help="Image folder, list file, Parquet file/folder, saved dataset or hf:NAME."
        ),
        sae: SaeName = "layer20",
        checkpoint: Checkpoint = "latest",
        revision: Revision = None,
        model_revision: ModelRevision = None,
        db: Path | None = typer.Option(
            None, "--db", help="Database file (default: $SAETUI_DB, else ./saetui.duckdb).", show_default=False
        ),
        batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", help="Images per forward pass."),
        device: Device = "auto",
        precision: str = typer.Option(
            "fp32",
            "--precision",
            help="fp32, tf32 (float32 weights, TF32 CUDA matmuls) or bf16, for the model and the SAE encoder.",
        ),
        tokens: str | None = typer.Option(
            None,
            "--tokens",
            help="Tokens stored per image: all (CLS + patches), cls or patches (default: those the SAE read).",
            show_default=False,
        ),
        keep_top: int | None = typer.Option(
            None,
            "--keep-top",
            help="Keep only each token's N largest pairs (the rest counts in its error); default: all kept.",
            show_default=False,
        ),
        limit: int | None = typer.Option(
            None, "--limit", help="Index only the first N items of the source.", show_default=False
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Delete the database first."),
        engine: str = typer.Option("local", "--engine", help="local, or ray: the same stages as a Ray Data pipeline."),
        address: str | None = typer.Option(
            None, "--address", help="Ray cluster address (default: a local Ray instance).", show_default=False
        ),
        ray_workers: int = typer.Option(1, "--ray-workers", min=1, help="Model actors in the Ray pool (one GPU each)."),
        live: bool = typer.Option(
            False,
            "--live",
            help="Publish each commit as a shard beside the database: query, show and browse read it while it grows.",
        ),
        embeddings: bool = typer.Option(
            False,
            "--embeddings",
            help="Also run the rest of the tower and store each image's final embedding (for steering previews).",
        ),
        commit_every: int = typer.Option(
            COMMIT_IMAGES, "--commit-every", help="Images per write transaction (a kill loses at most these)."
        ),
        writers: int | None = typer.Option(
            None,
            "--writers",
            min=1,
            help="Threads that pack and insert commits, made durable in order (default: one per 4 cores, 1 to 4).",
            show_default=False,
        ),
        split: Split = "train",
        image_column: ImageColumn = None,
        label_column: LabelColumn = None,
        workers: Workers = None,
        cache: CacheDir = None,
        no_stats: bool = typer.Option(False, "--no-stats", help="Do not compute statistics at the end."),
    ) -> None:
        """Index images into a database."""
        _check(batch_size, limit, workers, tokens, keep_top)
        if engine not in ("local", "ray"):
            raise UsageError(f"unknown engine {engine!r}", "use --engine local or --engine ray")
        if engine == "ray" and "," in device:
            raise UsageError(
                "--engine ray places one model per actor itself", "pass --device cuda and --ray-workers N instead"
            )
        from saetui.paths import default_db
        from saetui.store.connection import refuse_folder

        path = refuse_folder(db or default_db())
        from saetui.hub import fetch, resolve_spec
        from saetui.ingest.indexer import IndexInterrupted, IndexOptions, index_images
        from saetui.ingest.sources import open_source
        from saetui.models.trunk import resolve_precision

        resolve_precision(precision)
        spec = resolve_spec(sae, checkpoint, revision, cache)
        opened = open_source(source, split=split, image_column=image_column, label_column=label_column)
        fetched = fetch(spec, checkpoint=checkpoint, revision=revision, cache=cache, model_revision=model_revision)
        options = IndexOptions(
            batch_size=batch_size,
            device=device,
            precision=precision,
            tokens=tokens,
            keep_top=keep_top,
            embeddings=embeddings,
            live=live,
            engine=engine,
            ray_address=address,
            ray_workers=ray_workers,
            limit=limit,
            overwrite=overwrite,
            commit_every=commit_every,
            **({"workers": workers} if workers else {}),
            **({"writers": writers} if writers else {}),
        )
        try:
            summary = index_images(opened, fetched, path, options)
        except IndexInterrupted as stopped:
            sys.stderr.write("".join(line + "\n" for line in stopped.summary.lines()))
            raise
        sys.stderr.write("".join(line + "\n" for line in summary.lines()))
        if no_stats:
            sys.stderr.write("saetui: statistics not computed (--no-stats): run `saetui stats` when ready\n")
        else:
            _stats(path, fetched, cache, device.split(",")[0])  # statistics run on the first listed device
