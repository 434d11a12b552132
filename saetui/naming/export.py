"""Exports to share: a self-contained HTML gallery, and JSON or Parquet of features with notes and explanations.

Each exported feature is its feature card (what `saetui show --json` prints: stats, top images, labels, lens,
causal effect, neighbours) plus its note, latest explanation and scores. The formats:

- html: one file that opens without a server or network: CSS inline, every image an embedded data URL (each top
  image's crop with the feature's heatmap), no script;
- json: {"saetui_export": 1, "database", "exported_at", "run", "features": [card, ...]};
- parquet: one row per feature with the flat columns of PARQUET_COLUMNS (lists for tags and top images).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saetui.api import Database
from saetui.card import feature_card
from saetui.errors import UsageError
from saetui.naming.grids import data_url, image_tiles
from saetui.store.annotations import Annotations, now

EXPORT_VERSION = 1
FORMATS = ("html", "json", "parquet")
PARQUET_COLUMNS = (
    "feature", "frequency", "image_frequency", "max_value", "label_entropy", "top_label", "top_label_share",
    "lens_label", "note", "tags", "note_author", "explanation", "explanation_model", "prompt_version",
    "monosemanticity", "clip_auroc", "top_image_ids", "top_image_values",
)  # fmt: skip
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d1d1f; background: #fafafa; padding: 0 1rem; }
header { border-bottom: 1px solid #ddd; margin-bottom: 1.5rem; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; } h2 { font-size: 1.2rem; margin: 0; }
.run { color: #555; font-size: .9rem; margin-bottom: 1rem; }
section.feature { background: #fff; border: 1px solid #e2e2e2; border-radius: 8px; padding: 1rem 1.2rem;
                  margin-bottom: 1.5rem; }
.stats { color: #444; font-size: .9rem; margin: .3rem 0 .6rem; }
.note { background: #fff8e1; border-left: 3px solid #f5b400; padding: .4rem .7rem; margin: .5rem 0;
        white-space: pre-wrap; }
.tag { display: inline-block; background: #7b3fa0; color: #fff; border-radius: 3px; padding: 0 .4rem;
       margin-right: .3rem; font-size: .8rem; }
.explanation { background: #eef5ff; border-left: 3px solid #3a78d8; padding: .4rem .7rem; margin: .5rem 0; }
.dim { color: #777; font-size: .8rem; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; margin-top: .6rem; }
figure { margin: 0; } figure img { width: 100%; border-radius: 4px; display: block; }
figcaption { font-size: .75rem; color: #555; margin-top: 2px; overflow: hidden; text-overflow: ellipsis;
             white-space: nowrap; }
table.lens { font-size: .85rem; border-collapse: collapse; margin-top: .5rem; }
table.lens td { padding: 0 .8rem 0 0; }
"""


def choose_export(db: Database, features: Sequence[int] | None, top: int | None) -> list[int]:
    """The listed features, else the top N by frequency, else every feature with a note or an explanation."""
    if features is not None:
        return list(dict.fromkeys(int(f) for f in features))
    if top is not None:
        frame = db.features(order_by="frequency", descending=True, alive_only=True, limit=top)
        return [int(f) for f in frame["feature"]]
    side = Annotations(db.path)
    chosen = sorted({n.key for n in side.notes()} | set(side.latest_explanations()))
    if not chosen:
        raise UsageError("no feature has a note or an explanation yet", "pass --features 1,2,3 or --top N")
    return chosen


def export_cards(db: Database, features: Sequence[int], n_images: int) -> list[dict[str, Any]]:
    """The feature card (with note, explanation and scores) of each feature."""
    return [feature_card(db, int(f), n_images=n_images, n_related=10) for f in features]


def export_features(
    path: Path,
    output: Path,
    fmt: str | None = None,
    features: Sequence[int] | None = None,
    top: int | None = None,
    n_images: int = 12,
    tile: int = 192,
) -> int:
    """Write the chosen features to output in fmt (default: from the file's suffix); returns how many."""
    fmt = fmt or output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)} (or name the file so)")
    with Database(path) as db:
        chosen = choose_export(db, features, top)
        cards = export_cards(db, chosen, n_images)
        run = db.run()
        if fmt == "html":
            text = render_html(db, path.name, run, cards, tile)
            _write(output, text.encode("utf-8"))
        elif fmt == "json":
            document = {
                "saetui_export": EXPORT_VERSION,
                "database": path.name,
                "exported_at": now(),
                "run": {k: run.get(k) for k in ("sae_name", "sae_family", "model_id", "layer", "hook", "n_features")},
                "features": cards,
            }
            _write(output, (json.dumps(document, indent=2, default=str) + "\n").encode("utf-8"))
        else:
            write_parquet(output, cards)
    return len(cards)


def _write(output: Path, data: bytes) -> None:
    """Write a file whole: aside first, then renamed into place."""
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(data)
    partial.replace(output)


def parquet_row(card: dict[str, Any]) -> dict[str, Any]:
    """One card as the flat row of the Parquet export."""
    stats = card["stats"]
    note = card.get("note") or {}
    explanation = card.get("explanation") or {}
    scores = card.get("scores") or {}
    lens = card.get("lens") or []
    return {
        "feature": card["feature"],
        "frequency": stats.get("frequency"),
        "image_frequency": stats.get("image_frequency"),
        "max_value": stats.get("max_value"),
        "label_entropy": stats.get("label_entropy"),
        "top_label": stats.get("top_label"),
        "top_label_share": stats.get("top_label_share"),
        "lens_label": lens[0]["label"] if lens else None,
        "note": note.get("text"),
        "tags": list(note.get("tags") or []),
        "note_author": note.get("author"),
        "explanation": explanation.get("explanation"),
        "explanation_model": explanation.get("model"),
        "prompt_version": explanation.get("prompt_version"),
        "monosemanticity": scores.get("monosemanticity"),
        "clip_auroc": scores.get("clip_auroc"),
        "top_image_ids": [int(r["image_id"]) for r in card["top_images"]],
        "top_image_values": [float(r["value"]) for r in card["top_images"]],
    }


