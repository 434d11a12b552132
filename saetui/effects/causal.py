"""Per-feature causal effects: ablate the feature on each of its top images, average the class-logit changes.

delta_c = z'_c - z_c for the image embedding after ablation (saetui.effects.interventions), averaged over the
feature's top N images (feature_images, N = 16 by default); relative_delta_c = delta_c - mean over classes of delta,
the part the softmax sees (an edit also moves every logit together through the embedding's norm, which changes no
probability; both rank the classes the same). The classes with the most negative mean delta are the
ones the feature supports, the most positive the ones it suppresses; also the mean drop of p(own label) (softmax
over the label set, images whose label is in it) and the share of top images whose top-1 prediction flips.
Lens agreement: the overlap of three top-k class lists, as a share of k (k = 10, or a quarter of the labels when
there are fewer than 40): the decoder-direction logit lens (logit_lens), the causal supports, and the labels of the
top images (feature_labels by share).
Work is grouped by image: each image's hook activations are computed once, then every feature's branch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import torch

from saetui.effects.context import EffectContext
from saetui.effects.interventions import ablate, hook_state

TOP_CLASSES = 10


def agreement_k(n_labels: int) -> int:
    """How many top classes the agreement compares: 10, or a quarter of a small label set."""
    return max(1, min(TOP_CLASSES, n_labels // 4))


Progress = Callable[[int, int], None]


@dataclass
class EffectSummary:
    """What one `saetui effects` call did."""

    features: int
    images: int
    branches: int  # (image, feature) ablations run
    seconds: float


def _pairs(con: duckdb.DuckDBPyConnection, top: int, features: list[int] | None) -> list[tuple[int, int]]:
    """(feature, image_id) of each feature's top images, alive features only."""
    where = "" if features is None else "AND fi.feature IN (SELECT unnest(?::INTEGER[]))"
    params = [top] + ([features] if features is not None else [])
    return con.execute(
        f"""SELECT fi.feature, fi.image_id FROM feature_images fi JOIN features f USING (feature)
        WHERE NOT f.dead AND fi.rank <= ? {where} ORDER BY fi.image_id, fi.feature""",
        params,
    ).fetchall()


def compute_effects(
    con: duckdb.DuckDBPyConnection,
    ctx: EffectContext,
    top: int = 16,
    features: list[int] | None = None,
    batch_images: int = 8,
    progress: Progress | None = None,
) -> EffectSummary:
    """Fill causal_effects and feature_effects for the chosen features (default: every alive one)."""
    started = time.perf_counter()
    pairs = _pairs(con, top, features)
    if not pairs:
        raise ValueError("no alive feature has top images: run `saetui stats` first")
    feature_ids = np.array(sorted({f for f, _ in pairs}), dtype=np.int64)
    slot = {int(f): i for i, f in enumerate(feature_ids)}
    by_image: dict[int, list[int]] = {}
    for feature, image_id in pairs:
        by_image.setdefault(int(image_id), []).append(int(feature))
    images = sorted(by_image)
    rows = con.execute(
        "SELECT image_id, path, label FROM images WHERE image_id IN (SELECT unnest(?::INTEGER[]))", [images]
    ).fetchall()
    info = {int(i): (p, label) for i, p, label in rows}
    label_index = {label: i for i, label in enumerate(ctx.labels)}
    n_labels = len(ctx.labels)
    device = ctx.device
    total = torch.zeros((len(feature_ids), n_labels), dtype=torch.float64, device=device)
    count = torch.zeros(len(feature_ids), dtype=torch.float64, device=device)
    prob_drop = torch.zeros(len(feature_ids), dtype=torch.float64, device=device)
    own_count = torch.zeros(len(feature_ids), dtype=torch.float64, device=device)
    flips = torch.zeros(len(feature_ids), dtype=torch.float64, device=device)
    branches = 0
    for start in range(0, len(images), batch_images):
        batch = images[start : start + batch_images]
        state = hook_state(ctx, ctx.pixels([info[i][0] for i in batch]))
        for b, image_id in enumerate(batch):
            fs = by_image[image_id]
            ids = torch.tensor(fs, device=device)
            delta = ablate(ctx, state, b, ids)  # [F, labels]
            slots = torch.tensor([slot[f] for f in fs], device=device)
            total.index_add_(0, slots, delta.double())
            count.index_add_(0, slots, torch.ones(len(fs), dtype=torch.float64, device=device))
            before = state.logits[b]
            after = before[None] + delta
            flips.index_add_(0, slots, (after.argmax(dim=1) != before.argmax()).double())
            own = label_index.get(info[image_id][1])
            if own is not None:
                drop = before.softmax(dim=0)[own] - after.softmax(dim=1)[:, own]
                prob_drop.index_add_(0, slots, drop.double())
                own_count.index_add_(0, slots, torch.ones(len(fs), dtype=torch.float64, device=device))
            branches += len(fs)
        if progress is not None:
            progress(min(start + batch_images, len(images)), len(images))
    mean = (total / count[:, None]).cpu().numpy()
    _store(con, ctx, feature_ids, mean, count.cpu().numpy(), (prob_drop / own_count).cpu().numpy(),
           (flips / count).cpu().numpy(), top)  # fmt: skip
    return EffectSummary(len(feature_ids), len(images), branches, time.perf_counter() - started)


