"""`saetui index` survives SIGKILL at any moment and resumes to exactly the uninterrupted result, single-file and
`--live` (sharded, on two commit lanes) alike; a `--live` run is read by `saetui query` while it grows.

The killed runs are real `saetui` processes talking to the fake hub. A run is killed only after it has
committed at least one batch: the test watches the database's write-ahead log, which grows by one commit per
batch (the writer checkpoints only at the end of these small runs), or for `--live` the published shards, and
kills after a random number of commits plus a random delay, so kills land inside compute, inside a transaction (or
a shard being written) and between batches.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.badimages import copy_imagenet_sample
from harness.fakehub import FetchedCache
from harness.tables import saetui_rows
from saetui.commands.main import main
from saetui.store.shards import published, shard_dir

ARGS = ("--batch-size", "2", "--commit-every", "2", "--workers", "1", "--no-stats")
LIVE = ("--live", "--writers", "2")  # shards written on two commit lanes, published in order
N_GOOD = 40
# Tables compared between the resumed and the uninterrupted database (timestamps and run times left out).
EXACT = {
    "images": "SELECT image_id, path, label, width, height, content_hash, source_row, run_id, thumbnail "
    "FROM images ORDER BY image_id",
    "skipped": "SELECT path, reason, source_row, run_id FROM skipped ORDER BY source_row",
    "pairs": "SELECT image_id, token, feature FROM activations ORDER BY ALL",
    "tokens": "SELECT image_id, token FROM token_errors ORDER BY ALL",
    "runs": "SELECT run_id, status, source, source_items, model_id, layer, sae_file, sae_revision, k, tokens, "
    "precision, batch_size, mean, std FROM runs ORDER BY run_id",
}
FLOATS = {
    "values": "SELECT value FROM activations ORDER BY image_id, token, feature",
    "errors": "SELECT sse, total_ss FROM token_errors ORDER BY image_id, token",
}


def saetui_binary() -> Path:
    """The saetui console script of the environment running the tests."""
    return Path(sys.executable).with_name("saetui")


def make_source(root: Path) -> Path:
    """N_GOOD ImageNet images (one class folder each) and two files that must be skipped."""
    copy_imagenet_sample(root, wnids=N_GOOD, split=None)
    (root / "n99999999").mkdir()
    (root / "n99999999" / "empty.jpg").write_bytes(b"")
    (root / "zz_notes.jpg").write_text("not an image\n")
    return root


def stored_items(db: Path) -> int:
    """Images plus skipped items committed so far (0 when the database does not exist yet)."""
    if not db.exists():
        return 0
    return saetui_rows(db, "SELECT (SELECT count(*) FROM images) + (SELECT count(*) FROM skipped)")[0][0]


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll condition() every 5 ms until it holds, failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def commits_seen(db: Path, live: bool) -> int:
    """A number that grows with every commit: the write-ahead log's size, or the published shards of a live run."""
    if live:
        return len(published(db))
    wal = Path(f"{db}.wal")
    return wal.stat().st_size if wal.exists() else 0


def kill_midway(source: Path, db: Path, env: dict[str, str], log: Path, rng: random.Random, live: bool) -> int:
    """Start `saetui index`, let it commit 1-3 batches, wait a random moment, SIGKILL it; returns the exit code."""
    with open(log, "w") as errors:
        process = subprocess.Popen(
            [str(saetui_binary()), "index", str(source), "--db", str(db), *ARGS, *(LIVE if live else ())],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            wait_for(lambda: " run 1: " in log.read_text() or process.poll() is not None, 120, "the run to start")
            sizes = [commits_seen(db, live)]
            commits = rng.randint(1, 3)

            def committed() -> bool:
                size = commits_seen(db, live)
                if size != sizes[-1]:
                    sizes.append(size)
                return len(sizes) > commits or process.poll() is not None

            wait_for(committed, 120, "a batch to be committed")
            time.sleep(rng.uniform(0, 0.15))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            return process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("live", [False, True], ids=["single-file", "live"])
def test_kills_then_resume_give_the_uninterrupted_database(
    hub_in_process: FetchedCache, tmp_path: Path, live: bool
) -> None:
    """SIGKILL at three random moments, resuming each time: the same rows as one uninterrupted run.

    Runs four `saetui` processes (each pays torch/open_clip start-up), so it takes tens of seconds.
    """
    source = make_source(tmp_path / "source")
    total = N_GOOD + 2
    reference = tmp_path / "reference.duckdb"
    assert main(["index", str(source), "--db", str(reference), *ARGS]) == 0
    assert stored_items(reference) == total

    db = tmp_path / "killed.duckdb"
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    progress = [0]
    for attempt in range(3):
        log = tmp_path / f"attempt{attempt}.log"
        code = kill_midway(source, db, hub_in_process.env, log, rng, live)
        stored = stored_items(db)
        text = log.read_text()
        assert progress[-1] < stored < total, (attempt, code, stored, text)
        assert code == -signal.SIGKILL, text
        if attempt:
            assert "continuing run 1:" in text
        progress.append(stored)

    done = subprocess.run(
        [str(saetui_binary()), "index", str(source), "--db", str(db), *ARGS, *(LIVE if live else ())],
        env=hub_in_process.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"source: {total - progress[-1]} new, {progress[-1]} already done, 0 missing" in done.stderr
    for name, sql in EXACT.items():
        assert saetui_rows(db, sql) == saetui_rows(reference, sql), name
    for name, sql in FLOATS.items():
        got, want = np.array(saetui_rows(db, sql)), np.array(saetui_rows(reference, sql))
        assert got.shape == want.shape and np.allclose(got, want, rtol=1e-6, atol=1e-6), name
    moments = "SELECT sum(tokens), sum(sum_sq) FROM batch_moments"
    (tokens, sum_sq), (ref_tokens, ref_sum_sq) = saetui_rows(db, moments)[0], saetui_rows(reference, moments)[0]
    assert tokens == ref_tokens and sum_sq == pytest.approx(ref_sum_sq, rel=1e-6)
    assert not published(db) and not shard_dir(db).exists()  # the finished run merged its shards: one file again


def test_a_live_index_is_readable_while_it_grows(hub_in_process: FetchedCache, tmp_path: Path) -> None:
    """While `index --live` runs, `saetui query` succeeds and sees a growing image count; the end is complete."""
    source = make_source(tmp_path / "source")
    db = tmp_path / "live.duckdb"
    query = [str(saetui_binary()), "query", "SELECT count(*) AS n FROM images", "--db", str(db), "--format", "csv"]
    counts: list[int] = []
    with open(tmp_path / "index.log", "w") as errors:
        process = subprocess.Popen(
            [str(saetui_binary()), "index", str(source), "--db", str(db), *ARGS, "--live"],
            env=hub_in_process.env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            while process.poll() is None:
                done = subprocess.run(query, env=hub_in_process.env, capture_output=True, text=True, check=False)
                if done.returncode == 0:
                    counts.append(int(done.stdout.split()[-1]))
                else:  # only before the database exists, or while the writer starts or merges at the end
                    assert done.returncode in (3, 6), done.stderr
            assert process.wait(timeout=300) == 0, (tmp_path / "index.log").read_text()
        finally:
            if process.poll() is None:
                process.kill()
    final = subprocess.run(query, env=hub_in_process.env, capture_output=True, text=True, check=True)
    assert int(final.stdout.split()[-1]) == N_GOOD
    growing = [n for n in counts if 0 < n < N_GOOD]
    assert counts == sorted(counts) and len(set(growing)) >= 2, counts
