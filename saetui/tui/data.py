"""The browser's read-only access layer: one DuckDB connection, a cursor per call, plain results (no Textual).

Every method opens its own cursor on the shared read-only connection, so the TUI's workers can call them from
their threads at the same time. Nothing here imports torch; free-text search imports the CLIP text tower only
when called (from a worker) and reports a clear error when it cannot run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from saetui.errors import DataError, NotFoundError
from saetui.store import annotations
from saetui.store.annotations import Annotations, Note
from saetui.store.connection import connect
from saetui.store.runs import TokenGrid, token_grid
from saetui.store.sandbox import confine


@dataclass(frozen=True)
class FeatureRows:
    """The whole features table as column arrays (65,536 rows load in milliseconds; nothing is a widget)."""

    feature: np.ndarray  # int64
    frequency: np.ndarray  # float64
    image_frequency: np.ndarray  # float64
    max_value: np.ndarray  # float64, NaN for dead features
    entropy: np.ndarray  # float64 label_entropy_norm, NaN where undefined
    dead: np.ndarray  # bool
    top_label: np.ndarray  # int32 codes into `labels`, -1 for none
    lens_label: np.ndarray  # int32 codes into `labels`, -1 for none
    labels: tuple[str, ...]
    agreement: np.ndarray | None = None  # float64 lens~causal top-class overlap (`saetui effects`), NaN where none
    has_effects: bool = False  # whether any feature has a causal effect stored
    note: np.ndarray | None = None  # object: "#tag #tag text" of each feature's note, "" where none
    explanation: np.ndarray | None = None  # object: the latest automatic explanation, "" where none

    @property
    def has_notes(self) -> bool:
        """Whether any feature has a note or an explanation."""
        return any(column is not None and bool(column.astype(bool).any()) for column in (self.note, self.explanation))

    def __len__(self) -> int:
        """Number of features."""
        return len(self.feature)

    def label(self, codes: np.ndarray, row: int) -> str:
        """The label text of row `row` in a code column ('' for none)."""
        code = int(codes[row])
        return self.labels[code] if code >= 0 else ""

    def matching(self, text: str) -> np.ndarray:
        """Rows whose top label, logit-lens label, note, tags or explanation contain text (case-insensitive)."""
        needle = text.strip().lower()
        hits = np.array([needle in label.lower() for label in self.labels], dtype=bool)
        codes = np.flatnonzero(hits)
        mask = np.isin(self.top_label, codes) | np.isin(self.lens_label, codes)
        for column in (self.note, self.explanation):
            if column is not None:
                mask |= np.fromiter((needle in str(t).lower() for t in column), dtype=bool, count=len(column))
        return mask

    def with_annotations(self, notes: dict[int, Note], explanations: dict[int, str]) -> FeatureRows:
        """The same rows with the note and explanation columns filled from the side file."""
        position = {int(f): i for i, f in enumerate(self.feature)}
        note = np.full(len(self.feature), "", dtype=object)
        explanation = np.full(len(self.feature), "", dtype=object)
        for key, value in notes.items():
            if key in position:
                note[position[key]] = note_summary(value)
        for key, text in explanations.items():
            if key in position:
                explanation[position[key]] = text
        return replace(self, note=note, explanation=explanation)


def note_summary(note: Note) -> str:
    """A note on one line: its tags as #tag, then its text."""
    return " ".join([*(f"#{tag}" for tag in note.tags), " ".join(note.text.split())]).strip()


@dataclass(frozen=True)
class FeatureStats:
    """One row of `features`."""

    feature: int
    frequency: float
    image_frequency: float
    mean_value: float | None
    max_value: float | None
    label_entropy: float | None
    label_entropy_norm: float | None
    top_label: str | None
    top_label_share: float | None
    n_labels: int | None
    n_tokens: int | None
    n_images: int | None
    dead: bool


@dataclass(frozen=True)
class TopImage:
    """One of a feature's top images by image-level activation."""

    image_id: int
    value: float
    label: str | None


