"""The final swap: every derived table created from the temp tables of one stats run, in one transaction."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import duckdb

from saetui import __version__
from saetui.stats.model_steps import ModelOutputs
from saetui.stats.options import StatsOptions
from saetui.stats.run_info import RunInfo


def write_tables(
    con: duckdb.DuckDBPyConnection,
    run: RunInfo,
    options: StatsOptions,
    n_images: int,
    n_tokens: int,
    outputs: ModelOutputs,
    reconstruction: dict[str, float | None],
    fingerprint: str,
    started: float,
) -> None:
    """Swap every derived table in with one transaction."""
    have_lens = outputs.label_source is not None
    lens_join = (
        "LEFT JOIN (SELECT feature, label AS lens_label, score AS lens_score FROM _lens WHERE rank = 1) l "
        "ON l.feature = f.feature"
        if have_lens
        else ""
    )
    lens_cols = "l.lens_label, l.lens_score" if have_lens else "NULL::VARCHAR AS lens_label, NULL::DOUBLE AS lens_score"
    info: dict[str, tuple[str, object]] = {
        "computed_at": ("TIMESTAMP", datetime.now(UTC).replace(tzinfo=None)),
        "saetui_version": ("VARCHAR", __version__),
        "fingerprint": ("VARCHAR", fingerprint),
        "n_images": ("BIGINT", n_images),
        "n_tokens": ("BIGINT", n_tokens),
        "n_features": ("INTEGER", run.n_features),
        "image_tokens": ("VARCHAR", options.image_tokens),
        "top_images": ("INTEGER", options.top_images),
        "entropy_top": ("INTEGER", options.entropy_top),
        "entropy_min_labelled": ("INTEGER", options.entropy_min_labelled),
        "lens_direction": ("VARCHAR", options.lens_direction if have_lens else None),
        "lens_ln": ("BOOLEAN", options.lens_ln if have_lens else None),
        "lens_templates": ("VARCHAR", options.lens_templates if have_lens else None),
        "lens_label_source": ("VARCHAR", outputs.label_source),
        "coactivation_sample": ("INTEGER", options.coactivation_sample),
        "coactivation_top": ("INTEGER", options.coactivation_top),
        "histogram_bins_per_octave": ("INTEGER", options.histogram_bins_per_octave),
        "decoder_rows": ("VARCHAR", outputs.decoder_rows),
        "neighbours": ("INTEGER", outputs.neighbours),
        "lens_embeddings": ("VARCHAR", outputs.lens_embeddings),
        "model_dir": ("VARCHAR", outputs.model_dir),
        "mean_sse": ("DOUBLE", reconstruction["mean_sse"]),
        "explained_variance": ("DOUBLE", reconstruction["explained_variance"]),
        "token_variance": ("DOUBLE", reconstruction["token_variance"]),
        "nmse": ("DOUBLE", reconstruction["nmse"]),
        "seconds": ("DOUBLE", round(time.perf_counter() - started, 3)),
        "options": ("VARCHAR", json.dumps(options.as_dict(), sort_keys=True)),
    }
    placeholders = ", ".join(f"${name}::{kind} AS {name}" for name, (kind, _) in info.items())
    values = {name: value for name, (_, value) in info.items()}
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"""CREATE OR REPLACE TABLE features AS
            SELECT f.feature, f.n_tokens, f.n_images,
                   f.n_tokens / greatest($n_tokens, 1)::DOUBLE AS frequency,
                   f.n_images / greatest($n_images, 1)::DOUBLE AS image_frequency,
                   CASE WHEN f.n_tokens > 0 THEN f.sum_value / f.n_tokens END AS mean_value,
                   f.max_value, f.label_entropy, f.label_entropy_norm, f.top_label, f.top_label_share,
                   f.n_labels, f.n_labelled, {lens_cols}, f.n_tokens = 0 AS dead
            FROM _features f {lens_join}
            ORDER BY f.feature""",
            {"n_tokens": n_tokens, "n_images": n_images},
        )
        con.execute(
            "CREATE OR REPLACE TABLE feature_images AS SELECT feature, rank, image_id, value FROM _feature_images "
            "ORDER BY feature, rank"
        )
        con.execute("CREATE OR REPLACE TABLE feature_histograms AS SELECT * FROM _histograms ORDER BY feature, bin")
        con.execute(
            """CREATE OR REPLACE TABLE coactivations AS
            SELECT c.feature, c.other, c.count, c.p_given, c.jaccard, c.rank_count, c.rank_jaccard, c.exact,
                   c.sample_tokens, f.top_label AS other_label
            FROM _coactivations c LEFT JOIN _features f ON f.feature = c.other
            ORDER BY c.feature, c.rank_count = 0, c.rank_count, c.rank_jaccard"""
        )
        con.execute(
            """CREATE OR REPLACE TABLE feature_labels AS
            SELECT feature, label, share, n_images FROM _feature_labels ORDER BY feature, share DESC, label"""
        )
        if outputs.neighbours:
            con.execute(
                """CREATE OR REPLACE TABLE feature_neighbours AS
                SELECT n.feature, n.rank, n.other, n.cosine, f.top_label AS other_label
                FROM _neighbours n LEFT JOIN _features f ON f.feature = n.other ORDER BY n.feature, n.rank"""
            )
        else:
            con.execute(
                "CREATE OR REPLACE TABLE feature_neighbours (feature INTEGER, rank SMALLINT, other INTEGER, "
                "cosine DOUBLE, other_label VARCHAR)"
            )
        if have_lens:
            con.execute("CREATE OR REPLACE TABLE logit_lens AS SELECT * FROM _lens ORDER BY feature, rank")
        else:
            con.execute(
                "CREATE OR REPLACE TABLE logit_lens (feature INTEGER, rank SMALLINT, label VARCHAR, "
                "score DOUBLE, prob DOUBLE)"
            )
        con.execute("CREATE OR REPLACE TABLE position_errors AS SELECT * FROM _position_errors ORDER BY token")
        con.execute("CREATE OR REPLACE TABLE image_errors AS SELECT * FROM _image_errors ORDER BY image_id")
        con.execute(f"CREATE OR REPLACE TABLE stats_info AS SELECT {placeholders}", values)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
