"""Steering and attribution of one image, as the lines `saetui steer` prints (the TUI calls the same functions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import torch

from saetui.effects.attribution import Attribution, attribute
from saetui.effects.context import EffectContext, open_context
from saetui.effects.interventions import HookState, hook_state, steer
from saetui.errors import NotFoundError, UsageError
from saetui.stats import queries


@dataclass(frozen=True)
class SteerResult:
    """Top classes of one image before and after setting a feature to a value."""

    feature: int
    value: float
    before: list[tuple[str, float]]  # (label, probability)
    after: list[tuple[str, float]]
    nearest: list[tuple[int, str | None, float]]  # dataset images nearest the steered embedding: (id, label, cos)


def image_path(con: duckdb.DuckDBPyConnection, image: str) -> str:
    """The original file of an image id of the database, or the file itself."""
    if image.isdigit():
        row = con.execute("SELECT path FROM images WHERE image_id = ?", [int(image)]).fetchone()
        if row is None:
            raise NotFoundError(f"image {image} does not exist", "pick an image id from `saetui query`")
        return str(row[0])
    if not Path(image).is_file():
        raise NotFoundError(f"{image} is neither an image id nor a file", "pass an image id or a path")
    return image


def feature_max(con: duckdb.DuckDBPyConnection, feature: int) -> float:
    """The feature's largest value over the dataset (features.max_value)."""
    row = con.execute("SELECT max_value FROM features WHERE feature = ?", [feature]).fetchone()
    if row is None:
        raise NotFoundError(f"feature {feature} is not in the features table", "run `saetui stats` first")
    return float(row[0] or 0.0)


def _top(ctx: EffectContext, logits: torch.Tensor, n: int) -> list[tuple[str, float]]:
    """The n most probable labels (softmax over the label set)."""
    probs = logits.softmax(dim=-1)
    values, indices = probs.topk(min(n, probs.shape[-1]))
    return [(ctx.labels[int(i)], float(v)) for v, i in zip(values, indices, strict=True)]


def nearest_images(
    con: duckdb.DuckDBPyConnection, embedding: torch.Tensor, n: int = 5
) -> list[tuple[int, str | None, float]]:
    """The indexed images whose stored final embedding (index --embeddings) is nearest by cosine; [] without."""
    try:
        image_ids, matrix = queries.image_embeddings(con)
    except NotFoundError:
        return []
    if len(image_ids) == 0:
        return []
    cos = torch.from_numpy(matrix) @ torch.nn.functional.normalize(embedding.float().cpu(), dim=0)
    best = torch.topk(cos, min(n, len(image_ids)))
    ids = [int(image_ids[int(i)]) for i in best.indices]
    labels = dict(con.execute("SELECT image_id, label FROM images WHERE image_id IN (SELECT unnest(?::INTEGER[]))",
                              [ids]).fetchall())  # fmt: skip
    return [(i, labels.get(i), float(c)) for i, c in zip(ids, best.values, strict=True)]


def steer_image(
    ctx: EffectContext,
    state: HookState,
    feature: int,
    value: float,
    top: int = 5,
    con: duckdb.DuckDBPyConnection | None = None,
) -> SteerResult:
    """Top classes of image 0 of state before and after setting the feature to value on its stored tokens, and
    (with a connection to a database indexed with --embeddings) the dataset images nearest the steered image."""
    embedding = steer(ctx, state, 0, feature, value)
    after = ctx.logits(embedding[None])[0]
    nearest = nearest_images(con, embedding, top) if con is not None else []
    return SteerResult(feature, value, _top(ctx, state.logits[0], top), _top(ctx, after, top), nearest)


def steer_lines(
    con: duckdb.DuckDBPyConnection, image: str, feature: int, scale: float, top: int, cache: str | None, device: str
) -> list[str]:
    """The report of `saetui steer IMAGE --feature F --scale C`."""
    path = image_path(con, image)
    peak = feature_max(con, feature)
    ctx = open_context(con, cache, device)
    result = steer_image(ctx, hook_state(ctx, ctx.pixels([path])), feature, scale * peak, top, con)
    lines = [f"image {image}: feature {feature} set to {scale:g} x max {peak:.4g} = {scale * peak:.4g}"]
    lines.append(f"  {'before':<34}  after")
    for (a, pa), (b, pb) in zip(result.before, result.after, strict=True):
        lines.append(f"  {pa:6.3f}  {a:<26}  {pb:6.3f}  {b}")
    if result.nearest:
        lines.append("  the steered image is nearest to (index --embeddings): " + ", ".join(
            f"#{i} {label or '-'} ({c:.3f})" for i, label, c in result.nearest))  # fmt: skip
    return lines


def attribution_lines(
    con: duckdb.DuckDBPyConnection, image: str, label: str | None, top: int, cache: str | None, device: str
) -> list[str]:
    """The report of `saetui steer IMAGE --attribute`."""
    path = image_path(con, image)
    ctx = open_context(con, cache, device)
    index = None
    if label is not None:
        if label not in ctx.labels:
            raise UsageError(f"label {label!r} is not in the label set", "pick one of the dataset's labels")
        index = ctx.labels.index(label)
    result: Attribution = attribute(ctx, hook_state(ctx, ctx.pixels([path])), 0, index, top=top)
    lines = [f"image {image}: attribution to {result.label} (gradient x activation; ablation = exact delta z)"]
    for f, a, e in zip(result.features, result.attribution, result.ablation, strict=True):
        exact = f"{e:+.4f}" if e is not None else "-"
        lines.append(f"  feature {f:>6}  attribution {a:+.4f}  ablation {exact}")
    if result.sign_agreement is not None:
        rank = "-" if result.rank_correlation is None else f"{result.rank_correlation:.2f}"
        lines.append(f"  agreement with exact ablation: sign {result.sign_agreement:.2f}, rank correlation {rank}")
    return lines
