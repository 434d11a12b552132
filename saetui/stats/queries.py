"""On-demand reads over a database with statistics: what a feature page, an image page and the API show.

Every function takes an open (read-only) DuckDB connection and returns a polars DataFrame or a numpy array.
Feature lookups read the derived tables, which `saetui stats` writes ordered by feature, so DuckDB's zone maps
touch one row group; partner and neighbour lists carry their partners' top labels, so no lookup joins the
features table. One image's rows come from `activations` (image-ordered). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from saetui.errors import NotFoundError, UsageError
from saetui.stats.coactivation import exact_counts
from saetui.stats.columns import FEATURE_COLUMNS
from saetui.stats.directions import load_rows
from saetui.stats.directions import neighbours as nearest_rows
from saetui.store.runs import token_grid

STATS_HINT = "run `saetui stats` on the database first"
LEVELS = ("token", "image")
ORDERS = ("count", "jaccard")
_POLARS = {
    "BOOLEAN": pl.Boolean,
    "TINYINT": pl.Int8,
    "SMALLINT": pl.Int16,
    "INTEGER": pl.Int32,
    "BIGINT": pl.Int64,
    "UINTEGER": pl.UInt32,
    "UBIGINT": pl.UInt64,
    "FLOAT": pl.Float32,
    "DOUBLE": pl.Float64,
    "VARCHAR": pl.String,
}


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
    """A small query's result as a DataFrame (rows fetched directly: cheaper than Arrow for a few rows)."""
    cursor = con.execute(sql, list(params))
    rows = cursor.fetchall()
    schema = {name: _POLARS.get(str(kind)) for name, kind, *_ in cursor.description}
    return pl.DataFrame(rows, schema=schema, orient="row")


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether a table or view of that name exists in the main schema."""
    rows = con.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
    ).fetchall()
    return bool(rows)


def require(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Raise NotFoundError naming the first missing derived table."""
    for name in names:
        if not has_table(con, name):
            raise NotFoundError(f"the database has no {name} table", STATS_HINT)


def _row(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = (), last: bool = False) -> dict[str, Any]:
    """The first (or last) row of a query as a dict, empty when there is none."""
    cursor = con.execute(sql, list(params))
    rows = cursor.fetchall()
    if not rows:
        return {}
    return dict(zip([d[0] for d in cursor.description], rows[-1 if last else 0], strict=True))


