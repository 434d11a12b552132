"""Runs in a database: the settings a run records, whether a new run fits the database, and which run to resume."""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from saetui import __version__
from saetui.errors import DataError
from saetui.models.hooks import TOKEN_SETS
from saetui.store.schema import RUN_COLUMNS, CodeLayout

# Settings every run in one database must share: they decide what a stored (feature, value) pair means.
COMPATIBILITY_KEYS = (
    "sae_family",
    "model_id",
    "pretrained",
    "layer",
    "hook",
    "grid_rows",
    "grid_cols",
    "sae_repo",
    "sae_file",
    "d_in",
    "n_features",
    "k",
    "tokens",
    "mean",
    "std",
    "image_size",
    "standardise",
    "normalisation",
    "preprocess_reference",
)
# A run over the same source with these settings is continued instead of starting a new one.
RESUME_KEYS = (*COMPATIBILITY_KEYS, "precision")
# Columns the writer fills itself; the rest come from the caller's settings.
_MANAGED = ("run_id", "status", "started_at", "finished_at", "source", "source_items")
SETTING_KEYS = tuple(name for name in RUN_COLUMNS if name not in _MANAGED)


def utc_now() -> dt.datetime:
    """The current UTC time without a zone, as the TIMESTAMP columns store it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def normalise_settings(settings: Mapping[str, object]) -> dict[str, object]:
    """Check the run settings a caller passes and fill in the versions the store knows itself."""
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise ValueError(f"unknown run settings: {', '.join(unknown)}")
    missing = [key for key in ("n_features", "k", "tokens") if settings.get(key) is None]
    if missing:
        raise ValueError(f"run settings need {', '.join(missing)}")
    for key, least in (("n_features", 1), ("k", 0)):  # k = 0: no bound on the pairs per token
        value = settings[key]
        if not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{key} must be an integer >= {least}, not {value!r}")
    if settings["tokens"] not in TOKEN_SETS:
        raise ValueError(f"tokens must be one of {', '.join(TOKEN_SETS)}, not {settings['tokens']!r}")
    result = {key: value.item() if isinstance(value, np.generic) else value for key, value in settings.items()}
    for key in ("mean", "std"):
        triple = result.get(key)
        if triple is not None:
            if not isinstance(triple, Iterable):
                raise ValueError(f"{key} must be three numbers, not {triple!r}")
            result[key] = [float(x) for x in triple]
    result.setdefault("saetui_version", __version__)
    result.setdefault("duckdb_version", duckdb.__version__)
    return result


def code_layout(settings: Mapping[str, object]) -> CodeLayout:
    """The code layout of normalised run settings."""
    k, n_features = settings["k"], settings["n_features"]
    if not isinstance(k, int) or not isinstance(n_features, int) or not 0 <= k <= n_features:
        raise ValueError(f"k = {k!r} (0: unbounded) and n_features = {n_features!r} do not describe an SAE")
    return CodeLayout(k=k, n_features=n_features)


def check_compatible(con: duckdb.DuckDBPyConnection, db: Path, settings: Mapping[str, object]) -> None:
    """Refuse, in one line, a run whose model, layer, SAE, k, token set or preprocessing differ from the database's."""
    columns = ", ".join(f'"{key}"' for key in COMPATIBILITY_KEYS)
    rows = con.execute(f"SELECT run_id, {columns} FROM runs ORDER BY run_id LIMIT 1").fetchall()
    if not rows:
        return
    run_id, *stored = rows[0]
    old_family = stored[COMPATIBILITY_KEYS.index("sae_family")] or "clip-scope"
    new_family = settings.get("sae_family") or "clip-scope"
    if old_family != new_family:
        raise DataError(
            f"{db} holds codes of a {old_family} SAE and this run's SAE is {new_family}: one database holds one "
            "SAE's codes",
            "index into another --db (saetui compare puts two databases side by side)",
        )
    differences = [
        f"{key} {_show(old)} in the database vs {_show(settings.get(key))} now"
        for key, old in zip(COMPATIBILITY_KEYS, stored, strict=True)
        if old is not None and settings.get(key) is not None and _normal(old) != _normal(settings.get(key))
    ]
    if differences:
        raise DataError(
            f"{db} was indexed with other settings (run {run_id}): {'; '.join(differences)}",
            "use another --db, or --overwrite to replace it",
        )


