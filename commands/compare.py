"""`saetui compare`: match the features of two databases over the same images by the overlap of their top images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

HELP = """Match every alive feature of database A to the feature of database B whose top-K image set overlaps
most (Jaccard |S(f) n S(g)| / |S(f) u S(g)|, ties to the higher overlap, then the same feature id, then the
smallest id). Both databases must hold the same images (compared by content hash) and their statistics
(`saetui stats`): the sets come from feature_images.

Prints the average best-match Jaccard (both directions), the number of mutual best pairs and the share of A's
alive features whose match reaches --threshold, then the best pairs (stdout; --json for everything).

The matches are stored as the table feature_matches(feature, match_feature, jaccard, overlap, mutual) with a
one-row compare_info table, replacing earlier ones: in A itself (opened for writing once the comparison is
done, so nothing else may have A open at that moment), or with --out FILE in that DuckDB file instead (created
if missing; A is then only read). --no-store stores nothing.

Examples:

  saetui compare layer20.duckdb layer20-early.duckdb

  saetui compare vit.duckdb resnet.duckdb --top 50 --threshold 0.3 --out matches.duckdb

  saetui compare a.duckdb b.duckdb --json > matches.json
"""


def register(app: typer.Typer) -> None:
    """Add the `compare` command to the root app."""

    @app.command("compare", help=HELP, no_args_is_help=True)
    def compare_command(
        a: Path = typer.Argument(..., metavar="A.duckdb", help="Database whose features are matched."),
        b: Path = typer.Argument(..., metavar="B.duckdb", help="Database searched for their matches."),
        top: int = typer.Option(100, "--top", help="K: the top-K images of each feature form its set."),
        threshold: float = typer.Option(0.5, "--threshold", help="Jaccard a match must reach to count as shared."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary and every match as JSON."),
        show: int = typer.Option(20, "--show", help="Best pairs listed in the readable report."),
        out: Path | None = typer.Option(
            None, "--out", help="Store the matches in this DuckDB file instead of A.", show_default=False
        ),
        no_store: bool = typer.Option(False, "--no-store", help="Do not store the matches anywhere."),
    ) -> None:
        """Compare the features of two databases."""
        from saetui.compare import compare_databases, report_json, report_lines, stderr_progress, store_matches
        from saetui.errors import UsageError

        if no_store and out is not None:
            raise UsageError("--out and --no-store exclude each other", "pass one of them")
        result = compare_databases(a, b, top=top, threshold=threshold, progress=stderr_progress)
        if not no_store:
            target = out if out is not None else a
            store_matches(target, result)
            sys.stderr.write(f"saetui: stored {len(result.feature):,} matches in feature_matches of {target}\n")
        if as_json:
            sys.stdout.write(json.dumps(report_json(result)) + "\n")
        else:
            sys.stdout.write("".join(line + "\n" for line in report_lines(result, show)))
