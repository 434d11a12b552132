"""`saetui compare`: match the features of two databases over the same images by the overlap of their top images.

For feature f of database A and g of B, S(f) and S(g) are their top-K image sets (feature_images rows with
rank <= K and value > 0, images identified across databases by content hash). overlap = |S(f) n S(g)|,
Jaccard = overlap / |S(f) u S(g)|. The best match of f is the g with the highest Jaccard; ties go to the higher
overlap, then to g = f (feature ids carry over between checkpoints of one training run), then to the smallest
id. A feature is alive when its top set is not empty (it fires on some image); a pair is mutual when each is
the other's best match.

The overlaps are counted exactly in NumPy: A's features go in blocks; for each (f, image) pair of a block every
B feature holding that image gets one count (a CSR walk of B's image -> features lists), and one bincount per
block gives the block's dense overlap counts against all of B. The same block yields each row's best match and,
folded block after block, each B feature's best match in A, so one pass gives both directions. Work is
proportional to the (f, image, g) triples plus |A| x |B| cheap dense cells; memory to the block.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from saetui.errors import DatabaseLockedError, DataError, NotFoundError, UsageError
from saetui.store.connection import connect
from saetui.store.runs import utc_now

DEFAULT_TOP = 100
DEFAULT_THRESHOLD = 0.5
MAX_CELLS = 1 << 23  # block features x B features counted at once
MAX_TRIPLES = 1 << 24  # (f, image, g) triples expanded at once

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FeatureSets:
    """The top-K image sets of one database's features: (feature, image key) pairs sorted by feature."""

    feature: np.ndarray  # int64 [pairs], ascending
    image: np.ndarray  # int64 [pairs]: the image's key, shared by both databases
    n_features: int

    @property
    def sizes(self) -> np.ndarray:
        """|S(f)| per feature [n_features]."""
        return np.bincount(self.feature, minlength=self.n_features)


@dataclass(frozen=True)
class Matches:
    """The best match in the other database of every feature: id (-1 = none), Jaccard and overlap."""

    match: np.ndarray  # int64 [n_features]
    jaccard: np.ndarray  # float64 [n_features]
    overlap: np.ndarray  # int64 [n_features]


@dataclass(frozen=True)
class Comparison:
    """The matches of A's alive features and the summary figures."""

    a: str
    b: str
    top: int
    threshold: float
    images: int
    alive_a: int
    alive_b: int
    feature: np.ndarray  # A's alive features
    match: np.ndarray  # their best B feature (-1 when no B feature shares an image)
    jaccard: np.ndarray
    overlap: np.ndarray
    mutual: np.ndarray  # bool
    mean_jaccard_b: float  # the same average seen from B's alive features

    @property
    def mean_jaccard(self) -> float:
        """Average best-match Jaccard over A's alive features."""
        return float(self.jaccard.mean()) if len(self.jaccard) else 0.0

    @property
    def mutual_pairs(self) -> int:
        """Pairs that are each other's best match."""
        return int(self.mutual.sum())

    @property
    def share_above(self) -> float:
        """Share of A's alive features whose best match has Jaccard >= threshold."""
        return float((self.jaccard >= self.threshold).mean()) if len(self.jaccard) else 0.0


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the database has a table or view called name."""
    query = (
        "SELECT count(*) FROM (SELECT table_name AS name FROM duckdb_tables() WHERE database_name = current_database()"
        " UNION ALL SELECT view_name FROM duckdb_views() WHERE database_name = current_database()) WHERE name = ?"
    )
    return bool(con.execute(query, [name]).fetchall()[0][0])


def _image_hashes(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image_id, content_hash) of every image of a database."""
    if not _has_table(con, "images"):
        raise DataError(f"{path} has no images table", "pass a database made by `saetui index`")
    rows = con.execute("SELECT image_id, content_hash FROM images").fetchall()
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    hashes = np.array([row[1] for row in rows], dtype=object)
    if any(h is None for h in hashes):
        raise DataError(f"{path} has images without a content hash", "re-index it with this saetui version")
    return ids, hashes


def _stored_top(con: duckdb.DuckDBPyConnection, path: Path) -> int | None:
    """How many images per feature `saetui stats` kept in feature_images (None when it does not say)."""
    if not _has_table(con, "stats_info"):
        return None
    rows = con.execute("SELECT top_images FROM stats_info").fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def _feature_count(con: duckdb.DuckDBPyConnection) -> int:
    """The number of features of a database (from the features table, else feature_images)."""
    table = "features" if _has_table(con, "features") else "feature_images"
    return int(con.execute(f"SELECT coalesce(max(feature), -1) + 1 FROM {table}").fetchall()[0][0])


