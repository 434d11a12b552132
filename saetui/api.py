"""The notebook API: `db = saetui.open("saetui.duckdb")`, then polars DataFrames for features, images and SQL.

Example::

    import saetui

    with saetui.open("saetui.duckdb") as db:
        alive = db.features(order_by="frequency", descending=True, alive_only=True)
        f = int(alive["feature"][0])
        db.top_images(f, n=9)          # rank, image_id, value, label, path
        db.coactivation(f, n=10)       # other, count, p_given, jaccard, exact, top_label
        db.neighbours(f, n=10)         # other, cosine, top_label (decoder-row cosine)
        db.lens(f)                     # rank, label, score, prob
        db.sql("SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY n DESC")

        db.set_note(f, "stripes, any colour", ["interesting"])   # notes go to the side file
        db.notes(); db.explanations(); db.scores("monosemanticity")

The connection is read-only: the API never changes the database (notes are written to its side file, see
saetui.store.annotations). Nothing here imports torch except `search`.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import polars as pl

from saetui.errors import DataError
from saetui.naming.notes import check_feature
from saetui.paths import default_db
from saetui.stats import queries
from saetui.store import annotations
from saetui.store.annotations import Annotations
from saetui.store.connection import connect, quiet

__all__ = ["Database", "open", "search_text"]


def search_text(
    con: duckdb.DuckDBPyConnection, text: str, n: int = 20, cache: str | Path | None = None
) -> list[tuple[int, float]]:
    """Features whose lens embedding is closest to the CLIP text embedding of text: [(feature, cosine)]."""
    from saetui.stats.search import search_text as search

    return search(con, text, n=n, cache=cache)


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection (saetui.store.connection's rules: missing file, folder, lock -> one-line errors)."""
    return quiet(connect(path, read_only=True))