def _top_labels(con: duckdb.DuckDBPyConnection, sql: str, features: np.ndarray, k: int) -> dict[int, set[str]]:
    """feature -> its top-k labels from a (feature, label) query with a $k rank limit."""
    found: dict[int, set[str]] = {}
    for feature, label in con.execute(sql, {"features": features.tolist(), "k": k}).fetchall():
        found.setdefault(int(feature), set()).add(label)
    return found


def _overlap(a: set[str] | None, b: set[str] | None, k: int) -> float | None:
    """|a & b| / k, None when either list is missing."""
    return None if not a or not b else len(a & b) / k


def _overlaps(a: dict[int, set[str]], b: dict[int, set[str]], features: np.ndarray, k: int) -> pa.Array:
    """The per-feature overlap of two top-k label lists."""
    return pa.array([_overlap(a.get(int(f)), b.get(int(f)), k) for f in features], pa.float64())


def _store(
    con: duckdb.DuckDBPyConnection,
    ctx: EffectContext,
    features: np.ndarray,
    mean: np.ndarray,
    count: np.ndarray,
    prob_drop: np.ndarray,
    flip_share: np.ndarray,
    top: int,
) -> None:
    """Replace the chosen features' rows of causal_effects and feature_effects."""
    k = min(TOP_CLASSES, mean.shape[1])
    agree = agreement_k(mean.shape[1])
    order = np.argsort(mean, axis=1, kind="stable")
    labels = np.asarray(ctx.labels, dtype=object)
    supports, suppresses = order[:, :k], order[:, ::-1][:, :k]
    rows_feature = np.repeat(features, 2 * k)
    roles = np.tile(np.array(["supports"] * k + ["suppresses"] * k, dtype=object), len(features))
    ranks = np.tile(np.concatenate([np.arange(1, k + 1), np.arange(1, k + 1)]), len(features))
    picked = np.concatenate([supports, suppresses], axis=1)
    deltas = np.take_along_axis(mean, picked, axis=1)
    relative = deltas - mean.mean(axis=1, keepdims=True)
    causal = pa.table(
        {
            "feature": pa.array(rows_feature.astype(np.int32)),
            "role": pa.array(roles.tolist(), pa.string()),
            "rank": pa.array(ranks.astype(np.int16)),
            "label": pa.array(labels[picked].reshape(-1).tolist(), pa.string()),
            "delta": pa.array(deltas.reshape(-1).astype(np.float64)),
            "relative_delta": pa.array(relative.reshape(-1).astype(np.float64)),
        }
    )
    supported = {int(f): set(labels[row[:agree]].tolist()) for f, row in zip(features, supports, strict=True)}
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    lens = (
        _top_labels(
            con,
            "SELECT feature, label FROM logit_lens WHERE rank <= $k "
            "AND feature IN (SELECT unnest($features::INTEGER[]))",
            features,
            agree,
        )
        if "logit_lens" in tables
        else {}
    )
    label_sql = """SELECT feature, label FROM (SELECT feature, label, row_number() OVER (PARTITION BY feature ORDER BY
        share DESC, label) AS r FROM feature_labels WHERE feature IN (SELECT unnest($features::INTEGER[])))
        WHERE r <= $k"""
    top_labels = _top_labels(con, label_sql, features, agree) if "feature_labels" in tables else {}
    summary = pa.table(
        {
            "feature": pa.array(features.astype(np.int32)),
            "n_images": pa.array(count.astype(np.int32)),
            "top_supported": pa.array(labels[supports[:, 0]].tolist(), pa.string()),
            "top_delta": pa.array(np.take_along_axis(mean, supports[:, :1], axis=1)[:, 0].astype(np.float64)),
            "own_prob_drop": pa.array(
                np.where(np.isfinite(prob_drop), prob_drop, np.nan), pa.float64(), from_pandas=True
            ),
            "flip_share": pa.array(flip_share.astype(np.float64)),
            "lens_causal_overlap": _overlaps(lens, supported, features, agree),
            "lens_label_overlap": _overlaps(lens, top_labels, features, agree),
            "causal_label_overlap": _overlaps(supported, top_labels, features, agree),
            "top_images": pa.array(np.full(len(features), top, dtype=np.int16)),
        }
    )
    con.execute("BEGIN")
    for name, table in (("causal_effects", causal), ("feature_effects", summary)):
        query = "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index"
        existing = [r[0] for r in con.execute(query, [name]).fetchall()]
        if existing and existing != table.column_names:  # written by another saetui version: derived, so rebuilt
            con.execute(f"DROP TABLE {name}")
    con.execute(
        "CREATE TABLE IF NOT EXISTS causal_effects (feature INTEGER, role VARCHAR, rank SMALLINT, label VARCHAR, "
        "delta DOUBLE, relative_delta DOUBLE)"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS feature_effects (feature INTEGER, n_images INTEGER, top_supported VARCHAR, "
        "top_delta DOUBLE, own_prob_drop DOUBLE, flip_share DOUBLE, lens_causal_overlap DOUBLE, "
        "lens_label_overlap DOUBLE, causal_label_overlap DOUBLE, top_images SMALLINT)"
    )
    chosen = features.astype(np.int64).tolist()
    for table in ("causal_effects", "feature_effects"):
        con.execute(f"DELETE FROM {table} WHERE feature IN (SELECT unnest(?::INTEGER[]))", [chosen])
    con.register("_causal", causal)
    con.register("_summary", summary)
    con.execute("INSERT INTO causal_effects SELECT * FROM _causal")
    con.execute("INSERT INTO feature_effects SELECT * FROM _summary")
    con.unregister("_causal")
    con.unregister("_summary")
    con.execute("COMMIT")
