"""Naming features end to end on the demo workspace: notes, explanations through a fake OpenAI-compatible server
(faults, resume after kill -9), Sort Eval, scores with known answers, and the three exports."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from harness.fake_vlm import FakeVlm
from harness.tables import saetui_rows
from saetui.api import open as open_database
from saetui.demo import DemoWorkspace, build_demo
from saetui.errors import UsageError
from saetui.naming.endpoint import Endpoint
from saetui.naming.explain import clean_answer
from saetui.naming.export import PARQUET_COLUMNS
from saetui.naming.scores import auroc, monosemanticity
from saetui.naming.sort_eval import HELD_OUT_RANKS, parse_choice
from saetui.store.annotations import Annotations, clean_tags, side_path

SAETUI = Path(sys.executable).with_name("saetui")  # the console script of the environment running the tests
GRID_SIDE = 3 * 224 + 2 * 4  # a 3 x 3 grid of 224 px tiles with 4 px gaps


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoWorkspace:
    """The demo workspace (random-weight model, 96 images, stats and image embeddings), built once."""
    return build_demo(cache=tmp_path_factory.mktemp("naming") / "cache", log=io.StringIO())


@pytest.fixture
def db(demo: DemoWorkspace, tmp_path: Path) -> Path:
    """A private copy of the demo database (each test writes its own side file)."""
    copy = tmp_path / "demo.duckdb"
    shutil.copy(demo.db, copy)
    return copy


@pytest.fixture
def env(demo: DemoWorkspace) -> dict[str, str]:
    """The environment of a saetui subprocess: the demo cache, no hub access, no endpoint configured."""
    cleaned = {k: v for k, v in os.environ.items() if not k.startswith(("SAETUI_", "OPENAI_"))}
    return {**cleaned, "SAETUI_CACHE": str(demo.cache), "HF_HUB_OFFLINE": "1"}


def saetui(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess."""
    return subprocess.run([str(SAETUI), *args], capture_output=True, text=True, env=env, timeout=timeout)


# ---- notes ---------------------------------------------------------------------------------------------------


