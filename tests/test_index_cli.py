"""`saetui index` at the run level: refusal, append, --limit resume, overwrite, fetching, and one-line errors."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import duckdb
import pytest
import torch

from harness.badimages import copy_imagenet_sample
from harness.fakehub import FetchedCache
from saetui.commands.main import main
from saetui.ingest import pipeline


def run_cli(*args: str) -> tuple[int, str]:
    """main(args) in this process: the exit code and stderr."""
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        code = main(list(args))
    return code, buffer.getvalue()


def fetch_all(db: Path, sql: str) -> list[tuple]:
    """Rows of a query on a read-only connection."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are saetui's error lines."""
    return [line for line in stderr.splitlines() if line.startswith("saetui: error:")]


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """stderr ends in exactly one error line, containing every fragment, and shows no traceback."""
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    assert stderr.rstrip().endswith(errors[0])
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two image folders: the first three and the next three ImageNet sample classes."""
    first, second = tmp_path / "first", tmp_path / "second"
    copy_imagenet_sample(tmp_path / "six", wnids=6, split=None)
    classes = sorted((tmp_path / "six").iterdir())
    for target, chosen in ((first, classes[:3]), (second, classes[3:])):
        target.mkdir()
        for folder in chosen:
            folder.rename(target / folder.name)
    return first, second


def test_another_sae_or_token_set_is_refused(hub_in_process: FetchedCache, folders, tmp_path: Path) -> None:
    """A database of layer20 / cls tokens refuses layer11 and --tokens all in one line and stays unchanged."""
    first, _ = folders
    db = tmp_path / "one.duckdb"
    code, stderr = run_cli("index", str(first), "--db", str(db), "--tokens", "cls", "--no-stats")
    assert code == 0, stderr
    before = fetch_all(db, "SELECT image_id, path FROM images ORDER BY ALL")
    code, stderr = run_cli("index", str(first), "--db", str(db), "--tokens", "cls", "--sae", "layer11", "--no-stats")
    assert code == 5
    assert_one_line_error(stderr, "was indexed with other settings", "layer 20 in the database vs 11 now")
    code, stderr = run_cli("index", str(first), "--db", str(db), "--no-stats")
    assert code == 5
    assert_one_line_error(stderr, "tokens cls in the database vs all now")
    assert fetch_all(db, "SELECT image_id, path FROM images ORDER BY ALL") == before
    assert fetch_all(db, "SELECT count(*) FROM runs") == [(1,)]


def test_second_folder_appends(hub_in_process: FetchedCache, folders, tmp_path: Path) -> None:
    """Indexing another folder into the database adds a run and its images after the first run's ids."""
    first, second = folders
    db = tmp_path / "both.duckdb"
    for folder in (first, second):
        code, stderr = run_cli("index", str(folder), "--db", str(db), "--tokens", "cls", "--no-stats")
        assert code == 0, stderr
    images = fetch_all(db, "SELECT image_id, run_id, path FROM images ORDER BY image_id")
    assert [run for _, run, _ in images] == [1, 1, 1, 2, 2, 2]
    assert [Path(path).parent.parent for _, _, path in images] == [first] * 3 + [second] * 3
    assert len({image_id for image_id, _, _ in images}) == 6
    assert fetch_all(db, "SELECT count(*), count(DISTINCT image_id) FROM activations") == [(6 * 32, 6)]
    assert fetch_all(db, "SELECT source, status FROM runs ORDER BY run_id") == [
        (str(first), "done"),
        (str(second), "done"),
    ]


