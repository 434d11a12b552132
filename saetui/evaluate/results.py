"""Writing an eval report into a DuckDB file: `eval_results` (appended) and `neuron_alignment` (replaced).

The file may be a saetui index database or a file of its own (created when missing). Only these two tables are
touched, in one transaction, so an index database keeps its schema. An index database made with another SAE
checkpoint is refused: its feature ids would not be the alignment's.

eval_results has one row per figure: eval_id (one per `saetui eval --db` run), evaluated_at, the SAE (sae_name,
sae_repo, sae_file, layer), the set (source, images, label_set, labels, batch_size, precision, device), then
section (downstream | reconstruction | alignment), condition (original | reconstruction |
reconstruction+error; raw | standardised; features | random directions), metric, value, and reference (the hub
README's figure where one exists). neuron_alignment holds the latest eval's per-feature alignment.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from saetui.errors import NotFoundError, UsageError
from saetui.evaluate.reconstruction import METRICS
from saetui.evaluate.runner import EvalReport
from saetui.store.connection import connect
from saetui.store.runs import utc_now

EVAL_RESULTS_DDL = """CREATE TABLE IF NOT EXISTS eval_results (
  eval_id INTEGER NOT NULL, evaluated_at TIMESTAMP NOT NULL, sae_name VARCHAR, sae_repo VARCHAR, sae_file VARCHAR,
  layer INTEGER, source VARCHAR, images BIGINT, label_set VARCHAR, labels INTEGER, batch_size INTEGER,
  precision VARCHAR, device VARCHAR, section VARCHAR NOT NULL, condition VARCHAR NOT NULL, metric VARCHAR NOT NULL,
  value DOUBLE, reference DOUBLE)"""

Row = tuple[str, str, str, float | None, float | None]


def result_rows(report: EvalReport) -> list[Row]:
    """(section, condition, metric, value, reference) of every figure of the report."""
    rows: list[Row] = []
    for condition, scores in report.downstream.scores.items():
        for metric in ("loss", "top1", "top5", "mean_cosine_to_original", "max_abs_diff_to_original"):
            rows.append(("downstream", condition, metric, getattr(scores, metric), None))
    reference = report.reference or {}
    for mode, result in report.reconstruction.items():
        rows.append(("reconstruction", mode, "tokens", float(result.tokens), None))
        for metric in METRICS:
            ref = reference.get(metric) if mode == "standardised" else None
            rows.append(("reconstruction", mode, metric, result.as_dict()[metric], ref))
    for condition, summary in (
        ("features", report.alignment.summary),
        ("random directions", report.alignment.baseline),
    ):
        for metric, value in summary.items():
            rows.append(("alignment", condition, metric, value, None))
    return rows


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the open database has a table or view called name."""
    query = "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = ?"
    return bool(con.execute(query, [name]).fetchall()[0][0])


def _check_index_sae(con: duckdb.DuckDBPyConnection, repo: str, file: str, path: Path) -> None:
    """Refuse an index database whose runs were made with another SAE checkpoint."""
    if not _has_table(con, "runs"):
        return
    rows = con.execute("SELECT sae_repo, sae_file FROM runs ORDER BY run_id DESC LIMIT 1").fetchall()
    if rows and tuple(rows[0]) != (repo, file):
        raise UsageError(
            f"{path} indexes {rows[0][0]} {rows[0][1]}, not {repo} {file}",
            "pass the SAE the database was indexed with, or another --db",
        )


def check_target(db_path: str | os.PathLike[str], repo: str, file: str) -> None:
    """Before a long evaluation: fail now if the results could not be written to db_path (locked, foreign SAE)."""
    path = Path(db_path)
    if not path.exists():
        if not path.parent.is_dir():
            raise NotFoundError(f"folder {path.parent} does not exist", "create it or choose another --db")
        return
    con = connect(path, read_only=True)
    try:
        _check_index_sae(con, repo, file, path)
    finally:
        con.close()


def write_results(db_path: str | os.PathLike[str], report: EvalReport) -> int:
    """Append the report to eval_results and replace neuron_alignment in one transaction; returns the eval_id."""
    path = Path(db_path)
    con = connect(path, read_only=False)
    try:
        _check_index_sae(con, str(report.sae["repo"]), str(report.sae["file"]), path)
        down = report.downstream
        context = [
            report.sae["name"],
            report.sae["repo"],
            report.sae["file"],
            report.sae["layer"],
            report.source,
            report.images,
            down.label_set,
            down.n_labels,
            report.settings["batch_size"],
            report.settings["precision"],
            report.settings["device"],
        ]
        alignment = pa.table(
            {
                "feature": pa.array(range(len(report.alignment.neuron)), pa.int32()),
                "max_abs_cosine": pa.array(report.alignment.max_abs_cosine, pa.float32()),
                "neuron": pa.array(report.alignment.neuron, pa.int32()),
            }
        )
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(EVAL_RESULTS_DDL)
            eval_id = int(con.execute("SELECT coalesce(max(eval_id), 0) + 1 FROM eval_results").fetchall()[0][0])
            now = utc_now()
            con.executemany(
                "INSERT INTO eval_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[eval_id, now, *context, *row] for row in result_rows(report)],
            )
            con.register("_neuron_alignment", alignment)
            con.execute(
                "CREATE OR REPLACE TABLE neuron_alignment AS SELECT feature, max_abs_cosine, neuron, "
                "?::INTEGER AS eval_id FROM _neuron_alignment ORDER BY feature",
                [eval_id],
            )
            con.unregister("_neuron_alignment")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return eval_id
    finally:
        con.close()
