"""`saetui eval`: CLIP loss and accuracy with the SAE spliced in, reconstruction metrics and neuron alignment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
from saetui.defaults import BATCH_SIZE

HELP = """Evaluate an SAE on a labelled image set: what splicing it into CLIP does downstream, how well it
reconstructs, and how its features line up with the hooked block's MLP neurons.

Each batch runs once through the full CLIP vision tower with a hook on the SAE's block that replaces the
block output with (a) the original, (b) the SAE reconstruction of every token, (c) reconstruction + error
(must equal the original). For each: CLIP contrastive loss (symmetric image-text cross-entropy over the
batch with the prompts "A photo of a {label}.", the model's logit scale) and zero-shot top-1/top-5 accuracy
over the label set. Reconstruction metrics (sum-MSE per token, explained variance, normalised MSE, L0, dead
fraction) come in raw mode and in batch-standardised mode, beside the hub README's figures for a built-in
CLIP-Scope SAE. Neuron alignment: per feature, the max |cosine| between its encoder column and the block's
MLP output directions, with a histogram. The README explains every number.

SOURCE is anything `saetui index` reads; labels come from it (ImageNet wnid folders give class names). The
label set is the 1000 ImageNet classes when every label is one (--label-set auto), else the labels seen.
The loss depends on --batch-size (more negatives, higher loss), and so does standardised mode (statistics per
batch; CLIP-Scope trained on batches of 128 images).

The report goes to stdout (--json for JSON), progress to stderr. With --db the figures are appended to the
table eval_results and the per-feature alignment replaces the table neuron_alignment of that DuckDB file
(created if missing; an index database of the same SAE is fine).

Examples:

  saetui eval ~/data/imagenet/val --sae layer20 --limit 5000 --device cuda

  saetui eval ~/data/imagenet/val --sae layer11 --batch-size 128 --json > layer11-eval.json

  saetui eval photos/ --sae layer20 --db imagenet-val.duckdb --label-set dataset
"""


def register(app: typer.Typer) -> None:
    """Add the `eval` command to the root app."""

    @app.command("eval", help=HELP, no_args_is_help=True)
    def eval_command(
        source: str = typer.Argument(
            ..., metavar="SOURCE", help="Image folder, list file, Parquet file/folder, saved dataset or hf:NAME."
        ),
        sae: SaeName = "layer20",
        checkpoint: Checkpoint = "latest",
        revision: Revision = None,
        model_revision: ModelRevision = None,
        batch_size: int = typer.Option(
            BATCH_SIZE, "--batch-size", help="Images per forward pass, loss batch and standardisation."
        ),
        device: Device = "auto",
        precision: str = typer.Option(
            "fp32", "--precision", help="fp32, tf32 (TF32 CUDA matmuls) or bf16 (vision tower and SAE under autocast)."
        ),
        limit: int | None = typer.Option(
            None, "--limit", help="Evaluate only the first N items of the source.", show_default=False
        ),
        label_set: str = typer.Option("auto", "--label-set", help="Zero-shot labels: auto, dataset or imagenet."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        db: Path | None = typer.Option(
            None, "--db", help="Also store the results in this DuckDB file.", show_default=False
        ),
        split: Split = "train",
        image_column: ImageColumn = None,
        label_column: LabelColumn = None,
        workers: Workers = None,
        cache: CacheDir = None,
    ) -> None:
        """Evaluate an SAE."""
        from saetui.evaluate.runner import EvalOptions

        options = EvalOptions(
            batch_size=batch_size,
            device=device,
            precision=precision,
            limit=limit,
            **({"workers": workers} if workers is not None else {}),
            label_set=label_set,
        )
        from saetui.device import resolve_device
        from saetui.evaluate.report import report_json, report_lines
        from saetui.evaluate.results import check_target, write_results
        from saetui.evaluate.runner import evaluate
        from saetui.hub import fetch, resolve_spec
        from saetui.ingest.sources import open_source
        from saetui.models.trunk import resolve_precision

        resolve_precision(precision)
        resolve_device(device)
        spec = resolve_spec(sae, checkpoint, revision, cache)
        opened = open_source(source, split=split, image_column=image_column, label_column=label_column)
        fetched = fetch(spec, checkpoint=checkpoint, revision=revision, cache=cache, model_revision=model_revision)
        if db is not None:
            check_target(db, spec.repo_id, fetched.checkpoint_file)
        report = evaluate(opened, fetched, options, cache=cache)
        if db is not None:
            eval_id = write_results(db, report)
            sys.stderr.write(f"saetui: stored as eval_id {eval_id} in eval_results and neuron_alignment of {db}\n")
        if as_json:
            sys.stdout.write(json.dumps(report_json(report), indent=2) + "\n")
        else:
            sys.stdout.write("".join(line + "\n" for line in report_lines(report)))