def write_parquet(output: Path, cards: list[dict[str, Any]]) -> None:
    """The cards as a Parquet table with fixed column types (an empty note is NULL, tags an empty list)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("feature", pa.int32()), ("frequency", pa.float64()), ("image_frequency", pa.float64()),
            ("max_value", pa.float64()), ("label_entropy", pa.float64()), ("top_label", pa.string()),
            ("top_label_share", pa.float64()), ("lens_label", pa.string()), ("note", pa.string()),
            ("tags", pa.list_(pa.string())), ("note_author", pa.string()), ("explanation", pa.string()),
            ("explanation_model", pa.string()), ("prompt_version", pa.string()), ("monosemanticity", pa.float64()),
            ("clip_auroc", pa.float64()), ("top_image_ids", pa.list_(pa.int64())),
            ("top_image_values", pa.list_(pa.float64())),
        ]
    )  # fmt: skip
    rows = [parquet_row(card) for card in cards]
    table = pa.Table.from_pylist(rows, schema=schema)
    partial = output.with_name(output.name + ".partial")
    pq.write_table(table, partial)
    partial.replace(output)


def render_html(db: Database, name: str, run: dict[str, Any], cards: list[dict[str, Any]], tile: int) -> str:
    """The gallery page: a header with the run, then one section per feature with its tiles embedded."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>saetui · {html.escape(name)} · {len(cards)} features</title>",
        f"<style>{STYLE}</style></head><body>",
        "<header>",
        f"<h1>{html.escape(str(run.get('sae_name') or name))}: {len(cards)} features</h1>",
        '<div class="run">'
        + html.escape(
            f"{run.get('hook') or 'resid_post'} of layer {run.get('layer')} of {run.get('model_id')} · "
            f"{run.get('n_features')} features · database {name} · exported {now()} UTC by saetui"
        )
        + "</div></header>",
    ]
    for card in cards:
        parts.append(_feature_section(db, card, tile))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _number(value: Any, digits: int = 3) -> str:  # noqa: ANN401 - a number or None
    """A short number, '–' for None."""
    return "–" if value is None else f"{value:.{digits}g}"


def _share(value: float | None) -> str:
    """A share as a percentage with enough digits for rare features, '–' for None."""
    if value is None:
        return "–"
    return f"{100 * value:.3g}%"


def _feature_section(db: Database, card: dict[str, Any], tile: int) -> str:
    """One feature: title, numbers, note, explanation, scores, lens and its top images with heatmaps."""
    feature = int(card["feature"])
    s = card["stats"]
    out = [f'<section class="feature" id="feature-{feature}">', f"<h2>Feature {feature}</h2>"]
    numbers = (
        f"fires on {_share(s.get('frequency'))} of tokens, {_share(s.get('image_frequency'))} of images · "
        f"max {_number(s.get('max_value'))} · label entropy {_number(s.get('label_entropy'))} nats · "
        f"top label {s.get('top_label') or '–'}"
    )
    scores = card.get("scores") or {}
    if scores:
        named = {"monosemanticity": "monosemanticity score", "clip_auroc": "explanation CLIP AUROC"}
        numbers += " · " + " · ".join(f"{named.get(key, key)} {_number(value)}" for key, value in scores.items())
    out.append(f'<div class="stats">{html.escape(numbers)}</div>')
    note = card.get("note")
    if note:
        tags = "".join(f'<span class="tag">{html.escape(t)}</span>' for t in note["tags"])
        author = html.escape(f"{note.get('author') or 'unknown'}, {note.get('updated_at')}")
        out.append(f'<div class="note">{tags}{html.escape(note["text"])} <span class="dim">({author})</span></div>')
    explanation = card.get("explanation")
    if explanation:
        source = html.escape(f"{explanation['model']}, prompt {explanation['prompt_version']}")
        out.append(
            f'<div class="explanation">{html.escape(str(explanation["explanation"]))} '
            f'<span class="dim">(automatic: {source})</span></div>'
        )
    lens = card.get("lens") or []
    if lens:
        rows = "".join(
            f"<tr><td>{html.escape(str(r['label']))}</td><td class='dim'>cos {_number(r['score'])}</td></tr>"
            for r in lens[:5]
        )
        out.append(f'<div class="dim">logit lens</div><table class="lens">{rows}</table>')
    tops = card["top_images"]
    if tops:
        pictures = image_tiles(db.con, feature, [int(r["image_id"]) for r in tops], tile)
        out.append('<div class="tiles">')
        for row, picture in zip(tops, pictures, strict=True):
            caption = html.escape(f"#{row['rank']} {_number(row['value'])} {row.get('label') or ''}")
            alt = html.escape(f"image {row['image_id']} with the feature's heatmap")
            out.append(
                f'<figure><img src="{data_url(picture)}" alt="{alt}"><figcaption>{caption}</figcaption></figure>'
            )
        out.append("</div>")
    else:
        out.append('<div class="dim">no image activates this feature</div>')
    out.append("</section>")
    return "\n".join(out)