class Database:
    """A saetui database opened read-only; every method returns a polars DataFrame (or a numpy array)."""

    def __init__(self, path: str | Path | None = None, cache: str | Path | None = None) -> None:
        """Open path (default: $SAETUI_DB, else ./saetui.duckdb) read-only; cache locates model files."""
        self.path = Path(path).expanduser() if path is not None else default_db()
        self.cache = cache
        self.con = _connect(self.path)

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def __enter__(self) -> Database:
        """Use as a context manager that closes the connection."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        """Close on leaving the with-block."""
        self.close()

    def __repr__(self) -> str:
        """The database path."""
        return f"saetui.Database({str(self.path)!r})"

    def sql(self, query: str, params: dict[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        """Run read-only SQL and return the result (any table: images, activations, features, ...)."""
        try:
            return self.con.sql(query, params=params).pl()
        except duckdb.Error as error:
            raise DataError(str(error).splitlines()[0], "check the SQL against the README's tables") from None

    def run(self) -> dict[str, Any]:
        """The latest `runs` row: model, layer, SAE repo/file/revision, k, token set, ..."""
        return queries.run_row(self.con)

    def stats_info(self) -> dict[str, Any]:
        """How the derived tables were computed (options, lens variant, cache paths)."""
        return queries.stats_info(self.con)

    def features(
        self,
        order_by: str = "feature",
        descending: bool = False,
        alive_only: bool = False,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """The features table, sorted by any column, optionally without dead features."""
        return queries.features(self.con, order_by, descending, alive_only, limit)

    def feature(self, feature: int) -> dict[str, Any]:
        """One feature's row of `features` as a dict."""
        return queries.feature_row(self.con, feature)

    def top_images(self, feature: int, n: int = 20) -> pl.DataFrame:
        """The feature's strongest images: rank, image_id, value, label, path."""
        return queries.top_images(self.con, feature, n)

    def label_shares(self, feature: int) -> pl.DataFrame:
        """Activation-weighted label shares over the feature's top-N images (N of the label entropy): label,
        share, n_images."""
        return queries.label_shares(self.con, feature)

    def coactivation(
        self, feature: int, n: int = 20, level: str = "token", order: str = "count", exact: bool = False
    ) -> pl.DataFrame:
        """Coactivating features: other, count, p_given, jaccard, exact, top_label.

        level "token" (default) or "image"; order "count" or "jaccard"; exact=True counts exactly instead of
        reading the precomputed (sampled for very frequent features) lists.
        """
        return queries.coactivation(self.con, feature, n, level, order, exact)

    def neighbours(self, feature: int, n: int = 10) -> pl.DataFrame:
        """Similar-direction features by decoder-row cosine: other, cosine, top_label."""
        return queries.neighbours(self.con, feature, n)

    def lens(self, feature: int) -> pl.DataFrame:
        """The feature's logit-lens labels: rank, label, score (cosine), prob."""
        return queries.lens(self.con, feature)

    def causal_effect(self, feature: int) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The causal effect `saetui effects` stored: (role, rank, label, delta, relative_delta) rows, summary."""
        return queries.causal_effect(self.con, feature)

    def histogram(self, feature: int) -> pl.DataFrame:
        """Counts of the feature's active token values per log2 bin: bin, lo, hi, count."""
        return queries.histogram(self.con, feature)

    def image_features(self, image_id: int, n: int = 20) -> pl.DataFrame:
        """An image's strongest features: feature, value (max over tokens), n_tokens, top_label."""
        return queries.image_features(self.con, image_id, n)

    def patch_map(self, feature: int, image_id: int) -> np.ndarray:
        """The feature's value on each of the image's tokens (0 = CLS, then the run's patch grid row-major)."""
        return queries.patch_map(self.con, feature, image_id)

    def position_errors(self) -> pl.DataFrame:
        """Mean sse and explained variance per token position: token, row, col, n, mean_sse, explained_variance."""
        queries.require(self.con, "position_errors")
        return self.con.sql("SELECT * FROM position_errors ORDER BY token").pl()

    def image_errors(self) -> pl.DataFrame:
        """Per-image reconstruction: image_id, n_tokens, sse, mean_sse, explained_variance, nmse."""
        queries.require(self.con, "image_errors")
        return self.con.sql("SELECT * FROM image_errors ORDER BY image_id").pl()

    # ---- annotations: the side file beside the database (the one thing the API writes) ------------------------

    def notes(self) -> pl.DataFrame:
        """Every feature note: feature, text, tags, author, updated_at (read fresh from the side file)."""
        annotations.load_into(self.con, self.path)
        return self.con.sql("SELECT * FROM notes ORDER BY feature").pl()

    def note(self, feature: int) -> dict[str, Any] | None:
        """One feature's note (text, tags, author, updated_at), None when it has none."""
        note = Annotations(self.path).note(feature)
        return None if note is None else note.fields()

    def set_note(self, feature: int, text: str, tags: list[str] | None = None) -> None:
        """Write a feature's note in the side file (empty text and no tags delete it); the database is untouched."""
        check_feature(feature, int(self.run().get("n_features") or 0))
        Annotations(self.path).set_note(feature, text, tags or [])

    def explanations(self) -> pl.DataFrame:
        """Every stored explanation: feature, explanation, model, prompt_version, endpoint, image_ids, tokens, time."""
        annotations.load_into(self.con, self.path)
        return self.con.sql("SELECT * FROM explanations ORDER BY feature, created_at").pl()

    def scores(self, score: str | None = None) -> pl.DataFrame:
        """Stored feature scores (monosemanticity, clip_auroc): feature, score, value, n, detail, computed_at."""
        annotations.load_into(self.con, self.path)
        where = "WHERE score = $score" if score is not None else ""
        params = {"score": score} if score is not None else None
        return self.con.sql(f"SELECT * FROM feature_scores {where} ORDER BY score, feature", params=params).pl()

    def search(self, text: str, n: int = 20) -> pl.DataFrame:
        """Features matching free text (CLIP text embedding vs lens embedding; loads torch): feature, score, ..."""
        hits = search_text(self.con, text, n=n, cache=self.cache)
        found = pl.DataFrame(
            {"feature": [f for f, _ in hits], "score": [s for _, s in hits]},
            schema={"feature": pl.Int32, "score": pl.Float64},
        )
        labels = self.con.sql(
            "SELECT feature, lens_label, top_label FROM features WHERE feature IN (SELECT unnest($ids::INTEGER[]))",
            params={"ids": [f for f, _ in hits]},
        ).pl()
        return found.join(labels, on="feature", how="left", maintain_order="left")


def open(path: str | Path | None = None, cache: str | Path | None = None) -> Database:  # noqa: A001
    """Open a saetui database read-only for notebook use (default path: $SAETUI_DB, else ./saetui.duckdb)."""
    return Database(path, cache)