def test_rerun_over_a_changed_folder_indexes_new_files_once(
    hub_in_process: FetchedCache, folders, tmp_path: Path
) -> None:
    """A file added that sorts first is indexed, no file is stored twice, and a removed file is reported missing."""
    first, _ = folders
    db = tmp_path / "changed.duckdb"
    common = ("--tokens", "cls", "--batch-size", "2", "--no-stats")
    code, stderr = run_cli("index", str(first), "--db", str(db), *common)
    assert code == 0, stderr
    before = dict(fetch_all(db, "SELECT path, image_id FROM images"))
    classes = sorted(first.iterdir())
    added = first / "aaa-new" / "first.jpg"
    added.parent.mkdir()
    next(classes[0].iterdir()).rename(added.parent / "moved-aside.jpg")  # old path gone, same bytes under a new one
    (added.parent / "moved-aside.jpg").rename(added)
    code, stderr = run_cli("index", str(first), "--db", str(db), *common)
    assert code == 0, stderr
    assert "continuing run 1: 1 of 3 items to index" in stderr
    assert "source: 1 new, 2 already done, 1 missing (stored earlier, no longer in the source" in stderr
    after = fetch_all(db, "SELECT path, image_id, label FROM images ORDER BY image_id")
    paths = [path for path, _, _ in after]
    assert len(paths) == len(set(paths)) == 4
    assert {path: image_id for path, image_id, _ in after if path in before} == before  # old rows untouched
    assert after[-1] == (str(added), max(before.values()) + 1, "aaa-new")
    assert fetch_all(db, "SELECT count(DISTINCT image_id) FROM activations") == [(4,)]
    code, stderr = run_cli("index", str(first), "--db", str(db), *common)
    assert code == 0 and "0 of 3 items to index" in stderr


def test_limit_then_more_equals_one_run_and_a_rerun_does_nothing(
    hub_in_process: FetchedCache, folders, tmp_path: Path
) -> None:
    """--limit 2 then --limit 5 stores what one --limit 5 run stores; running it again adds nothing."""
    first, second = folders
    source = first.parent / "five"
    source.mkdir()
    for folder in [*sorted(first.iterdir()), *sorted(second.iterdir())[:2]]:
        folder.rename(source / folder.name)
    stepwise, direct = tmp_path / "stepwise.duckdb", tmp_path / "direct.duckdb"
    common = ("--tokens", "cls", "--batch-size", "2", "--no-stats")
    for limit in ("2", "5"):
        code, stderr = run_cli("index", str(source), "--db", str(stepwise), "--limit", limit, *common)
        assert code == 0, stderr
    assert "continuing run 1: 3 of 5 items to index" in stderr
    assert "source: 3 new, 2 already done, 0 missing" in stderr
    code, stderr = run_cli("index", str(source), "--db", str(direct), "--limit", "5", *common)
    assert code == 0, stderr
    query = "SELECT image_id, path, token, feature FROM activations JOIN images USING (image_id) ORDER BY ALL"
    assert fetch_all(stepwise, query) == fetch_all(direct, query)
    assert len(fetch_all(direct, "SELECT * FROM images")) == 5
    code, stderr = run_cli("index", str(source), "--db", str(stepwise), "--limit", "5", *common)
    assert code == 0, stderr
    assert "0 of 5 items to index" in stderr and "0 images indexed, 0 skipped" in stderr
    assert fetch_all(stepwise, query) == fetch_all(direct, query)


def test_overwrite_starts_a_new_database(hub_in_process: FetchedCache, folders, tmp_path: Path) -> None:
    """--overwrite replaces a database indexed with other settings."""
    first, second = folders
    db = tmp_path / "over.duckdb"
    assert run_cli("index", str(first), "--db", str(db), "--tokens", "cls", "--no-stats")[0] == 0
    code, stderr = run_cli(
        "index", str(second), "--db", str(db), "--tokens", "patches", "--limit", "1", "--overwrite", "--no-stats"
    )
    assert code == 0, stderr
    assert fetch_all(db, "SELECT count(*), min(token), max(token) FROM token_errors") == [(256, 1, 256)]
    assert fetch_all(db, "SELECT count(*) FROM runs") == [(1,)]


