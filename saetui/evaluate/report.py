"""The eval report as readable text (stdout) and as a JSON-ready dict (--json)."""

from __future__ import annotations

import math

from saetui.evaluate.reconstruction import METRICS, MODES
from saetui.evaluate.runner import EvalReport
from saetui.evaluate.splice import CONDITIONS

BAR_WIDTH = 40
METRIC_NAMES = {
    "sum_mse": "sum-MSE per token",
    "explained_variance": "explained variance",
    "normalised_mse": "normalised MSE (saev)",
    "l0": "L0 (kept values > 0)",
    "dead_fraction": "dead fraction",
}


def _number(value: float | None, digits: int = 4) -> str:
    """A figure with `digits` significant digits, '-' for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    """A share as a percentage with one decimal, '-' when missing."""
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        """One aligned row."""
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  " + "  ".join(cells).rstrip()

    return [line(header), *(line(row) for row in rows)]


def report_lines(report: EvalReport) -> list[str]:
    """The readable report, one line per element."""
    sae, down = report.sae, report.downstream
    checkpoint = f", {sae['checkpoint']:,} tokens" if sae["checkpoint"] else ""
    lines = [
        f"SAE {sae['name']}: {sae['repo']} {sae['file']}{checkpoint}; block {sae['layer']}, "
        f"d_in {sae['d_in']}, {sae['n_features']:,} features, k {sae['k']}",
        f"images: {report.images} evaluated, {report.skipped} skipped, from {report.source}",
        f"settings: batch {report.settings['batch_size']}, {report.settings['precision']} on "
        f"{report.settings['device']}, {report.seconds:.1f} s",
        "",
        f"Downstream: CLIP contrastive loss over batches of {report.settings['batch_size']} images with their "
        f'prompts "{report.settings["prompt"]}" (logit scale {down.logit_scale:.4g}); zero-shot accuracy over '
        f"{down.n_labels} labels ({'ImageNet-1k classes' if down.label_set == 'imagenet' else 'dataset labels'})",
        f"  {down.n_labelled} labelled images ({down.n_unlabelled} unlabelled left out), "
        f"{down.loss_batches} batches in the loss",
    ]
    rows = []
    for name in CONDITIONS:
        scores = down.scores[name]
        rows.append(
            [
                name,
                _number(scores.loss),
                _percent(scores.top1),
                _percent(scores.top5),
                f"{scores.mean_cosine_to_original:.6f}",
                _number(scores.max_abs_diff_to_original, 2),
            ]
        )
    lines += _table(["condition", "loss", "top-1", "top-5", "cos to original", "max |diff|"], rows)
    original, spliced = down.scores["original"].loss, down.scores["reconstruction"].loss
    if original is not None and spliced is not None:
        lines.append(f"  loss change with the SAE spliced in: {spliced - original:+.4g}")
    tokens = report.reconstruction["raw"].tokens
    lines += ["", f"Reconstruction over {tokens:,} tokens (standardised: per batch of whole images, per dimension)"]
    reference = report.reference
    header = ["metric", "raw", "standardised"] + (["hub README (standardised)"] if reference else [])
    rows = []
    for metric in METRICS:
        row = [METRIC_NAMES[metric]] + [_number(report.reconstruction[mode].as_dict()[metric]) for mode in MODES]
        if reference:
            row.append(_number(reference.get(metric)))
        rows.append(row)
    lines += _table(header, rows)
    align = report.alignment
    lines += [
        "",
        f"Neuron alignment: per feature, max |cos| between its encoder column and the {align.n_neurons:,} "
        f"MLP output directions (mlp.c_proj) of block {sae['layer']}",
    ]
    names = list(align.summary)
    lines += _table(
        ["", *names],
        [
            ["features", *(f"{align.summary[n]:.3f}" for n in names)],
            ["random directions", *(f"{align.baseline[n]:.3f}" for n in names)],
        ],
    )
    filled = [i for i, (_, _, count) in enumerate(align.histogram) if count]
    shown = align.histogram[filled[0] : filled[-1] + 1] if filled else []
    peak = max((count for _, _, count in shown), default=1)
    for low, high, count in shown:
        bar = "#" * math.ceil(BAR_WIDTH * count / peak) if count else ""
        lines.append(f"  {low:.2f}-{high:.2f} {count:>8,} {bar}")
    return lines


def report_json(report: EvalReport) -> dict[str, object]:
    """The report as plain JSON types (per-feature alignment values are left to --db)."""
    down = report.downstream
    return {
        "sae": report.sae,
        "source": report.source,
        "settings": report.settings,
        "images": {"evaluated": report.images, "skipped": report.skipped, "skip_reasons": report.skip_reasons},
        "seconds": round(report.seconds, 3),
        "downstream": {
            "label_set": down.label_set,
            "labels": down.n_labels,
            "labelled_images": down.n_labelled,
            "unlabelled_images": down.n_unlabelled,
            "loss_batches": down.loss_batches,
            "logit_scale": down.logit_scale,
            "conditions": {
                name: {
                    "loss": scores.loss,
                    "top1": scores.top1,
                    "top5": scores.top5,
                    "mean_cosine_to_original": scores.mean_cosine_to_original,
                    "max_abs_diff_to_original": scores.max_abs_diff_to_original,
                }
                for name, scores in down.scores.items()
            },
        },
        "reconstruction": {
            **{mode: {"tokens": result.tokens, **result.as_dict()} for mode, result in report.reconstruction.items()},
            "hub_readme": report.reference,
        },
        "alignment": {
            "neurons": report.alignment.n_neurons,
            "features": report.alignment.summary,
            "random_directions": report.alignment.baseline,
            "histogram": [{"low": lo, "high": hi, "features": n} for lo, hi, n in report.alignment.histogram],
        },
    }
