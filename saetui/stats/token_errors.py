"""Reconstruction summaries from `token_errors`: error per token position and per image.

Per token, sse = sum over dims of (x - x_hat)^2 and total_ss = sum over dims of (x_d - mean over dims of x)^2;
CLIP-Scope's explained variance of a token is 1 - sse / total_ss (tokens with total_ss = 0 are left out).
saev's normalised MSE is SSE / SSE of predicting the dataset mean vector mu: over all stored tokens
sum sse / sum ||x - mu||^2, with sum ||x - mu||^2 = sum ||x||^2 - N ||mu||^2 from the moments the index keeps
per batch (batch_moments). Per position and per image the numerator is their mean sse and the denominator the
dataset's mean ||x - mu||^2 per token (the moments are not kept per image), so the per-image figures average,
token-weighted, to the dataset NMSE.
- position_errors: for each token position (0 = CLS, then patches row-major, with their row/col in the run's grid),
  mean sse over images, mean explained variance and NMSE.
- image_errors: per image, the total sse over its stored tokens, the mean sse per token, the mean explained
  variance of its tokens and its NMSE.
"""

from __future__ import annotations

import duckdb
import numpy as np

from saetui.store.runs import TokenGrid


def token_variance(con: duckdb.DuckDBPyConnection) -> tuple[float | None, int]:
    """Mean ||x - mu||^2 per stored token over the whole database from batch_moments (None without moments)."""
    rows = con.execute("SELECT tokens, sum_sq, sum_x FROM batch_moments").fetchall()
    tokens = sum(int(r[0]) for r in rows)
    if tokens == 0:
        return None, 0
    sum_sq = sum(float(r[1]) for r in rows)
    sum_x = np.sum([np.asarray(r[2], dtype=np.float64) for r in rows], axis=0)
    mu = sum_x / tokens
    spread = sum_sq - tokens * float(mu @ mu)
    return (spread / tokens if spread > 0 else None), tokens


def position_errors(con: duckdb.DuckDBPyConnection, grid: TokenGrid, variance: float | None) -> None:
    """Create temp table _position_errors(token, row, col, n, mean_sse, explained_variance, nmse)."""
    side = grid.cols
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _position_errors AS
        SELECT token::SMALLINT AS token,
               CASE WHEN token > 0 AND $side > 0 THEN ((token - 1) // $side)::SMALLINT END AS "row",
               CASE WHEN token > 0 AND $side > 0 THEN ((token - 1) % $side)::SMALLINT END AS col,
               count(*) AS n,
               avg(sse) AS mean_sse,
               avg(1 - sse / total_ss) FILTER (WHERE total_ss > 0) AS explained_variance,
               avg(sse) / $variance AS nmse
        FROM token_errors GROUP BY token ORDER BY token""",
        {"side": side, "variance": variance},
    )


def image_errors(con: duckdb.DuckDBPyConnection, variance: float | None) -> None:
    """Create temp table _image_errors(image_id, n_tokens, sse, mean_sse, explained_variance, nmse)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _image_errors AS
        SELECT image_id, count(*) AS n_tokens, sum(sse::DOUBLE) AS sse, avg(sse) AS mean_sse,
               avg(1 - sse / total_ss) FILTER (WHERE total_ss > 0) AS explained_variance,
               avg(sse) / $variance AS nmse
        FROM token_errors GROUP BY image_id ORDER BY image_id""",
        {"variance": variance},
    )