def test_ctrl_c_keeps_whole_batches_and_the_run_resumes(
    hub_in_process: FetchedCache, folders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT during the second batch: exit 130, a summary, batch one kept; a rerun completes the run."""
    first, _ = folders
    db, direct = tmp_path / "stopped.duckdb", tmp_path / "direct.duckdb"
    args = ("--tokens", "cls", "--batch-size", "1", "--no-stats")
    original = pipeline.Encoder.start
    calls = [0]

    def interrupted_on_second_batch(self: pipeline.Encoder, pixels: torch.Tensor) -> pipeline.PendingCodes:
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, pixels)

    monkeypatch.setattr(pipeline.Encoder, "start", interrupted_on_second_batch)
    try:
        code, stderr = run_cli("index", str(first), "--db", str(db), *args)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped saetui index")
    assert code == 130
    assert "index interrupted: 1 image indexed, 0 skipped" in stderr
    assert "whole batches were kept: run the same command again to continue" in stderr
    assert stderr.rstrip().endswith("saetui: error: interrupted")  # exit 130 says so in its one line
    assert fetch_all(db, "SELECT count(*), min(source_row) FROM images") == [(1, 0)]
    assert fetch_all(db, "SELECT status FROM runs") == [("running",)]
    monkeypatch.setattr(pipeline.Encoder, "start", original)
    code, stderr = run_cli("index", str(first), "--db", str(db), *args)
    assert code == 0 and "continuing run 1: 2 of 3 items to index" in stderr
    assert run_cli("index", str(first), "--db", str(direct), *args)[0] == 0
    query = "SELECT image_id, path, token, feature FROM activations JOIN images USING (image_id) ORDER BY ALL"
    assert fetch_all(db, query) == fetch_all(direct, query)
    assert fetch_all(db, "SELECT status FROM runs") == [("done",)]


def test_locked_database_is_one_line_exit_6(hub_in_process: FetchedCache, folders, tmp_path: Path) -> None:
    """A database held open for writing by another process: exit 6 and one line saying so."""
    first, _ = folders
    db = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(120)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        code, stderr = run_cli("index", str(first), "--db", str(db), "--no-stats")
    finally:
        holder.kill()
        holder.wait()
    assert code == 6
    assert_one_line_error(stderr, str(db), "open in another process")


def test_source_errors_are_one_line(tmp_path: Path) -> None:
    """An empty folder (exit 5), a missing source (exit 3) and an unknown SAE (exit 2) each fail in one line."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stderr = run_cli("index", str(empty), "--db", str(tmp_path / "x.duckdb"))
    assert code == 5
    assert_one_line_error(stderr, "no images found in")
    code, stderr = run_cli("index", str(tmp_path / "missing"), "--db", str(tmp_path / "x.duckdb"))
    assert code == 3
    assert_one_line_error(stderr, "source not found")
    code, stderr = run_cli("index", str(empty), "--sae", "layer99")
    assert code == 2
    assert_one_line_error(stderr, "unknown SAE 'layer99'")
    code, stderr = run_cli("index", str(empty), "--batch-size", "0")
    assert code == 2
    assert_one_line_error(stderr, "--batch-size must be at least 1")
    assert not (tmp_path / "x.duckdb").exists()


def test_fetches_a_missing_sae_through_the_hub(hub_env: dict[str, str], folders, tmp_path: Path, run_saetui) -> None:
    """With an empty cache, `saetui index` downloads the SAE and its model first, then indexes."""
    first, _ = folders
    db = tmp_path / "fetched.duckdb"
    done = run_saetui(
        "index", str(first), "--db", str(db), "--tokens", "cls", "--limit", "2", "--no-stats", env=hub_env
    )
    assert done.returncode == 0, done.stderr
    assert list(Path(hub_env["SAETUI_CACHE"]).rglob("20_resid/1200013184.pt"))
    assert list(Path(hub_env["SAETUI_CACHE"]).rglob("open_clip_model.safetensors"))
    assert fetch_all(db, "SELECT count(*) FROM images") == [(2,)]
    assert done.stdout == ""


def test_index_and_stats_work_from_the_cache_when_the_hub_is_down(
    hub_in_process: FetchedCache, folders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file cached and nothing listening at HF_ENDPOINT: index and stats run, saying the cache is used."""
    from huggingface_hub import constants

    closed = "http://127.0.0.1:9"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", closed + "/{repo_id}/resolve/{revision}/{filename}")
    first, _ = folders
    db = tmp_path / "down.duckdb"
    code, stderr = run_cli("index", str(first), "--db", str(db), "--tokens", "cls", "--no-stats")
    assert code == 0, stderr
    assert f"cannot reach {closed}: using the cached files of layer20" in stderr
    assert run_cli("stats", "--db", str(db))[0] == 0
    assert fetch_all(db, "SELECT count(*) FROM logit_lens WHERE rank = 1") == [(512,)]
