"""`compute_stats`: build every derived table of a database in one go, idempotently.

The derived tables are recomputed from `images`, `activations` and `token_errors` whenever those changed (an
append, a resumed index) or the options did; a rerun on unchanged data returns at once. Everything is computed
into temporary tables first and swapped in by one transaction, so readers never see half-built statistics and
a killed run leaves the previous ones intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from saetui import __version__
from saetui.defaults import scan_threads
from saetui.errors import NotFoundError
from saetui.paths import cache_dir
from saetui.stats.model_steps import model_steps
from saetui.stats.options import StatsOptions
from saetui.stats.run_info import RunInfo, SaeFiles, cached_sae_files, read_run
from saetui.stats.scan import scan_codes
from saetui.stats.tables import write_tables
from saetui.stats.token_errors import image_errors, position_errors, token_variance
from saetui.stats.tokens import image_chunks
from saetui.store.connection import connect, refuse_folder
from saetui.store.runs import token_grid

Progress = Callable[[str, int, int], None]
FINGERPRINT_EXCLUDES = ("chunk_images",)
MEMORY_LIMIT_FRACTION = 0.3  # DuckDB's share of RAM during stats (the numpy passes need the rest)


def _total_memory() -> int:
    """Physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class StatsSummary:
    """What a compute_stats call did."""

    computed: bool  # False when the tables were already up to date
    n_images: int
    n_tokens: int
    n_features: int
    alive: int
    seconds: float
    lens: bool
    neighbours: bool


def stderr_progress(stage: str, done: int, total: int) -> None:
    """Default progress: one line per stage step on stderr."""
    sys.stderr.write(f"stats: {stage} {done}/{total}\n")
    sys.stderr.flush()


def _data_fingerprint(
    con: duckdb.DuckDBPyConnection, run: RunInfo, options: StatsOptions, sae_files: SaeFiles | None
) -> str:
    """A hash of what the derived tables depend on: the indexed data, the SAE (and its files) and the options."""
    images = con.execute(
        "SELECT count(*), coalesce(sum(image_id), 0), coalesce(max(image_id), -1) FROM images"
    ).fetchall()[0]
    tokens = con.execute("SELECT count(*) FROM token_errors").fetchall()[0]
    opts = {k: v for k, v in options.as_dict().items() if k not in FINGERPRINT_EXCLUDES}
    files = None if sae_files is None else sae_files.identity()
    payload = [list(images), list(tokens), asdict(run), opts, files, __version__]
    return hashlib.sha256(json.dumps(payload, default=str, sort_keys=True).encode()).hexdigest()[:32]


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    """The fingerprint recorded by the last successful stats run, if any."""
    try:
        rows = con.execute("SELECT fingerprint FROM stats_info").fetchall()
    except duckdb.CatalogException:
        return None
    return rows[0][0] if rows else None


@contextmanager
def open_for_writing(db_path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection to an existing database (a lock held elsewhere is a DatabaseLockedError)."""
    path = refuse_folder(db_path)
    if not path.is_file():
        raise NotFoundError(f"database {path} does not exist", "index images first: saetui index SOURCE --db PATH")
    con = connect(path, read_only=False)  # without DuckDB's progress bar (connection.quiet)
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT_FRACTION * _total_memory() / 2**30:.1f}GiB'")
    try:
        yield con
    finally:
        con.close()


def compute_stats(
    db_path: str | Path,
    options: StatsOptions | None = None,
    *,
    cache: str | Path | None = None,
    sae_files: SaeFiles | None = None,
    force: bool = False,
    device: str = "cpu",
    progress: Progress | None = stderr_progress,
    threads: int | None = None,
) -> StatsSummary:
    """(Re)compute every derived table of the database at db_path; a no-op when nothing changed.

    sae_files overrides where the checkpoint and model come from (default: the run's files in the hub cache);
    threads splits the scans over the codes by image range (default: CPU cores, at most 8; same result).
    """
    options = options or StatsOptions()
    started = time.perf_counter()
    cache_root = cache_dir(cache)
    with open_for_writing(db_path) as con:
        run = read_run(con)
        if sae_files is None:
            try:
                sae_files = cached_sae_files(run, cache)
            except NotFoundError:
                if options.lens:
                    raise
                sae_files = None  # without the lens, missing files only cost the similar-direction lists
        fingerprint = _data_fingerprint(con, run, options, sae_files)
        n_images = int(con.execute("SELECT count(*) FROM images").fetchall()[0][0])
        n_tokens = int(con.execute("SELECT count(*) FROM token_errors").fetchall()[0][0])
        if not force and fingerprint == _stored_fingerprint(con):
            alive = int(con.execute("SELECT count(*) FROM features WHERE NOT dead").fetchall()[0][0])
            info = con.execute("SELECT lens_label_source, decoder_rows FROM stats_info").fetchall()[0]
            return StatsSummary(
                False, n_images, n_tokens, run.n_features, alive, 0.0, info[0] is not None, bool(info[1])
            )
        chunks = image_chunks(con, options.chunk_images)
        scan_codes(con, chunks, run.n_features, options, progress, threads or scan_threads())
        variance, _ = token_variance(con)
        position_errors(con, token_grid(con), variance)
        image_errors(con, variance)
        mean_sse, mean_ev = con.execute(
            "SELECT avg(sse), avg(1 - sse / total_ss) FILTER (WHERE total_ss > 0) FROM token_errors"
        ).fetchall()[0]
        reconstruction = {
            "mean_sse": mean_sse,
            "explained_variance": mean_ev,
            "token_variance": variance,
            "nmse": mean_sse / variance if variance and mean_sse is not None else None,
        }
        outputs = model_steps(con, sae_files, run, options, cache_root, device, progress)
        write_tables(con, run, options, n_images, n_tokens, outputs, reconstruction, fingerprint, started)
        alive = int(con.execute("SELECT count(*) FROM features WHERE NOT dead").fetchall()[0][0])
    return StatsSummary(
        True,
        n_images,
        n_tokens,
        run.n_features,
        alive,
        time.perf_counter() - started,
        outputs.label_source is not None,
        outputs.decoder_rows is not None,
    )