def read_sets(con: duckdb.DuckDBPyConnection, path: Path, top: int, image_key: dict[int, int]) -> FeatureSets:
    """The top-`top` image sets of a database's features, images mapped to shared keys by image_key."""
    if not _has_table(con, "feature_images"):
        raise NotFoundError(f"{path} has no feature_images table", f"run `saetui stats --db {path}` first")
    stored = _stored_top(con, path)
    if stored is not None and top > stored:
        raise UsageError(
            f"feature_images of {path} keeps only the top {stored} images per feature, fewer than --top {top}",
            f"use --top {stored} or less, or rerun `saetui stats --top-images {top} --db {path}`",
        )
    pairs = con.sql(
        f"SELECT feature, image_id FROM feature_images WHERE rank <= {int(top)} AND value > 0 ORDER BY feature, rank"
    ).fetchnumpy()
    ids = np.asarray(pairs["image_id"], dtype=np.int64)
    lookup = np.full(int(max(image_key, default=-1)) + 1, -1, dtype=np.int64)
    lookup[np.fromiter(image_key.keys(), np.int64, len(image_key))] = np.fromiter(
        image_key.values(), np.int64, len(image_key)
    )
    keys = lookup[ids] if len(ids) else np.zeros(0, np.int64)
    if (keys < 0).any():
        raise DataError(f"feature_images of {path} names images its images table lacks", "rerun `saetui stats`")
    return FeatureSets(np.asarray(pairs["feature"], dtype=np.int64), keys, _feature_count(con))