@dataclass(frozen=True)
class LabelShare:
    """A label's activation-weighted share among a feature's top images."""

    label: str
    share: float
    count: int


@dataclass(frozen=True)
class LensEntry:
    """A logit-lens label of a feature."""

    rank: int
    label: str
    score: float
    prob: float


@dataclass(frozen=True)
class Neighbour:
    """A related feature (coactivating or similar direction) with the numbers that relate it."""

    feature: int
    score: float
    detail: str
    top_label: str | None


@dataclass(frozen=True)
class HistogramBin:
    """Count of active values in [lo, hi)."""

    lo: float
    hi: float
    count: int


@dataclass(frozen=True)
class CausalEffect:
    """What ablating the feature on its top images does to the class logits (`saetui effects`)."""

    n_images: int
    supports: tuple[tuple[str, float], ...]  # (label, relative logit change), most lowered first
    suppresses: tuple[tuple[str, float], ...]
    own_prob_drop: float | None
    flip_share: float | None
    lens_causal: float | None  # top-class overlaps: logit lens ~ causal effect
    lens_labels: float | None  # logit lens ~ labels of the top images
    causal_labels: float | None  # causal effect ~ labels of the top images


@dataclass(frozen=True)
class FeaturePage:
    """Everything a feature page shows except the thumbnails' pixels."""

    stats: FeatureStats
    top_images: tuple[TopImage, ...]
    labels: tuple[LabelShare, ...]
    lens: tuple[LensEntry, ...]
    coactivating: tuple[Neighbour, ...]
    similar: tuple[Neighbour, ...]
    similar_note: str | None
    histogram: tuple[HistogramBin, ...]
    match: BestMatch | None = None
    effect: CausalEffect | None = None
    note: Note | None = None
    explanation: dict[str, Any] | None = None  # the latest automatic explanation (`saetui explain`)
    scores: dict[str, float | None] = field(default_factory=dict)  # stored scores (`saetui score`)


@dataclass(frozen=True)
class BestMatch:
    """The feature of the --compare database whose top images overlap this one's most (from `saetui compare`)."""

    database: str
    feature: int | None
    jaccard: float
    overlap: int
    mutual: bool
    top_label: str | None


@dataclass(frozen=True)
class ImageFeature:
    """A feature active on an image: its image-level (max) value and how many tokens it is active on."""

    feature: int
    value: float
    n_tokens: int
    top_label: str | None


@dataclass(frozen=True)
class ImagePage:
    """One image: its row in `images`, its strongest features and its per-token reconstruction error."""

    image_id: int
    path: str | None
    label: str | None
    width: int | None
    height: int | None
    file_exists: bool
    features: tuple[ImageFeature, ...]
    token_sse: np.ndarray  # [257] NaN where not stored
    explained_variance: float | None


@dataclass(frozen=True)
class Overview:
    """The run and the dataset-wide summaries the overview screen draws."""

    run: tuple[tuple[str, str], ...]
    n_images: int
    n_tokens: int
    n_features: int
    alive: int
    dead: int
    skipped: int
    frequency_bins: tuple[HistogramBin, ...]  # log10-spaced bins over alive features' frequency
    position_sse: np.ndarray  # [257] mean sse per token position
    position_ev: np.ndarray  # [257] mean explained variance per token position
    explained_variance: float | None
    nmse: float | None
    missing: tuple[str, ...] = field(default=())  # derived tables that are absent (stats not run)


