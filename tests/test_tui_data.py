"""The browser's pieces without the app: data access, ordering, history, image rendering, charts."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from harness.browse_db import BrowseDb, build_wide_features_db, shared_browse_db
from saetui import tiles
from saetui.errors import DataError, NotFoundError, UsageError
from saetui.store.runs import TokenGrid
from saetui.tui import rendering
from saetui.tui.charts import bar, number, percent
from saetui.tui.data import BrowseData, FeatureRows
from saetui.tui.navigation import History, Location
from saetui.tui.widgets.feature_table import order_rows


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> BrowseDb:
    """The shared browse database (built once per session)."""
    return shared_browse_db(tmp_path_factory.getbasetemp())


@pytest.fixture
def data(db: BrowseDb) -> BrowseData:
    """A read-only BrowseData over it."""
    browse = BrowseData(db.path)
    yield browse
    browse.close()


def _sql(db: BrowseDb, query: str) -> list[tuple]:
    """Rows of a query on the test database."""
    con = duckdb.connect(str(db.path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_feature_rows_match_the_features_table(db: BrowseDb, data: BrowseData) -> None:
    """Every feature comes back with its numbers and labels; dead ones are flagged."""
    rows = data.feature_rows()
    assert len(rows) == db.n_features
    assert list(rows.feature) == list(range(db.n_features))
    assert {int(f) for f in rows.feature[rows.dead]} == set(db.dead)
    table = {
        f: (fr, top, lens)
        for f, fr, top, lens in _sql(db, "SELECT feature, frequency, top_label, lens_label FROM features")
    }
    for f in (0, 13, 72, db.dead[0]):
        assert rows.frequency[f] == pytest.approx(table[f][0])
        assert rows.label(rows.top_label, f) == (table[f][1] or "")
        assert rows.label(rows.lens_label, f) == (table[f][2] or "")


def test_label_matching_is_case_insensitive_over_top_and_lens_labels(data: BrowseData) -> None:
    """'BUS' finds the features whose top or lens label mentions a bus."""
    rows = data.feature_rows()
    mask = rows.matching("BUS")
    hits = np.flatnonzero(mask)
    assert len(hits) > 0
    for row in hits:
        assert "bus" in rows.label(rows.top_label, row) + rows.label(rows.lens_label, row)
    assert not rows.matching("no such label").any()


def test_order_rows_sorts_with_missing_values_last_and_ties_by_id() -> None:
    """Descending frequency, ascending entropy with NaN last, dead rows hidden on request, masks applied."""
    rows = FeatureRows(
        feature=np.arange(5),
        frequency=np.array([0.1, 0.3, 0.3, 0.0, 0.2]),
        image_frequency=np.zeros(5),
        max_value=np.array([1.0, 5.0, 2.0, np.nan, 4.0]),
        entropy=np.array([0.5, np.nan, 0.1, np.nan, 0.9]),
        dead=np.array([False, False, False, True, False]),
        top_label=np.full(5, -1, dtype=np.int32),
        lens_label=np.full(5, -1, dtype=np.int32),
        labels=(),
    )
    assert list(order_rows(rows, "frequency", True, True)) == [1, 2, 4, 0]
    assert list(order_rows(rows, "entropy", False, False)) == [2, 0, 4, 1, 3]
    assert list(order_rows(rows, "max", True, False)) == [1, 4, 2, 0, 3]
    assert list(order_rows(rows, "id", False, True, mask=np.array([True, False, True, True, True]))) == [0, 2, 4]
    scores = np.array([np.nan, 0.2, 0.9, np.nan, 0.5])
    assert list(order_rows(rows, "score", True, False, ~np.isnan(scores), scores)) == [2, 4, 1]


def test_feature_page_holds_what_the_page_shows(db: BrowseDb, data: BrowseData) -> None:
    """Top images by value, label shares summing to one, lens by rank, neighbours, histogram counts."""
    feature = db.label_feature("daisy")
    page = data.feature_page(feature, top_images=6)
    assert page.stats.feature == feature and not page.stats.dead
    expected = _sql(db, f"SELECT image_id FROM feature_images WHERE feature = {feature} ORDER BY rank LIMIT 6")
    assert [t.image_id for t in page.top_images] == [i for (i,) in expected]
    assert [t.value for t in page.top_images] == sorted((t.value for t in page.top_images), reverse=True)
    assert sum(s.share for s in page.labels) == pytest.approx(1.0)
    assert page.labels[0].label == page.stats.top_label == "daisy"
    assert [e.rank for e in page.lens] == sorted(e.rank for e in page.lens) and page.lens
    assert page.coactivating and feature not in [n.feature for n in page.coactivating]
    assert page.similar and page.similar_note is None
    assert [n.score for n in page.similar] == sorted((n.score for n in page.similar), reverse=True)
    n_tokens = _sql(db, f"SELECT n_tokens FROM features WHERE feature = {feature}")[0][0]
    assert sum(b.count for b in page.histogram) == n_tokens


def test_feature_page_of_a_missing_feature_is_a_clear_error(data: BrowseData) -> None:
    """An id outside the table raises NotFoundError with a hint."""
    with pytest.raises(NotFoundError, match="feature 99999 does not exist"):
        data.feature_page(99999)


def test_image_page_and_patch_values(db: BrowseDb, data: BrowseData) -> None:
    """An image's features by max value, its 257 token errors and a feature's per-token values."""
    page = data.image_page(3)
    assert page.label == db.labels[3] and not page.file_exists  # stored under /data/imagenet-sample
    assert [f.value for f in page.features] == sorted((f.value for f in page.features), reverse=True)
    assert np.isfinite(page.token_sse).all() and page.token_sse.shape == (257,)
    best = page.features[0].feature
    values = data.patch_values(3, best)
    assert values.shape == (257,) and values.max() == pytest.approx(page.features[0].value)
    assert (values > 0).sum() == page.features[0].n_tokens
    many = data.patch_values_of([3, 4, 3], best)  # one query for a page's tiles, the same maps
    assert sorted(many) == [3, 4] and np.array_equal(many[3], values)
    assert np.array_equal(many[4], data.patch_values(4, best))
    with pytest.raises(NotFoundError):
        data.image_page(10_000)


def test_thumbnails_are_the_stored_jpegs(data: BrowseData) -> None:
    """Thumbnails decode to square RGB pictures."""
    thumbs = data.thumbnails([0, 1, 2])
    assert sorted(thumbs) == [0, 1, 2]
    picture = tiles.decode(thumbs[0])
    assert picture.mode == "RGB" and picture.width == picture.height == 96


def test_overview_summarises_the_database(db: BrowseDb, data: BrowseData) -> None:
    """Counts, the frequency histogram over alive features and the position maps."""
    o = data.overview()
    assert (o.n_images, o.n_tokens, o.skipped) == (48, 48 * 257, 1)
    assert (o.alive, o.dead) == (db.n_features - len(db.dead), len(db.dead))
    assert sum(b.count for b in o.frequency_bins) == o.alive
    assert np.isfinite(o.position_sse).all() and o.explained_variance is not None
    assert o.position_sse[1] > o.position_sse[1 + 7 * 16 + 7]  # corners reconstruct worse than the centre
    assert dict(o.run)["sae_name"] == "layer20" and o.missing == ()


def test_run_sql_limits_rows_and_stays_read_only(data: BrowseData) -> None:
    """Results are capped with a flag; writes and bad SQL become one-line DataErrors."""
    result = data.run_sql("SELECT * FROM range(50) t(i)", limit=10)
    assert result.columns == ("i",) and len(result.rows) == 10 and result.truncated
    with pytest.raises(DataError, match="read-only"):
        data.run_sql("CREATE TABLE t (a INTEGER)")
    with pytest.raises(DataError, match="nope"):
        data.run_sql("SELECT * FROM nope")


def test_sql_console_sees_the_database_only(data: BrowseData, tmp_path: Path) -> None:
    """The console follows `saetui query`'s rule: no file reads or writes from SQL."""
    for sql in (f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", "SELECT * FROM read_csv('/etc/passwd')"):
        with pytest.raises(DataError, match="sees the database only"):
            data.run_sql(sql)
    assert list(tmp_path.iterdir()) == []
    assert data.run_sql("SELECT count(*) FROM images").rows[0][0] != "0"


def test_interrupt_cancels_a_running_console_query(data: BrowseData) -> None:
    """interrupt('sql') stops a long query from another thread."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            data.run_sql("SELECT count(*) FROM range(10000000000) a")
            outcome.append(None)
        except DataError as error:
            outcome.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    for _ in range(200):
        if data._active:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.1)
    data.interrupt("sql")
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert isinstance(outcome[0], DataError) and "cancelled" in outcome[0].message


def test_a_database_without_stats_still_opens(tmp_path: Path, db: BrowseDb) -> None:
    """Before `saetui stats` the list says what to run; the overview names the missing tables."""
    copy = tmp_path / "nostats.duckdb"
    con = duckdb.connect(str(copy))
    con.execute(f"ATTACH '{db.path}' AS src (READ_ONLY)")
    con.execute("CREATE TABLE images AS SELECT * FROM src.images")
    con.close()
    browse = BrowseData(copy)
    try:
        with pytest.raises(NotFoundError, match="no features table") as raised:
            browse.feature_rows()
        assert "saetui stats" in (raised.value.hint or "")
        assert set(browse.overview().missing) == {"features", "position_errors", "image_errors"}
    finally:
        browse.close()


def test_missing_database_is_not_found(tmp_path: Path) -> None:
    """A path that does not exist gives NotFoundError."""
    with pytest.raises(NotFoundError):
        BrowseData(tmp_path / "nothing.duckdb")


def test_wide_table_loads_65536_rows(tmp_path: Path) -> None:
    """A CLIP-Scope-wide features table comes back whole, labels dictionary-encoded."""
    browse = BrowseData(build_wide_features_db(tmp_path / "wide.duckdb"))
    try:
        rows = browse.feature_rows()
    finally:
        browse.close()
    assert len(rows) == 65536 and int(rows.dead.sum()) == len(range(3, 65536, 7))
    assert set(rows.labels) == {"tabby cat", "school bus", "daisy", "volcano", "lighthouse", "pizza"}


def test_history_is_browser_like() -> None:
    """Visiting after going back drops the forward entries; repeats are ignored; replace edits in place."""
    history = History()
    a, b, c, d = (Location("feature", i) for i in range(4))
    for location in (a, b, b, c):
        history.visit(location)
    assert history.back() == b and history.back() == a and history.back() is None
    assert history.forward() == b
    history.visit(d)
    assert not history.can_go_forward() and history.back() == b
    history.replace(Location("image", 5, 1))
    assert history.current == Location("image", 5, 1)


def test_overlay_brightens_active_patches_and_dims_the_rest() -> None:
    """The heatmap leaves active patches bright and darkens inactive ones."""
    base = Image.new("RGB", (96, 96), (120, 120, 120))
    values = np.zeros(257, dtype=np.float32)
    values[1] = 4.0  # top-left patch
    out = np.asarray(tiles.overlay(base, values, 4.0, TokenGrid(16, 16)), dtype=np.float64)
    assert out[:4, :4].mean() > out[-10:, -10:].mean() + 30
    assert out[-10:, -10:].mean() < 120


def test_render_sizes_and_missing_thumbnail() -> None:
    """render() returns exactly the requested pixels; no thumbnail gives the placeholder tile."""
    buffer = __import__("io").BytesIO()
    Image.new("RGB", (120, 80), (200, 10, 10)).save(buffer, "JPEG")
    assert tiles.render(buffer.getvalue(), (20, 20)).size == (20, 20)  # centre-cropped to a square
    assert tiles.render(None, (30, 30)).size == (30, 30)


def test_image_cache_is_an_lru() -> None:
    """The cache keeps the most recently used entries and builds each key once."""
    cache = rendering.ImageCache(maxsize=2)
    made: list[int] = []

    def maker(i: int):  # noqa: ANN202 - a tiny factory
        def make() -> Image.Image:
            made.append(i)
            return Image.new("RGB", (1, 1))

        return make

    for key in (1, 2, 1, 3, 1, 2):
        cache.get(key, maker(key))
    assert made == [1, 2, 3, 2] and len(cache) == 2


def test_renderer_choice() -> None:
    """none needs no textual-image; an unknown mode is a usage error; pixel sizes follow the method."""
    none = rendering.load_renderer("none")
    assert none.widget is None and none.pixels(20, 10) == (20, 10)
    with pytest.raises(UsageError):
        rendering.load_renderer("ascii-art")
    assert rendering.Renderer("halfcell", None).pixels(20, 10) == (20, 20)
    assert rendering.Renderer("sixel", None, 8, 16).pixels(20, 10) == (160, 160)


def test_chart_formats() -> None:
    """Percentages, significant digits and eighth-cell bars."""
    assert percent(0.5) == "50.0%" and percent(0.0004) == "0.04%" and percent(None) == "–"
    assert number(1234.5) == "1.23e+03" and number(3.14159) == "3.14" and number(float("nan")) == "–"
    assert bar(0.5, 4) == "██  " and bar(1.0, 3) == "███" and bar(0.0625, 2) == "▏ "


def test_thumbnails_fall_back_to_the_original_file(tmp_path: Path, db: BrowseDb) -> None:
    """An image without a stored thumbnail is drawn from its file; an unreadable one gets the placeholder."""
    copy = tmp_path / "nothumbs.duckdb"
    original = tmp_path / "original.png"
    Image.new("RGB", (300, 200), (10, 200, 10)).save(original)
    con = duckdb.connect(str(copy))
    con.execute(f"ATTACH '{db.path}' AS src (READ_ONLY)")
    con.execute("CREATE TABLE images AS SELECT * FROM src.images")
    con.execute("UPDATE images SET thumbnail = NULL, path = ? WHERE image_id = 0", [str(original)])
    con.execute("UPDATE images SET thumbnail = NULL WHERE image_id = 1")
    con.close()
    browse = BrowseData(copy)
    try:
        found = browse.thumbnails([0, 1, 2])
    finally:
        browse.close()
    assert sorted(found) == [0, 2]  # image 1's file lives on another machine
    assert tiles.decode(found[0]).size == (200, 200)
    assert np.asarray(tiles.render(b"not an image", (8, 8))).shape == (8, 8, 3)