def _blocks(sets: FeatureSets, triples_per_feature: np.ndarray, n_other: int) -> list[tuple[int, int]]:
    """Feature ranges [start, stop) whose triples and dense overlap cells stay within the limits."""
    rows_per_block = max(1, MAX_CELLS // max(n_other, 1))
    blocks: list[tuple[int, int]] = []
    start, triples = 0, 0
    for feature in range(sets.n_features):
        cost = int(triples_per_feature[feature])
        if feature > start and (triples + cost > MAX_TRIPLES or feature - start >= rows_per_block):
            blocks.append((start, feature))
            start, triples = feature, 0
        triples += cost
    if start < sets.n_features:
        blocks.append((start, sets.n_features))
    return blocks


def best_matches(
    a: FeatureSets, b: FeatureSets, n_images: int, progress: Progress | None = None
) -> tuple[Matches, Matches]:
    """The best match in b of every feature of a, and in a of every feature of b (module docstring: ties)."""
    size_a, size_b = a.sizes.astype(np.float64), b.sizes.astype(np.float64)
    order = np.argsort(b.image, kind="stable")
    b_features = b.feature[order]  # B's features grouped by image
    b_start = np.zeros(n_images + 1, dtype=np.int64)
    np.cumsum(np.bincount(b.image, minlength=n_images), out=b_start[1:])
    per_image = np.diff(b_start)
    triples = np.bincount(a.feature, weights=per_image[a.image], minlength=a.n_features)
    pair_start = np.searchsorted(a.feature, np.arange(a.n_features + 1))
    forward = Matches(
        np.full(a.n_features, -1, np.int64), np.zeros(a.n_features, np.float64), np.zeros(a.n_features, np.int64)
    )
    backward = Matches(
        np.full(b.n_features, -1, np.int64), np.zeros(b.n_features, np.float64), np.zeros(b.n_features, np.int64)
    )
    blocks = _blocks(a, triples, b.n_features)
    for done, (start, stop) in enumerate(blocks, start=1):
        lo, hi = pair_start[start], pair_start[stop]
        rows, images = a.feature[lo:hi] - start, a.image[lo:hi]
        counts = per_image[images]
        total = int(counts.sum())
        if total:
            first = np.repeat(b_start[images] - np.cumsum(counts) + counts, counts)
            partner = b_features[first + np.arange(total)]
            cells = np.repeat(rows, counts) * b.n_features + partner
            shared = np.bincount(cells, minlength=(stop - start) * b.n_features).reshape(stop - start, b.n_features)
            positive = shared > 0
            union = np.add.outer(size_a[start:stop], size_b)
            union -= shared
            np.maximum(union, 1.0, out=union)  # only where both sets are empty (shared = 0 there)
            jaccard = shared.astype(np.float64)
            jaccard /= union
            _pick_rows(shared, jaccard, positive, start, forward)
            _merge_columns(shared, jaccard, positive, start, backward)
        if progress is not None:
            progress(done, len(blocks))
    return forward, backward


def _first_by_rank(group: np.ndarray, keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """Indices of the first element of each group after sorting by group, then keys (most important first)."""
    order = np.lexsort((*reversed(keys), group))
    sorted_group = group[order]
    return order[np.r_[True, sorted_group[1:] != sorted_group[:-1]]]


def _pick_rows(shared: np.ndarray, jaccard: np.ndarray, positive: np.ndarray, start: int, out: Matches) -> None:
    """Each block row's best column: highest Jaccard, then overlap, then the same id, then the smallest id."""
    candidate = jaccard == jaccard.max(axis=1)[:, None]
    candidate &= positive
    rows, cols = np.nonzero(candidate)
    if not len(rows):
        return
    features = rows + start
    overlap = shared[rows, cols]
    first = _first_by_rank(rows, (-overlap, cols != features, cols))
    out.match[features[first]] = cols[first]
    out.jaccard[features[first]] = jaccard[rows[first], cols[first]]
    out.overlap[features[first]] = overlap[first]


def _merge_columns(shared: np.ndarray, jaccard: np.ndarray, positive: np.ndarray, start: int, out: Matches) -> None:
    """Fold the block's best row per column into the running best matches of the columns (same tie rules).

    Blocks come in ascending feature order, so on a full tie the earlier (smaller) feature stays.
    """
    candidate = jaccard == jaccard.max(axis=0)[None, :]
    candidate &= positive
    rows, cols = np.nonzero(candidate)
    if not len(cols):
        return
    features = rows + start
    overlap = shared[rows, cols]
    first = _first_by_rank(cols, (-overlap, features != cols, features))
    col, feature, score, count = cols[first], features[first], jaccard[rows[first], cols[first]], overlap[first]
    held_j, held_o, held_f = out.jaccard[col], out.overlap[col], out.match[col]
    better = (score > held_j) | (
        (score == held_j) & ((count > held_o) | ((count == held_o) & (feature == col) & (held_f != col)))
    )
    col = col[better]
    out.match[col], out.jaccard[col], out.overlap[col] = feature[better], score[better], count[better]


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, duckdb.DuckDBPyConnection]:
    """A read-only connection to a database and its (image_id, content_hash) columns."""
    con = connect(path, read_only=True)
    try:
        ids, hashes = _image_hashes(con, path)
    except BaseException:
        con.close()
        raise
    return ids, hashes, con


def compare_databases(
    a_path: str | os.PathLike[str],
    b_path: str | os.PathLike[str],
    top: int = DEFAULT_TOP,
    threshold: float = DEFAULT_THRESHOLD,
    progress: Progress | None = None,
) -> Comparison:
    """Match every alive feature of database A to its best feature of database B (read-only on both)."""
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}", "pass e.g. --top 100")
    if not 0 <= threshold <= 1:
        raise UsageError(f"--threshold must be in 0..1, got {threshold}", "pass e.g. --threshold 0.5")
    a, b = Path(a_path), Path(b_path)
    a_ids, a_hashes, a_con = _read(a)
    try:
        b_ids, b_hashes, b_con = _read(b)
        try:
            only_a = set(a_hashes) - set(b_hashes)
            only_b = set(b_hashes) - set(a_hashes)
            if only_a or only_b:
                raise UsageError(
                    f"{a} and {b} index different images ({len(only_a)} only in the first, {len(only_b)} only in "
                    "the second, by content hash)",
                    "compare databases indexed from the same images",
                )
            unique = np.unique(np.concatenate([a_hashes, b_hashes]).astype(str))
            a_key = dict(zip(a_ids.tolist(), np.searchsorted(unique, a_hashes.astype(str)).tolist(), strict=True))
            b_key = dict(zip(b_ids.tolist(), np.searchsorted(unique, b_hashes.astype(str)).tolist(), strict=True))
            a_sets = read_sets(a_con, a, top, a_key)
            b_sets = read_sets(b_con, b, top, b_key)
        finally:
            b_con.close()
    finally:
        a_con.close()
    forward, backward = best_matches(a_sets, b_sets, len(unique), progress)
    alive = np.flatnonzero(a_sets.sizes > 0)
    alive_b = np.flatnonzero(b_sets.sizes > 0)
    match = forward.match[alive]
    mutual = (match >= 0) & (backward.match[np.maximum(match, 0)] == alive)
    return Comparison(
        a=str(Path(a).resolve()),
        b=str(Path(b).resolve()),
        top=top,
        threshold=threshold,
        images=len(unique),
        alive_a=len(alive),
        alive_b=len(alive_b),
        feature=alive,
        match=match,
        jaccard=forward.jaccard[alive],
        overlap=forward.overlap[alive],
        mutual=mutual,
        mean_jaccard_b=float(backward.jaccard[alive_b].mean()) if len(alive_b) else 0.0,
    )