def test_note_cli_writes_the_side_file_and_sql_joins_it_with_features(db: Path, env: dict[str, str]) -> None:
    """note writes, appends and untags; notes join features in SQL; a missing feature is one usage line."""
    first = saetui("note", "12", "stripes on the left", "--tag", "Interesting,todo", "--db", str(db), env=env)
    assert first.returncode == 0, first.stderr
    saetui("note", "12", "also right", "--append", "--untag", "todo", "--db", str(db), env=env)
    shown = saetui("note", "12", "--json", "--db", str(db), env=env)
    assert json.loads(shown.stdout)["text"] == "stripes on the left\nalso right"
    assert json.loads(shown.stdout)["tags"] == ["interesting"]
    joined = saetui_rows(db, "SELECT n.feature, n.tags, f.n_images > 0 FROM notes n JOIN features f USING (feature)")
    assert joined == [(12, ["interesting"], True)]
    assert side_path(db).is_file() and side_path(db).name == "demo.notes.sqlite"
    bad = saetui("note", "99999", "x", "--db", str(db), env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "feature 99999 does not exist" in bad.stderr
    listed = saetui("note", "--list", "--tag", "interesting", "--json", "--db", str(db), env=env)
    assert [n["feature"] for n in json.loads(listed.stdout)] == [12]


def test_notes_survive_stats_force_and_need_no_write_lock(db: Path, env: dict[str, str]) -> None:
    """A note written while a reader holds the database stays after `stats --force` recomputes every table."""
    reader = duckdb.connect(str(db), read_only=True)  # a browser holding the database open
    try:
        Annotations(db).set_note(5, "round things", ["monosemantic"])
    finally:
        reader.close()
    forced = saetui("stats", "--force", "--db", str(db), env=env)
    assert forced.returncode == 0, forced.stderr
    assert saetui_rows(db, "SELECT feature, text, tags FROM notes") == [(5, "round things", ["monosemantic"])]


def test_sql_refuses_to_change_annotation_copies(db: Path, env: dict[str, str]) -> None:
    """DELETE on notes is refused like any write (the SQL sees a copy; `saetui note` changes the side file)."""
    Annotations(db).set_note(1, "keep me")
    deleted = saetui("query", "delete from notes", "--db", str(db), env=env)
    assert deleted.returncode == 5 and "read-only" in deleted.stderr
    assert Annotations(db).note(1) is not None


def test_tags_are_cleaned() -> None:
    """Tags are lower case, blanks become dashes, commas split, repeats go."""
    assert clean_tags(["Dead End, interesting", "interesting", " "]) == ("dead-end", "interesting")


# ---- explanations --------------------------------------------------------------------------------------------


def test_explain_top_5_stores_5_explanations_from_checked_requests(db: Path, env: dict[str, str]) -> None:
    """Each request carries the model, the instruction and a 3 x 3 grid that decodes; answers land in SQL."""
    with FakeVlm(api_key="secret") as fake:
        done = saetui(
            "explain", "--top", "5", "--endpoint", fake.url, "--model", "fake-vlm", "--db", str(db),
            env={**env, "SAETUI_API_KEY": "secret"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(fake.seen) == 5
        assert all(r.images[0].size == (GRID_SIDE, GRID_SIDE) for r in fake.seen)
        assert all("strongly" in " ".join(r.texts) for r in fake.seen)
    stored = saetui_rows(db, "SELECT feature, explanation, model, prompt_version, len(image_ids) FROM explanations")
    top5 = saetui_rows(db, "SELECT feature FROM features WHERE NOT dead ORDER BY frequency DESC, feature LIMIT 5")
    assert sorted(f for f, *_ in stored) == sorted(f for (f,) in top5)
    assert all(text.startswith("Mostly ") and not text.endswith(".") for _, text, *_ in stored)
    assert {(m, v, n) for _, _, m, v, n in stored} == {("fake-vlm", "v1", 9)}
    assert "explained 5 features" in done.stdout and "tokens" in done.stderr


def test_rate_limits_and_faults_are_retried(db: Path) -> None:
    """A 429 with Retry-After, a 500, a malformed body and a too-slow answer are each retried, then answered."""
    from saetui.naming.explain import explain_features

    with FakeVlm() as fake:
        for kind, value in (("429", 1.0), ("500", 0.0), ("malformed", 0.0), ("slow", 3.0)):
            fake.fail_next(kind, value)
        waits: list[float] = []
        endpoint = Endpoint(fake.url, "fake-vlm", timeout=1.0, retries=5, sleep=waits.append)
        state = explain_features(db, endpoint, features=[3])
        assert state.done == 1 and fake.attempts == 5
    assert waits[0] == 1.0  # the Retry-After of the 429
    assert len(Annotations(db).latest_explanations()) == 1


def test_endpoint_errors_are_one_line_and_nothing_is_sent_without_an_endpoint(db: Path, env: dict[str, str]) -> None:
    """No endpoint: usage error before anything is sent; a wrong model: one line from the server's 404."""
    missing = saetui("explain", "--top", "2", "--model", "m", "--db", str(db), env=env)
    assert missing.returncode == 2 and "no endpoint named" in missing.stderr and missing.stderr.count("\n") == 1
    with FakeVlm() as fake:
        wrong = saetui("explain", "--top", "2", "--endpoint", fake.url, "--model", "other", "--db", str(db), env=env)
        assert wrong.returncode == 4 and wrong.stderr.count("\n") == 1
        assert "HTTP 404: model 'other' not found" in wrong.stderr
        fake.fail_next("500")
        fake.fail_next("500")
        broken = saetui(
            "explain", "--top", "1", "--retries", "1", "--endpoint", fake.url, "--model", "fake-vlm", "--db", str(db),
            env=env,
        )  # fmt: skip
        assert broken.returncode == 4 and "failed 2 times; last: HTTP 500" in broken.stderr
    assert not Annotations(db).latest_explanations()


def test_a_killed_explain_resumes_without_asking_again(db: Path, env: dict[str, str]) -> None:
    """kill -9 after two answers; the rerun asks only for the features not stored yet."""
    side = side_path(db)
    with FakeVlm(delay=0.7) as fake:
        args = ["explain", "--top", "5", "--endpoint", fake.url, "--model", "fake-vlm", "--db", str(db)]
        process = subprocess.Popen(
            [str(SAETUI), *args], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline and stored < 2:
            time.sleep(0.05)
            if side.exists():
                with sqlite3.connect(side) as con:
                    stored = con.execute("SELECT count(*) FROM explanations").fetchone()[0]
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        before = {int(f) for (f,) in saetui_rows(db, "SELECT feature FROM explanations")}
        assert 2 <= len(before) < 5
        asked_before = len(fake.seen)
        fake.delay = 0.0
        rerun = saetui(*args, env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert len(fake.seen) - asked_before == 5 - len(before)
        assert f"{len(before)} of 5 features already explained" in rerun.stderr
    after = saetui_rows(db, "SELECT feature, count(*) FROM explanations GROUP BY feature")
    assert len(after) == 5 and all(n == 1 for _, n in after) and before <= {f for f, _ in after}


def test_answers_are_cleaned() -> None:
    """Reasoning blocks, prefixes, quotes and the full stop go; Sort Eval reads the first standalone 1 or 2."""
    assert clean_answer('<think>hmm</think>\nAnswer: "Striped fur."\nmore') == "Striped fur"
    assert parse_choice("Image 3 belongs to feature 2.") == "2"
    assert parse_choice("I think 1") == "1" and parse_choice("neither") is None


# ---- Sort Eval -----------------------------------------------------------------------------------------------


def test_sort_eval_stores_consistent_trials_and_resumes(db: Path, env: dict[str, str]) -> None:
    """Trials are stored with the right answer; the held-out image comes from ranks 10-20 of its feature and is in
    neither grid; a rerun with more trials asks only for the new ones."""
    with FakeVlm() as fake:
        first = saetui(
            "sort-eval", "--trials", "8", "--top", "40", "--endpoint", fake.url, "--model", "fake-vlm", "--db", str(db),
            env=env,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert len(fake.seen) == 8 and all(len(r.images) == 3 for r in fake.seen)
        more = saetui(
            "sort-eval", "--trials", "10", "--top", "40", "--endpoint", fake.url, "--model", "fake-vlm",
            "--db", str(db), env=env,
        )  # fmt: skip
        assert more.returncode == 0 and len(fake.seen) == 10
    trials = saetui_rows(db, "SELECT trial, feature_a, feature_b, held_out, truth, answer, correct FROM sort_eval")
    assert len(trials) == 10
    correct = 0
    for _, a, b, held, truth, answer, right in trials:
        owner, other = (a, b) if truth == "1" else (b, a)
        ranks = dict(saetui_rows(db, f"SELECT image_id, rank FROM feature_images WHERE feature = {owner}"))
        assert HELD_OUT_RANKS[0] <= ranks[held] <= HELD_OUT_RANKS[1]
        grid = {
            i for (i,) in saetui_rows(db, f"SELECT image_id FROM feature_images WHERE feature = {other} AND rank <= 9")
        }
        assert held not in grid
        assert right == (answer == truth)
        correct += right
    assert f"= {correct}/10 trials right" in more.stdout


# ---- scores --------------------------------------------------------------------------------------------------


def test_monosemanticity_known_answers() -> None:
    """Identical top images score 1, mutually orthogonal ones 0, and random ones the brute-force pair mean."""
    same = np.tile(np.array([[0.6, 0.8, 0.0]]), (5, 1))
    assert monosemanticity(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), same) == pytest.approx(1.0, abs=1e-12)
    assert monosemanticity(np.ones(3), np.eye(3)) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    a = rng.uniform(0.1, 3.0, size=7)
    w = a / a.max()
    pairs = [(n, m) for n in range(7) for m in range(n + 1, 7)]
    brute = sum(w[n] * w[m] * e[n] @ e[m] for n, m in pairs) / sum(w[n] * w[m] for n, m in pairs)
    assert monosemanticity(a, e) == pytest.approx(brute, abs=1e-12)  # float64 throughout
    assert monosemanticity(np.array([1.0]), e[:1]) is None


def test_auroc_matches_counting_pairs() -> None:
    """AUROC equals the share of (positive, negative) pairs ordered right, ties half."""
    pos, neg = np.array([0.9, 0.5, 0.5, 0.2]), np.array([0.5, 0.1, 0.3])
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))
    assert auroc(np.array([2.0]), np.array([1.0])) == 1.0


def test_score_with_identical_embeddings_gives_ms_1_for_every_feature(db: Path, env: dict[str, str]) -> None:
    """End to end: with every stored embedding the same vector, each scored feature's MS is 1 (float32 rounding)."""
    con = duckdb.connect(str(db))
    dim = con.execute("SELECT len(embedding) FROM image_embeddings LIMIT 1").fetchone()[0]
    con.execute("UPDATE image_embeddings SET embedding = list_transform(range(?), lambda x: 1.0::FLOAT)", [dim])
    con.close()
    scored = saetui("score", "--db", str(db), env=env)
    assert scored.returncode == 0, scored.stderr
    values = saetui_rows(db, "SELECT value FROM feature_scores WHERE score = 'monosemanticity' AND value IS NOT NULL")
    alive = saetui_rows(db, "SELECT count(*) FROM features WHERE NOT dead AND n_images >= 2")[0][0]
    assert len(values) == alive and all(abs(v - 1.0) < 1e-5 for (v,) in values)


def test_score_explanations_gives_an_auroc_per_explained_feature(db: Path, env: dict[str, str]) -> None:
    """--explanations embeds each explanation with the CLIP text tower and stores an AUROC in [0, 1]."""
    side = Annotations(db)
    for feature in (3, 7):
        side.add_explanation(
            {"feature": feature, "explanation": "purple cross", "model": "m", "prompt_version": "v1",
             "endpoint": "http://x", "image_ids": [], "prompt_tokens": None, "completion_tokens": None,
             "seconds": 0.0, "created_at": "2026-12-01T00:00:00"}
        )  # fmt: skip
    scored = saetui("score", "--features", "3,7", "--explanations", "--db", str(db), env=env)
    assert scored.returncode == 0, scored.stderr
    values = dict(saetui_rows(db, "SELECT feature, value FROM feature_scores WHERE score = 'clip_auroc'"))
    assert set(values) == {3, 7} and all(0.0 <= v <= 1.0 for v in values.values())


# ---- exports -------------------------------------------------------------------------------------------------


class _Images(HTMLParser):
    """Every img src, and any reference that would leave the file."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.sources.append(values.get("src") or "")
        if tag == "script":
            self.scripts += 1
        for key in ("href", "src"):
            if (values.get(key) or "").startswith(("http:", "https:", "//", "file:")):
                self.external.append(values[key] or "")


def test_html_export_is_self_contained_and_shows_notes(db: Path, env: dict[str, str], tmp_path: Path) -> None:
    """Every image the page shows is an embedded data URL that decodes; nothing points outside the file."""
    Annotations(db).set_note(7, "crosses <b>and</b> stripes", ["polysemantic"])
    Annotations(db).set_note(9, "round", [])
    out = tmp_path / "gallery.html"
    done = saetui("export", "-o", str(out), "--images", "6", "--db", str(db), env=env)
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    shown = saetui_rows(db, "SELECT count(*) FROM feature_images WHERE feature IN (7, 9) AND rank <= 6")[0][0]
    assert shown > 0 and len(parser.sources) == shown and not parser.external and parser.scripts == 0
    for src in parser.sources:
        assert src.startswith("data:image/jpeg;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "crosses &lt;b&gt;and&lt;/b&gt; stripes" in page and "polysemantic" in page


def test_json_and_parquet_exports_follow_the_documented_schema(db: Path, env: dict[str, str], tmp_path: Path) -> None:
    """JSON holds the cards with note and explanation; Parquet has exactly the documented columns."""
    side = Annotations(db)
    side.set_note(4, "blue things", ["interesting"])
    side.add_explanation(
        {"feature": 4, "explanation": "blue triangles", "model": "m", "prompt_version": "v1", "endpoint": "http://x",
         "image_ids": [1, 2], "prompt_tokens": 10, "completion_tokens": 2, "seconds": 0.1,
         "created_at": "2026-12-01T00:00:00"}
    )  # fmt: skip
    assert saetui("export", "-o", str(tmp_path / "f.json"), "--db", str(db), env=env).returncode == 0
    document = json.loads((tmp_path / "f.json").read_text())
    assert document["saetui_export"] == 1 and [c["feature"] for c in document["features"]] == [4]
    card = document["features"][0]
    assert card["note"]["tags"] == ["interesting"] and card["explanation"]["explanation"] == "blue triangles"
    assert {"stats", "top_images", "lens", "scores"} <= set(card)
    assert saetui("export", "--top", "10", "-o", str(tmp_path / "f.parquet"), "--db", str(db), env=env).returncode == 0
    table = pq.read_table(tmp_path / "f.parquet")
    assert tuple(table.column_names) == PARQUET_COLUMNS and table.num_rows == 10
    bad = saetui("export", "-o", str(tmp_path / "f.txt"), "--db", str(db), env=env)
    assert bad.returncode == 2 and "unknown export format 'txt'" in bad.stderr


def test_notes_explain_score_and_export_import_no_heavy_library(db: Path, tmp_path: Path) -> None:
    """note, explain (to a server), score (without --explanations) and export never import torch or textual."""
    with FakeVlm() as fake:
        probe = (
            "import json, sys\n"
            "from saetui.commands.main import main\n"
            f"db = {str(db)!r}\n"
            "codes = [main(['note', '3', 'x', '--db', db]), main(['note', '--list', '--db', db]),\n"
            f"         main(['explain', '--features', '3', '--endpoint', {fake.url!r}, '--model', 'fake-vlm',\n"
            "               '--db', db]),\n"
            "         main(['score', '--features', '3', '--db', db]),\n"
            f"         main(['export', '-o', {str(tmp_path / 'x.html')!r}, '--db', db])]\n"
            "heavy = ('torch', 'open_clip', 'textual', 'textual_image', 'ray')\n"
            "print(json.dumps([codes, [m for m in heavy if m in sys.modules]]))\n"
        )
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    codes, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == [0, 0, 0, 0, 0], done.stderr
    assert heavy == []


async def test_a_note_typed_in_the_browser_reaches_query_survives_stats_and_is_exported(
    db: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """The acceptance path: e, type, ctrl+s in `saetui browse`; then `saetui query`, `stats --force`, `export`."""
    from harness.tui import browser, settle
    from saetui.tui.navigation import Location
    from saetui.tui.screens.note_editor import NoteEditor

    app = browser(db, Location("feature", 7))
    async with app.run_test(size=(130, 40)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, NoteEditor)
        await pilot.press(*"purple crosses, any size", "tab", *"interesting")
        await pilot.press("ctrl+s")
        await settle(pilot)
    app.data.close()  # the browser's read-only connection, as `saetui browse` closes it on exit
    query = ["query", "select feature, text, tags from notes", "--format", "json", "--db", str(db)]
    assert json.loads(saetui(*query, env=env).stdout) == [
        {"feature": 7, "text": "purple crosses, any size", "tags": ["interesting"]}
    ]
    assert saetui("stats", "--force", "--db", str(db), env=env).returncode == 0
    assert json.loads(saetui(*query, env=env).stdout)[0]["text"] == "purple crosses, any size"
    out = tmp_path / "notes.html"
    assert saetui("export", "-o", str(out), "--db", str(db), env=env).returncode == 0
    assert "purple crosses, any size" in out.read_text(encoding="utf-8")


def test_concurrent_requests_store_each_feature_once(db: Path) -> None:
    """With three requests in flight every feature is asked once and stored once."""
    from saetui.naming.explain import ExplainOptions, explain_features

    with FakeVlm(delay=0.2) as fake:
        endpoint = Endpoint(fake.url, "fake-vlm")
        state = explain_features(db, endpoint, top=6, options=ExplainOptions(concurrency=3, side=64))
        assert state.done == 6 and len(fake.seen) == 6
        assert all(r.images[0].size == (3 * 64 + 2 * 4,) * 2 for r in fake.seen)
    assert len(Annotations(db).latest_explanations()) == 6


def test_reading_the_side_file_never_writes_it(db: Path) -> None:
    """Queries, the feature card and the list read the side file without changing a byte of it."""
    Annotations(db).set_note(2, "read me", ["todo"])
    side = side_path(db)
    before = (side.read_bytes(), side.stat().st_mtime_ns)
    assert saetui_rows(db, "SELECT text FROM notes") == [("read me",)]
    assert Annotations(db).note(2).text == "read me" and Annotations(db).latest_explanations() == {}
    assert (side.read_bytes(), side.stat().st_mtime_ns) == before


def test_the_side_file_appears_whole(tmp_path: Path) -> None:
    """Readers polling for a side file being created never meet it without its tables; no temporary file stays."""
    db = tmp_path / "fresh.duckdb"
    errors: list[Exception] = []
    seen = threading.Event()

    def read_until_seen() -> None:
        while not seen.is_set():
            if side_path(db).exists():
                try:
                    Annotations(db).notes()
                    Annotations(db).explained("m", "v1")
                except Exception as error:  # noqa: BLE001 - collected for the assertion below
                    errors.append(error)
                seen.set()

    readers = [threading.Thread(target=read_until_seen) for _ in range(2)]
    for reader in readers:
        reader.start()
    Annotations(db).set_note(1, "first note")
    seen.wait(10)
    for reader in readers:
        reader.join(10)
    assert not errors
    assert [n.text for n in Annotations(db).notes()] == ["first note"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_api_writes_notes_and_refuses_a_missing_feature_as_the_cli_does(db: Path) -> None:
    """db.set_note checks the feature with the CLI's own rule: the same one-line error, and nothing written."""
    with open_database(db) as opened:
        width = int(opened.run()["n_features"])
        with pytest.raises(UsageError) as refused:
            opened.set_note(width, "beyond the SAE")
        assert refused.value.one_line() == f"feature {width} does not exist (the SAE has features 0 to {width - 1})"
        opened.set_note(3, "stripes", ["todo"])
    assert [(n.key, n.text, n.tags) for n in Annotations(db).notes()] == [(3, "stripes", ("todo",))]