def find_run(con: duckdb.DuckDBPyConnection, source: str, settings: Mapping[str, object]) -> int | None:
    """The latest run over source with the same settings, or None."""
    columns = ", ".join(f'"{key}"' for key in RESUME_KEYS)
    rows = con.execute(f"SELECT run_id, {columns} FROM runs WHERE source = ? ORDER BY run_id DESC", [source]).fetchall()
    for run_id, *stored in rows:
        if all(_normal(old) == _normal(settings.get(key)) for key, old in zip(RESUME_KEYS, stored, strict=True)):
            return int(run_id)
    return None


def create_run(
    con: duckdb.DuckDBPyConnection, source: str, source_items: int | None, settings: Mapping[str, object]
) -> int:
    """Insert a new running run and return its run_id."""
    next_run = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
    row: dict[str, object] = {
        **settings,
        "run_id": int(next_run),
        "status": "running",
        "started_at": utc_now(),
        "source": source,
        "source_items": source_items,
    }
    names = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", list(row.values()))
    return int(next_run)


def next_image_id(con: duckdb.DuckDBPyConnection) -> int:
    """The id the next stored image gets: ids are dense, one after the largest stored."""
    return int(con.execute("SELECT coalesce(max(image_id), -1) + 1 FROM images").fetchall()[0][0])


def mark_running(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Set a continued run back to running."""
    con.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", [run_id])


def mark_done(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Record that a run went through its whole source."""
    con.execute("UPDATE runs SET status = 'done', finished_at = ? WHERE run_id = ?", [utc_now(), run_id])


def done_keys(con: duckdb.DuckDBPyConnection, source: str) -> frozenset[str]:
    """The item keys of every item of source that any run already stored or skipped."""
    rows = con.execute(
        """SELECT i.item_key FROM images i JOIN runs r USING (run_id) WHERE r.source = ?
           UNION SELECT s.item_key FROM skipped s JOIN runs r USING (run_id) WHERE r.source = ?""",
        [source, source],
    ).fetchall()
    return frozenset(key for (key,) in rows)


def _normal(value: object) -> object:
    """A value in the form both Python settings and DuckDB rows compare equal in."""
    if isinstance(value, (list, tuple)):
        return tuple(float(x) for x in value)
    if isinstance(value, (bool, np.bool_)) or value is None:
        return bool(value) if value is not None else None
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def _show(value: object) -> str:
    """A setting as the refusal message prints it."""
    normal = _normal(value)
    if isinstance(normal, tuple):
        return "[" + ", ".join(f"{x:g}" for x in normal) + "]"
    if isinstance(normal, float):
        return f"{normal:g}"
    return str(normal)


@dataclass(frozen=True)
class TokenGrid:
    """The token layout of a database's runs: token 0 is CLS (or the pooled embedding), then rows x cols patches."""

    rows: int  # 0 for a pooled embedding
    cols: int

    @property
    def n_tokens(self) -> int:
        """Positions per image: CLS plus the patches."""
        return self.rows * self.cols + 1

    def describe(self) -> str:
        """E.g. '7 x 7 patches + CLS' or 'pooled embedding'."""
        return f"{self.rows} x {self.cols} patches + CLS" if self.rows else "one pooled embedding"


def token_grid(con: duckdb.DuckDBPyConnection) -> TokenGrid:
    """The patch grid the database's runs recorded (a schema-2 database: the square its largest token implies)."""
    columns = {row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE runs)").fetchall()}
    if "grid_rows" in columns:
        row = con.execute("SELECT grid_rows, grid_cols FROM runs WHERE grid_rows IS NOT NULL LIMIT 1").fetchall()
        if row:
            return TokenGrid(int(row[0][0]), int(row[0][1]))
    last = con.execute("SELECT coalesce(max(token), 256) FROM token_codes").fetchall()[0][0]
    side = math.isqrt(int(last))
    side = side if side * side == last else 16
    return TokenGrid(side, side)