def summary(result: Comparison) -> dict[str, object]:
    """The summary figures by name."""
    return {
        "a": result.a,
        "b": result.b,
        "images": result.images,
        "top": result.top,
        "threshold": result.threshold,
        "alive_a": result.alive_a,
        "alive_b": result.alive_b,
        "mean_jaccard": result.mean_jaccard,
        "mean_jaccard_b_to_a": result.mean_jaccard_b,
        "mutual_pairs": result.mutual_pairs,
        "share_above_threshold": result.share_above,
    }


def store_matches(target: str | os.PathLike[str], result: Comparison) -> None:
    """Replace feature_matches and compare_info in the target database (read-write) in one transaction."""
    path = Path(target)
    try:
        con = connect(path, read_only=False)
    except DatabaseLockedError as error:
        raise DatabaseLockedError(error.message, "close it, or store the matches elsewhere with --out FILE") from None
    table = pa.table(
        {
            "feature": pa.array(result.feature, pa.int32()),
            "match_feature": pa.array(np.where(result.match >= 0, result.match, 0), pa.int32(), mask=result.match < 0),
            "jaccard": pa.array(result.jaccard, pa.float64()),
            "overlap": pa.array(result.overlap, pa.int32()),
            "mutual": pa.array(result.mutual, pa.bool_()),
        }
    )
    info = summary(result)
    try:
        con.register("_feature_matches", table)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE OR REPLACE TABLE feature_matches AS SELECT * FROM _feature_matches ORDER BY feature")
            con.execute(
                "CREATE OR REPLACE TABLE compare_info AS SELECT ?::TIMESTAMP AS compared_at, ?::VARCHAR AS a, "
                "?::VARCHAR AS b, ?::BIGINT AS images, ?::INTEGER AS top, ?::DOUBLE AS threshold, "
                "?::INTEGER AS alive_a, ?::INTEGER AS alive_b, ?::DOUBLE AS mean_jaccard, "
                "?::DOUBLE AS mean_jaccard_b_to_a, ?::INTEGER AS mutual_pairs, ?::DOUBLE AS share_above_threshold",
                [utc_now(), *info.values()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()


def report_lines(result: Comparison, show: int) -> list[str]:
    """The readable summary and the `show` best pairs."""
    lines = [
        f"A: {result.a}",
        f"B: {result.b}",
        f"{result.images:,} images in both; top-{result.top} image sets; {result.alive_a:,} alive features in A, "
        f"{result.alive_b:,} in B",
        f"mean best-match Jaccard (A -> B): {result.mean_jaccard:.4f}   (B -> A: {result.mean_jaccard_b:.4f})",
        f"mutual best pairs: {result.mutual_pairs:,}",
        f"A features with a match >= {result.threshold:g}: {result.share_above:.1%}",
    ]
    if show > 0 and len(result.feature):
        order = np.lexsort((result.feature, -result.overlap, -result.jaccard))[:show]
        lines += ["", f"best {len(order)} pairs:", "  feature  match  jaccard  overlap  mutual"]
        for i in order:
            match = str(result.match[i]) if result.match[i] >= 0 else "-"
            lines.append(
                f"  {result.feature[i]:>7}  {match:>5}  {result.jaccard[i]:>7.4f}  {result.overlap[i]:>7}  "
                f"{'yes' if result.mutual[i] else 'no':>6}"
            )
    return lines


def report_json(result: Comparison) -> dict[str, object]:
    """The summary and every alive feature's match as plain JSON types."""
    return {
        **summary(result),
        "matches": [
            {
                "feature": int(f),
                "match_feature": int(m) if m >= 0 else None,
                "jaccard": float(j),
                "overlap": int(o),
                "mutual": bool(u),
            }
            for f, m, j, o, u in zip(
                result.feature, result.match, result.jaccard, result.overlap, result.mutual, strict=True
            )
        ],
    }


def stderr_progress(done: int, total: int) -> None:
    """Default progress: one stderr line per block, overwritten in place on a terminal."""
    end = "\n" if done == total or not sys.stderr.isatty() else ""
    sys.stderr.write(f"\rcompare: feature blocks {done}/{total}{end}")
    sys.stderr.flush()
