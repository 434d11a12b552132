"""A feature card (what `saetui show` prints): built on the notebook API, the layer above saetui.stats."""

from __future__ import annotations

import math
from typing import Any

from saetui.api import Database
from saetui.errors import DataError, NotFoundError
from saetui.store.annotations import Annotations

LENS_NOTE = "the lens skips every block after the hooked layer; read it as a hint, not a label"


def _clean(value: Any) -> Any:  # noqa: ANN401 - JSON-ready copy of any nested value
    """NaN -> None, recursively, so the card is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def feature_card(
    db: Database, feature: int, n_images: int = 10, n_related: int = 10, level: str = "token", exact: bool = False
) -> dict[str, Any]:
    """Stats, top images, top labels, logit lens, coactivations and neighbours of one feature."""
    stats = db.feature(feature)
    info = db.stats_info()
    run = db.run()
    card: dict[str, Any] = {
        "feature": feature,
        "run": {
            key: run.get(key)
            for key in ("sae_name", "sae_family", "model_id", "layer", "hook", "k", "n_features", "approximate")
            if key in run
        },
        "stats": {key: value for key, value in stats.items() if key != "feature"},
        "top_images": db.top_images(feature, n_images).to_dicts(),
        "top_labels": db.label_shares(feature).head(n_related).to_dicts(),
        "lens": db.lens(feature).to_dicts(),
        "lens_variant": {
            "direction": info.get("lens_direction"),
            "ln_post": info.get("lens_ln"),
            "templates": info.get("lens_templates"),
            "labels": info.get("lens_label_source"),
            "note": LENS_NOTE,
        },
        "coactivation": {
            "level": level,
            "partners": db.coactivation(feature, n_related, level=level, exact=exact).to_dicts(),
        },
        "histogram": db.histogram(feature).select("lo", "hi", "count").to_dicts(),
    }
    classes, effect = db.causal_effect(feature)
    card["causal_effect"] = {
        **effect,
        "supports": classes.filter(classes["role"] == "supports").head(n_related).to_dicts() if effect else [],
        "suppresses": classes.filter(classes["role"] == "suppresses").head(n_related).to_dicts() if effect else [],
    }
    side = Annotations(db.path)
    card["note"] = db.note(feature)
    card["explanation"] = side.latest_explanations(feature).get(feature)
    card["scores"] = side.feature_scores(feature)
    try:
        card["neighbours"] = db.neighbours(feature, n_related).to_dicts()
        card["neighbours_note"] = None
    except (NotFoundError, DataError) as error:
        card["neighbours"] = []
        card["neighbours_note"] = error.one_line()
    return _clean(card)


def _num(value: Any, digits: int = 4) -> str:  # noqa: ANN401 - numbers or None
    """A number for the card, '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def render_card(card: dict[str, Any]) -> str:
    """The card as aligned plain text for terminals without graphics."""
    s = card["stats"]
    run = card["run"]
    hook = run.get("hook") or "resid_post"
    where = f"  ({run.get('sae_name')}, {hook} of layer {run.get('layer')} of {run.get('model_id')})" if run else ""
    lines = [f"feature {card['feature']}{where}"]
    if run.get("approximate"):
        lines.append(f"  approximate codes: {run['approximate']}")
    if s.get("dead"):
        lines.append("  dead: never active (value > 0) on any stored token")
    note = card.get("note")
    if note:
        tags = " ".join(f"#{t}" for t in note["tags"])
        lines.append(f"  note             {tags} {note['text']}".rstrip())
    explanation = card.get("explanation")
    if explanation:
        lines.append(f"  explanation      {explanation['explanation']}  ({explanation['model']})")
    for name, value in (card.get("scores") or {}).items():
        lines.append(f"  {name:<16} {_num(value, 3)}")
    lines += [
        f"  frequency        {_num(s.get('frequency'))}  ({_num(s.get('n_tokens'))} active tokens)",
        f"  image frequency  {_num(s.get('image_frequency'))}  ({_num(s.get('n_images'))} images)",
        f"  mean when active {_num(s.get('mean_value'))}   max {_num(s.get('max_value'))}",
        f"  label entropy    {_num(s.get('label_entropy'))} nats   normalised {_num(s.get('label_entropy_norm'))}"
        f"   labels {_num(s.get('n_labels'))}",
        f"  top label        {s.get('top_label') or '-'}  ({_num(s.get('top_label_share'), 3)} of the weight)",
        "",
        "top images (rank, value, label, path)",
    ]
    lines += [
        f"  {r['rank']:>3}  {_num(r['value']):>9}  {r.get('label') or '-':<24}  {r.get('path') or ''}"
        for r in card["top_images"]
    ] or ["  (none)"]
    lines += ["", "top labels of the top images (share, images)"]
    lines += [f"  {_num(r['share'], 3):>6}  {r['n_images']:>4}  {r['label']}" for r in card["top_labels"]] or [
        "  (no labelled images fire)"
    ]
    variant = card["lens_variant"]
    if variant.get("direction"):
        ln = "ln_post, " if variant.get("ln_post") else ""
        lines += ["", f"logit lens ({variant['direction']} -> {ln}proj vs {variant.get('labels')} labels)"]
    else:
        lines += ["", "logit lens"]
    lines += [
        f"  {r['rank']:>3}  cos {_num(r['score'], 3):>7}  p {_num(r['prob'], 3):>7}  {r['label']}" for r in card["lens"]
    ] or ["  (not computed: run `saetui stats` with the model files)"]
    if card["lens"]:
        lines.append(f"  note: {LENS_NOTE}")
    effect = card.get("causal_effect") or {}
    if effect.get("n_images"):
        lines += ["", f"causal effect (ablation over {effect['n_images']} top images; relative logit change)"]
        lines += [f"  supports    {_num(r['relative_delta'], 3):>8}  {r['label']}" for r in effect["supports"][:5]]
        lines += [f"  suppresses  {_num(r['relative_delta'], 3):>8}  {r['label']}" for r in effect["suppresses"][:3]]
        lines.append(
            f"  p(own label) drop {_num(effect.get('own_prob_drop'), 3)}   "
            f"top-1 flips {_num(effect.get('flip_share'), 3)}"
        )
        lines.append(
            f"  agreement (top-class overlap): lens~causal {_num(effect.get('lens_causal_overlap'), 2)}   "
            f"lens~labels {_num(effect.get('lens_label_overlap'), 2)}   "
            f"causal~labels {_num(effect.get('causal_label_overlap'), 2)}"
        )
    else:
        lines += ["", "causal effect", "  (not computed: run `saetui effects`)"]
    co = card["coactivation"]
    lines += ["", f"coactivating features ({co['level']} level: count, P(g|f), Jaccard)"]
    lines += [
        f"  {r['other']:>6}  {_num(r['count']):>10}  P {_num(r['p_given'], 3):>6}  J {_num(r['jaccard'], 3):>6}"
        f"{'' if r['exact'] else ' ~'}  {r.get('top_label') or ''}"
        for r in co["partners"]
    ] or ["  (none)"]
    if any(not r["exact"] for r in co["partners"]):
        lines.append("  ~ estimated from a sample of the feature's active tokens (--exact counts them all)")
    lines += ["", "similar directions (decoder-row cosine)"]
    lines += [f"  {r['other']:>6}  {_num(r['cosine'], 3):>7}  {r.get('top_label') or ''}" for r in card["neighbours"]]
    if card["neighbours_note"]:
        lines.append(f"  ({card['neighbours_note']})")
    return "\n".join(lines) + "\n"