@dataclass(frozen=True)
class QueryResult:
    """A SQL console result: column names, up to `limit` rows, whether more existed, and the time taken."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool
    seconds: float


def _float(value: Any) -> float | None:
    """A DB value as float, None for NULL/NaN."""
    if value is None:
        return None
    result = float(value)
    return None if math.isnan(result) else result


class BrowseData:
    """Read-only queries for the browser over one saetui database."""

    def __init__(self, path: str | Path, compare: str | Path | None = None) -> None:
        """Open the database read-only (and the --compare one); a missing file or a lock becomes a one-line error."""
        self.path = Path(path)
        self._con = connect(self.path, read_only=True)
        confine(self._con)  # the SQL console, like `saetui query`, sees the database only
        self.annotations = Annotations(self.path)  # notes and explanations: the side file, writable while browsing
        self.compare = Path(compare) if compare is not None else None
        self._other: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._active: dict[duckdb.DuckDBPyConnection, str] = {}
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        self.tables = frozenset(name for (name,) in rows)
        if "images" not in self.tables:
            raise DataError(f"{self.path} has no images table", "is this a database written by `saetui index`?")
        with self.cursor() as cur:
            self.grid = token_grid(cur) if "runs" in self.tables and "token_codes" in self.tables else TokenGrid(16, 16)
        if self.compare is not None:
            self._open_compare(self.compare)

    def _open_compare(self, other: Path) -> None:
        """Check that `saetui compare` stored this database's matches against `other`, then open `other` read-only."""
        hint = f"run `saetui compare {self.path} {other}` first: it stores the matches in {self.path.name}"
        if not {"feature_matches", "compare_info"} <= self.tables:
            raise DataError(f"{self.path} holds no feature matches", hint)
        with self.cursor() as cur:
            (stored,) = cur.execute("SELECT b FROM compare_info").fetchone() or (None,)
        if stored is None or Path(stored).resolve() != other.resolve():
            raise DataError(f"the matches in {self.path} were computed against {stored}, not {other}", hint)
        self._other = connect(other, read_only=True)

    def best_match(self, feature: int) -> BestMatch | None:
        """The --compare database's best match for a feature, with its top label there; None without --compare."""
        if self.compare is None or self._other is None:
            return None
        with self.cursor() as cur:
            row = cur.execute(
                "SELECT match_feature, jaccard, overlap, mutual FROM feature_matches WHERE feature = ?", [feature]
            ).fetchone()
        if row is None:
            return BestMatch(self.compare.name, None, 0.0, 0, False, None)
        match, jaccard, overlap, mutual = row
        label = None
        if match is not None:
            with self._lock:
                found = (
                    self._other.cursor()
                    .execute("SELECT top_label FROM features WHERE feature = ?", [int(match)])
                    .fetchone()
                )
            label = found[0] if found else None
        return BestMatch(
            self.compare.name,
            None if match is None else int(match),
            float(jaccard or 0.0),
            int(overlap or 0),
            bool(mutual),
            label,
        )

    def close(self) -> None:
        """Interrupt running queries and close the connections."""
        self.interrupt()
        self._con.close()
        if self._other is not None:
            self._other.close()

    @contextmanager
    def cursor(self, kind: str = "read") -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh cursor on the shared connection, closed afterwards; interrupt(kind) reaches it meanwhile."""
        with self._lock:
            cur = self._con.cursor()
            self._active[cur] = kind
        annotations.use(cur)  # each cursor is a session of its own: the annotation tables by their plain names
        try:
            yield cur
        finally:
            with self._lock:
                self._active.pop(cur, None)
            cur.close()

    def interrupt(self, kind: str | None = None) -> None:
        """Cancel running queries: those of one kind (the SQL console's are "sql"), or all of them."""
        with self._lock:
            active = [cur for cur, k in self._active.items() if kind is None or k == kind]
        for cur in active:
            cur.interrupt()

    def _require(self, table: str) -> None:
        """Raise a clear error when a derived table is missing."""
        if table not in self.tables:
            raise NotFoundError(f"the database has no {table} table", "run `saetui stats` on it first")

    # ---- features list -------------------------------------------------------------------------------------

    def feature_rows(self) -> FeatureRows:
        """All rows of `features` as arrays, the label columns as codes into one sorted label list.

        Everything comes back numeric through fetchnumpy (65,536 rows in a few milliseconds, no Arrow import),
        with DuckDB doing the dictionary encoding of the labels.
        """
        self._require("features")
        with self.cursor() as cur:
            columns = {
                name
                for (name,) in cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'features'"
                ).fetchall()
            }
            lens = "lens_label" if "lens_label" in columns else "NULL::VARCHAR"
            labels = [
                label
                for (label,) in cur.execute(
                    f"""SELECT DISTINCT label FROM (SELECT top_label AS label FROM features
                    UNION ALL SELECT {lens} FROM features) WHERE label IS NOT NULL ORDER BY label"""
                ).fetchall()
            ]
            effects = "feature_effects" in self.tables
            agreement = "coalesce(e.lens_causal_overlap, 'NaN')::DOUBLE" if effects else "'NaN'::DOUBLE"
            join = "LEFT JOIN feature_effects e ON e.feature = f.feature" if effects else ""
            arrays = cur.sql(
                f"""WITH codes AS (SELECT label, (row_number() OVER (ORDER BY label) - 1)::INTEGER AS code
                    FROM (SELECT DISTINCT label FROM (SELECT top_label AS label FROM features
                          UNION ALL SELECT {lens} FROM features) WHERE label IS NOT NULL))
                SELECT f.feature::BIGINT AS feature, coalesce(f.frequency, 0)::DOUBLE AS frequency,
                       coalesce(f.image_frequency, 0)::DOUBLE AS image_frequency,
                       coalesce(f.max_value, 'NaN')::DOUBLE AS max_value,
                       coalesce(f.label_entropy_norm, 'NaN')::DOUBLE AS entropy, coalesce(f.dead, false) AS dead,
                       coalesce(t.code, -1) AS top_code, coalesce(l.code, -1) AS lens_code,
                       {agreement} AS agreement
                FROM features f LEFT JOIN codes t ON t.label = f.top_label LEFT JOIN codes l ON l.label = {lens}
                {join} ORDER BY f.feature"""
            ).fetchnumpy()
        return FeatureRows(
            feature=np.asarray(arrays["feature"], dtype=np.int64),
            frequency=np.asarray(arrays["frequency"], dtype=np.float64),
            image_frequency=np.asarray(arrays["image_frequency"], dtype=np.float64),
            max_value=np.asarray(arrays["max_value"], dtype=np.float64),
            entropy=np.asarray(arrays["entropy"], dtype=np.float64),
            dead=np.asarray(arrays["dead"], dtype=bool),
            top_label=np.asarray(arrays["top_code"], dtype=np.int32),
            lens_label=np.asarray(arrays["lens_code"], dtype=np.int32),
            labels=tuple(labels),
            agreement=np.asarray(arrays["agreement"], dtype=np.float64),
            has_effects=bool(np.isfinite(np.asarray(arrays["agreement"], dtype=np.float64)).any()),
        ).with_annotations(*self.feature_annotations())

    def text_search(self, text: str, n: int = 200) -> list[tuple[int, float]]:
        """Features whose logit-lens embedding is closest to a CLIP text embedding of `text` (needs torch).

        Raises a SaetuiError (shown as one line in the browser) when the model files or the embeddings are missing.
        """
        try:
            from saetui import api
        except ImportError as error:
            raise NotFoundError(
                f"free-text search is not available ({error})",
                "search by label instead, or install saetui fully",
            ) from None
        with self.cursor() as cur:
            hits = api.search_text(cur, text, n=n)
        return [(int(f), float(s)) for f, s in hits]

    # ---- feature page --------------------------------------------------------------------------------------

    def feature_page(self, feature: int, top_images: int = 32, neighbours: int = 12) -> FeaturePage:
        """The text of a feature page: stats, top images, label shares, lens, neighbours and histogram.

        The queries are saetui.stats.queries (the notebook API's), imported here so polars loads in a worker
        on first use rather than at startup.
        """
        from saetui.stats import queries

        with self.cursor() as cur:
            row = queries.feature_row(cur, feature)
            stats = FeatureStats(
                feature=int(row["feature"]),
                frequency=_float(row.get("frequency")) or 0.0,
                image_frequency=_float(row.get("image_frequency")) or 0.0,
                mean_value=_float(row.get("mean_value")),
                max_value=_float(row.get("max_value")),
                label_entropy=_float(row.get("label_entropy")),
                label_entropy_norm=_float(row.get("label_entropy_norm")),
                top_label=row.get("top_label"),
                top_label_share=_float(row.get("top_label_share")),
                n_labels=row.get("n_labels"),
                n_tokens=row.get("n_tokens"),
                n_images=row.get("n_images"),
                dead=bool(row.get("dead")),
            )
            tops = tuple(
                TopImage(int(r["image_id"]), float(r["value"]), r["label"])
                for r in _rows(queries.top_images, cur, feature, top_images)
            )
            labels = tuple(
                LabelShare(str(r["label"]), float(r["share"]), int(r["n_images"]))
                for r in _rows(queries.label_shares, cur, feature)
            )
            lens = tuple(
                LensEntry(int(r["rank"]), str(r["label"]), float(r["score"]), float(r["prob"]))
                for r in _rows(queries.lens, cur, feature)
            )
            coactivating = tuple(
                Neighbour(
                    int(r["other"]),
                    float(r["count"]),
                    f"n={int(r['count'])} P={r['p_given']:.2f} J={r['jaccard']:.2f}",
                    r["top_label"],
                )
                for r in _rows(queries.coactivation, cur, feature, neighbours)
            )
            note = None
            try:
                similar = tuple(
                    Neighbour(int(r["other"]), float(r["cosine"]), f"cos={r['cosine']:.2f}", r["top_label"])
                    for r in queries.neighbours(cur, feature, neighbours).iter_rows(named=True)
                )
            except (NotFoundError, DataError) as error:
                similar, note = (), error.one_line()
            histogram = tuple(
                HistogramBin(float(r["lo"]), float(r["hi"]), int(r["count"]))
                for r in _rows(queries.histogram, cur, feature)
            )
            effect = self._causal_effect(cur, feature)
        match = self.best_match(feature)
        side = self.annotations
        return FeaturePage(
            stats, tops, labels, lens, coactivating, similar, note, histogram, match, effect,
            side.note(feature), side.latest_explanations(feature).get(feature), side.feature_scores(feature),
        )  # fmt: skip

    # ---- notes ---------------------------------------------------------------------------------------------

    def feature_annotations(self) -> tuple[dict[int, Note], dict[int, str]]:
        """Every feature note and latest explanation from the side file (read fresh: others may write it)."""
        side = self.annotations
        notes = {n.key: n for n in side.notes()}
        return notes, {f: str(e["explanation"]) for f, e in side.latest_explanations().items()}

    def save_note(self, feature: int, text: str, tags: list[str]) -> Note | None:
        """Write a feature's note to the side file and refresh the SQL console's copy of the annotation tables."""
        self.annotations.set_note(feature, text, tags)
        with self._lock:
            annotations.load_into(self._con, self.path)
        return self.annotations.note(feature)

    def _causal_effect(self, cur: duckdb.DuckDBPyConnection, feature: int) -> CausalEffect | None:
        """The stored causal effect of a feature, None when `saetui effects` did not compute it."""
        from saetui.stats import queries

        classes, summary = queries.causal_effect(cur, feature)
        if not summary:
            return None

        def pairs(role: str) -> tuple[tuple[str, float], ...]:
            """(label, relative delta) of one role in rank order."""
            rows = classes.filter(classes["role"] == role).iter_rows(named=True)
            return tuple((str(r["label"]), float(r["relative_delta"])) for r in rows)

        return CausalEffect(
            n_images=int(summary["n_images"]),
            supports=pairs("supports"),
            suppresses=pairs("suppresses"),
            own_prob_drop=_float(summary.get("own_prob_drop")),
            flip_share=_float(summary.get("flip_share")),
            lens_causal=_float(summary.get("lens_causal_overlap")),
            lens_labels=_float(summary.get("lens_label_overlap")),
            causal_labels=_float(summary.get("causal_label_overlap")),
        )

    # ---- images --------------------------------------------------------------------------------------------

    def thumbnail(self, image_id: int) -> bytes | None:
        """The JPEG thumbnail stored for an image (None when the database has none)."""
        return self.thumbnails([image_id]).get(image_id)

    def thumbnails(self, image_ids: list[int]) -> dict[int, bytes]:
        """Image bytes for several images: the stored thumbnail, else the original file if it is readable."""
        from saetui.stats import queries

        with self.cursor() as cur:
            return queries.image_bytes(cur, image_ids)

    def patch_values(self, image_id: int, feature: int) -> np.ndarray:
        """The feature's value on each of the image's tokens (0 where not kept or not active; grid: self.grid)."""
        from saetui.stats import queries

        with self.cursor() as cur:
            return queries.patch_map(cur, feature, image_id, self.grid.n_tokens)

    def patch_values_of(self, image_ids: list[int], feature: int) -> dict[int, np.ndarray]:
        """patch_values of several images in one query (a feature page's tiles)."""
        from saetui.stats import queries

        with self.cursor() as cur:
            return queries.patch_maps(cur, feature, image_ids, self.grid.n_tokens)

    def image_page(self, image_id: int, n_features: int = 40) -> ImagePage:
        """An image's row, its strongest features (max over tokens) and its per-token error."""
        from saetui.stats import queries

        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT path, label, width, height FROM images WHERE image_id = ?", [image_id]
            ).fetchall()
            if not rows:
                raise NotFoundError(f"image {image_id} does not exist", "pick an image from a feature page")
            path, label, width, height = rows[0]
            features = tuple(
                ImageFeature(int(r["feature"]), float(r["value"]), int(r["n_tokens"]), r["top_label"])
                for r in queries.image_features(cur, image_id, n_features).iter_rows(named=True)
            )
            sse = np.full(self.grid.n_tokens, np.nan)
            ev_values: list[float] = []
            if "token_errors" in self.tables:
                for token, token_sse, total in cur.execute(
                    "SELECT token, sse, total_ss FROM token_errors WHERE image_id = ?", [image_id]
                ).fetchall():
                    if 0 <= token < self.grid.n_tokens:
                        sse[int(token)] = token_sse
                    if total:
                        ev_values.append(1 - token_sse / total)
        return ImagePage(
            image_id=image_id,
            path=path,
            label=label,
            width=width,
            height=height,
            file_exists=bool(path) and Path(path).is_file(),
            features=features,
            token_sse=sse,
            explained_variance=float(np.mean(ev_values)) if ev_values else None,
        )

    # ---- overview ------------------------------------------------------------------------------------------

    def overview(self) -> Overview:
        """Run facts, feature counts, the frequency histogram and the position-error maps."""
        missing = tuple(name for name in ("features", "position_errors", "image_errors") if name not in self.tables)
        with self.cursor() as cur:
            run = self._run_rows(cur)
            n_images = int(cur.execute("SELECT count(*) FROM images").fetchall()[0][0])
            n_tokens = (
                int(cur.execute("SELECT count(*) FROM token_errors").fetchall()[0][0])
                if "token_errors" in self.tables
                else 0
            )
            skipped = (
                int(cur.execute("SELECT count(*) FROM skipped").fetchall()[0][0]) if "skipped" in self.tables else 0
            )
            n_features = alive = dead = 0
            bins: tuple[HistogramBin, ...] = ()
            if "features" in self.tables:
                n_features, dead = (
                    int(v)
                    for v in cur.execute("SELECT count(*), count(*) FILTER (WHERE dead) FROM features").fetchall()[0]
                )
                alive = n_features - dead
                freq = cur.sql("SELECT frequency FROM features WHERE NOT dead AND frequency > 0").fetchnumpy()[
                    "frequency"
                ]
                bins = _log_bins(np.asarray(freq, dtype=np.float64))
            position_sse = np.full(self.grid.n_tokens, np.nan)
            position_ev = np.full(self.grid.n_tokens, np.nan)
            ev = nmse = None
            if "position_errors" in self.tables:
                for token, sse, token_ev in cur.execute(
                    "SELECT token, mean_sse, explained_variance FROM position_errors"
                ).fetchall():
                    if 0 <= token < self.grid.n_tokens:
                        position_sse[int(token)] = np.nan if sse is None else sse
                        position_ev[int(token)] = np.nan if token_ev is None else token_ev
            if "image_errors" in self.tables:
                ev, nmse = cur.execute(
                    "SELECT sum(explained_variance * n_tokens) / sum(n_tokens), avg(nmse) FROM image_errors"
                ).fetchall()[0]
        return Overview(
            run=run,
            n_images=n_images,
            n_tokens=n_tokens,
            n_features=n_features,
            alive=alive,
            dead=dead,
            skipped=skipped,
            frequency_bins=bins,
            position_sse=position_sse,
            position_ev=position_ev,
            explained_variance=_float(ev),
            nmse=_float(nmse),
            missing=missing,
        )

    def _run_rows(self, cur: duckdb.DuckDBPyConnection) -> tuple[tuple[str, str], ...]:
        """The latest run as (column, value) pairs, NULLs left out."""
        if "runs" not in self.tables:
            return ()
        relation = cur.sql("SELECT * FROM runs")
        columns = relation.columns
        rows = relation.fetchall()
        if not rows:
            return ()
        return tuple((c, str(v)) for c, v in zip(columns, rows[-1], strict=True) if v is not None)

    # ---- SQL console ---------------------------------------------------------------------------------------

    def run_sql(self, sql: str, limit: int = 1000) -> QueryResult:
        """Run read-only SQL as `saetui query` does (same runner, errors and DuckDB's text for every value).

        At most `limit` rows come back, as text (NULL as None); bad SQL, writes and cancellation are DataErrors.
        """
        from saetui.store import output

        start = time.perf_counter()
        with self.cursor("sql") as cur:
            try:
                relation = output.run(cur, sql)
                if relation is None or not relation.columns:
                    return QueryResult((), (), (), False, time.perf_counter() - start)
                columns = tuple(relation.columns)
                types = tuple(str(t) for t in relation.types)
                rows = relation.query(
                    "q", f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM q LIMIT {int(limit) + 1}"
                ).fetchall()
            except duckdb.InterruptException:
                raise DataError("query cancelled", "run it again or narrow it") from None
            except duckdb.Error as error:
                raise output.query_error(error) from None
        return QueryResult(columns, types, tuple(rows[:limit]), len(rows) > limit, time.perf_counter() - start)


def _rows(query: Callable[..., Any], cur: duckdb.DuckDBPyConnection, *args: Any) -> list[dict[str, Any]]:
    """Rows of a saetui.stats.queries function as dicts; a missing derived table gives no rows."""
    try:
        return list(query(cur, *args).iter_rows(named=True))
    except NotFoundError:
        return []


def _log_bins(values: np.ndarray, per_decade: int = 2) -> tuple[HistogramBin, ...]:
    """Histogram of positive values on log10 bins (per_decade bins per power of ten)."""
    if len(values) == 0:
        return ()
    logs = np.log10(values)
    lo = math.floor(float(logs.min()) * per_decade) / per_decade
    hi = math.ceil(float(logs.max()) * per_decade + 1e-9) / per_decade
    edges = np.arange(lo, hi + 1 / per_decade / 2, 1 / per_decade)
    if len(edges) < 2:
        edges = np.array([lo, lo + 1 / per_decade])
    counts, _ = np.histogram(logs, bins=edges)
    return tuple(
        HistogramBin(float(10**a), float(10**b), int(c)) for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    )