def stats_info(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The single stats_info row as a dict (empty when stats never ran)."""
    return _row(con, "SELECT * FROM stats_info") if has_table(con, "stats_info") else {}


def run_row(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The latest `runs` row as a dict (empty when there is none)."""
    return _row(con, "SELECT * FROM runs ORDER BY run_id", last=True) if has_table(con, "runs") else {}


def feature_row(con: duckdb.DuckDBPyConnection, feature: int) -> dict[str, Any]:
    """One row of `features` as a dict; NotFoundError for an id outside 0..n_features-1."""
    require(con, "features")
    row = _row(con, "SELECT * FROM features WHERE feature = ?", [feature])
    if not row:
        total = con.execute("SELECT count(*) FROM features").fetchall()[0][0]
        raise NotFoundError(f"feature {feature} does not exist", f"use an id in 0..{total - 1}")
    return row


def features(
    con: duckdb.DuckDBPyConnection,
    order_by: str = "feature",
    descending: bool = False,
    alive_only: bool = False,
    limit: int | None = None,
) -> pl.DataFrame:
    """The features table, optionally without dead features, sorted by any of its columns."""
    require(con, "features")
    if order_by not in FEATURE_COLUMNS:
        raise UsageError(f"cannot sort features by {order_by!r}", f"use one of {', '.join(FEATURE_COLUMNS)}")
    direction = "DESC NULLS LAST" if descending else "ASC NULLS LAST"
    where = "WHERE NOT dead" if alive_only else ""
    tail = f"LIMIT {int(limit)}" if limit is not None else ""
    return con.sql(f'SELECT * FROM features {where} ORDER BY "{order_by}" {direction}, feature {tail}').pl()


def top_images(con: duckdb.DuckDBPyConnection, feature: int, n: int = 20) -> pl.DataFrame:
    """The feature's n strongest images by image-level activation: rank, image_id, value, label, path."""
    require(con, "feature_images")
    top = frame(
        con,
        "SELECT rank, image_id, value FROM feature_images WHERE feature = ? AND rank <= ? ORDER BY rank",
        [feature, n],
    )
    # a second lookup by primary key (an index scan) is cheaper than a join that scans `images`
    images = frame(
        con,
        "SELECT image_id, label, path FROM images WHERE image_id = ANY(?::INTEGER[])",
        [top["image_id"].to_list()],
    )
    return top.join(images, on="image_id", how="left", maintain_order="left")


def label_shares(con: duckdb.DuckDBPyConnection, feature: int) -> pl.DataFrame:
    """Activation-weighted label shares over the feature's top-N labelled images (the p of label entropy)."""
    require(con, "feature_labels")
    return frame(
        con,
        "SELECT label, share, n_images FROM feature_labels WHERE feature = ? ORDER BY share DESC, label",
        [feature],
    )


def lens(con: duckdb.DuckDBPyConnection, feature: int) -> pl.DataFrame:
    """The feature's logit-lens labels by rank (empty when stats ran without the lens)."""
    require(con, "logit_lens")
    return frame(con, "SELECT rank, label, score, prob FROM logit_lens WHERE feature = ? ORDER BY rank", [feature])


def causal_effect(con: duckdb.DuckDBPyConnection, feature: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The feature's causal effect (`saetui effects`): the classes it supports and suppresses, and its summary
    (own-label probability drop, flip share, lens agreement); empty when effects were not computed for it."""
    if not has_table(con, "causal_effects"):
        return pl.DataFrame(), {}
    classes = frame(
        con,
        "SELECT role, rank, label, delta, relative_delta FROM causal_effects WHERE feature = ? ORDER BY role, rank",
        [feature],
    )
    summary = frame(con, "SELECT * EXCLUDE (feature) FROM feature_effects WHERE feature = ?", [feature]).to_dicts()
    return classes, summary[0] if summary else {}


def histogram(con: duckdb.DuckDBPyConnection, feature: int) -> pl.DataFrame:
    """The feature's activation histogram: counts of active token values per log2 bin [lo, hi)."""
    require(con, "feature_histograms")
    return frame(con, "SELECT bin, lo, hi, count FROM feature_histograms WHERE feature = ? ORDER BY bin", [feature])


def coactivation(
    con: duckdb.DuckDBPyConnection,
    feature: int,
    n: int = 20,
    level: str = "token",
    order: str = "count",
    exact: bool = False,
) -> pl.DataFrame:
    """Top coactivating features: other, count, p_given (P(other | feature)), jaccard, exact, top_label.

    Token level reads the precomputed lists (exact where the feature has at most the stats sample of active
    tokens, else estimated from that sample); exact=True or level="image" counts exactly with one scan.
    """
    if level not in LEVELS:
        raise UsageError(f"unknown coactivation level {level!r}", "use token or image")
    if order not in ORDERS:
        raise UsageError(f"unknown coactivation order {order!r}", "use count or jaccard")
    own = feature_row(con, feature)
    if level == "token" and not exact:
        require(con, "coactivations")
        rank = "rank_count" if order == "count" else "rank_jaccard"
        return frame(
            con,
            f"""SELECT other, count, p_given, jaccard, exact, other_label AS top_label FROM coactivations
            WHERE feature = ? AND {rank} BETWEEN 1 AND ? ORDER BY {rank}""",
            [feature, n],
        )
    size = "n_tokens" if level == "token" else "n_images"
    sizes = features(con).select("feature", size, "top_label")
    counts = exact_counts(con, feature, level, sizes.height)
    other = np.flatnonzero(counts)
    both = counts[other].astype(np.float64)
    own_size = max(int(own[size]), 1)
    their_size = sizes[size].to_numpy()[other].astype(np.float64)
    found = pl.DataFrame(
        {
            "other": other.astype(np.int32),
            "count": counts[other],
            "p_given": both / own_size,
            "jaccard": both / (own_size + their_size - both),
            "exact": np.ones(len(other), dtype=bool),
            "top_label": sizes["top_label"].gather(other),
        }
    )
    key = "count" if order == "count" else "jaccard"
    return found.sort([key, "other"], descending=[True, False]).head(n)


def neighbours(con: duckdb.DuckDBPyConnection, feature: int, n: int = 10) -> pl.DataFrame:
    """Features whose decoder rows have the largest cosine with this one's: other, cosine, top_label."""
    info = stats_info(con)
    if n <= int(info.get("neighbours") or 0):
        found = frame(
            con,
            "SELECT other, cosine, other_label AS top_label FROM feature_neighbours "
            "WHERE feature = ? AND rank <= ? ORDER BY rank",
            [feature, n],
        )
        if found.height:
            return found
    feature_row(con, feature)
    rows = load_rows(info.get("decoder_rows"), "decoder rows")
    index, cosine = nearest_rows(rows, feature, n)
    found = pl.DataFrame({"other": index.astype(np.int32), "cosine": cosine})
    labels = frame(
        con,
        "SELECT feature AS other, top_label FROM features WHERE feature IN (SELECT unnest(?::INTEGER[]))",
        [index.tolist()],
    )
    return found.join(labels, on="other", how="left", maintain_order="left")


def image_features(con: duckdb.DuckDBPyConnection, image_id: int, n: int = 20) -> pl.DataFrame:
    """An image's strongest features: feature, value (max over its tokens), n_tokens active, top_label."""
    strongest = frame(
        con,
        """SELECT feature, max(value) AS value, count(*) AS n_tokens FROM activations
        WHERE image_id = ? AND value > 0 GROUP BY feature ORDER BY value DESC, feature LIMIT ?""",
        [image_id, n],
    )
    if not has_table(con, "features"):
        return strongest.with_columns(pl.lit(None, dtype=pl.String).alias("top_label"))
    labels = frame(
        con,
        "SELECT feature, top_label FROM features WHERE feature IN (SELECT unnest(?::INTEGER[]))",
        [strongest["feature"].to_list()],
    )
    return strongest.join(labels, on="feature", how="left", maintain_order="left")


def patch_map(con: duckdb.DuckDBPyConnection, feature: int, image_id: int, n_tokens: int | None = None) -> np.ndarray:
    """The feature's value on each token of one image (index 0 = CLS, then patches row-major; 0 where inactive).

    n_tokens defaults to the run's own grid (runs.grid_rows x grid_cols + CLS): 50 for ViT-B/32, 197 for B/16,
    257 for L/14, 577 for L/14-336, 1 for a pooled embedding.
    """
    return patch_maps(con, feature, [image_id], n_tokens)[image_id]


def patch_maps(
    con: duckdb.DuckDBPyConnection, feature: int, image_ids: list[int], n_tokens: int | None = None
) -> dict[int, np.ndarray]:
    """patch_map of several images in one query (a feature page's tiles), keyed by image id."""
    n_tokens = token_grid(con).n_tokens if n_tokens is None else n_tokens
    maps = {int(image_id): np.zeros(n_tokens, dtype=np.float32) for image_id in image_ids}
    if not maps:
        return maps
    rows = con.execute(
        "SELECT image_id, token, value FROM activations WHERE image_id IN (SELECT unnest(?::INTEGER[])) "
        "AND feature = ? AND value > 0",
        [list(maps), feature],
    ).fetchall()
    for image_id, token, value in rows:
        if 0 <= token < n_tokens:
            maps[int(image_id)][token] = value
    return maps


def image_bytes(con: duckdb.DuckDBPyConnection, image_ids: list[int], originals: bool = False) -> dict[int, bytes]:
    """Encoded pixels of several images: the stored thumbnail, else the original file while it is readable.

    originals=True prefers the original file (full resolution) and falls back to the thumbnail.
    """
    if not image_ids:
        return {}
    rows = con.execute(
        "SELECT image_id, thumbnail, path FROM images WHERE image_id IN (SELECT unnest(?::INTEGER[]))",
        [[int(i) for i in image_ids]],
    ).fetchall()
    found: dict[int, bytes] = {}
    for image_id, thumbnail, path in rows:
        stored = bytes(thumbnail) if thumbnail is not None else None
        original = None
        if (originals or stored is None) and path:
            try:
                original = Path(path).read_bytes()
            except OSError:
                original = None
        data = (original or stored) if originals else (stored or original)
        if data is not None:
            found[int(image_id)] = data
    return found


def image_embeddings(
    con: duckdb.DuckDBPyConnection, image_ids: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, unit-norm float32 embeddings [n, d]) stored by `index --embeddings`, of the given images or all.

    Images without a stored embedding are left out; a database indexed without --embeddings is a NotFoundError.
    """
    if not has_table(con, "image_embeddings"):
        raise NotFoundError(
            "the database has no image embeddings", "index with --embeddings (the model's final image embedding)"
        )
    if image_ids is None:
        table = con.sql("SELECT image_id, embedding FROM image_embeddings ORDER BY image_id").to_arrow_table()
    else:
        table = con.execute(
            "SELECT image_id, embedding FROM image_embeddings WHERE image_id IN (SELECT unnest(?::INTEGER[])) "
            "ORDER BY image_id",
            [[int(i) for i in image_ids]],
        ).to_arrow_table()
    ids = table.column("image_id").to_numpy().astype(np.int64)
    if len(ids) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    column = table.column("embedding").combine_chunks()
    matrix = column.flatten().to_numpy().astype(np.float32).reshape(len(ids), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return ids, matrix / np.where(norms > 0, norms, 1.0)
