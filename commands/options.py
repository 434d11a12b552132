"""Command-line options several commands share, declared once as Annotated aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from saetui.errors import UsageError

CacheDir = Annotated[
    str | None,
    typer.Option("--cache-dir", help="Cache root (default: $SAETUI_CACHE, else ./cache).", show_default=False),
]
Split = Annotated[str, typer.Option("--split", help="Split of a dataset or split Parquet folder.")]
ImageColumn = Annotated[
    str | None,
    typer.Option("--image-column", help="Image column of a table source (default: guessed).", show_default=False),
]
LabelColumn = Annotated[
    str | None,
    typer.Option("--label-column", help="Label column of a table source (default: guessed).", show_default=False),
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", help="Decode threads (default: one per CPU core).", show_default=False),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        help="Device of every model step: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps; `index` also "
        "takes a list, one model replica per entry (cuda:0,1,2,3).",
    ),
]
Database = Annotated[Path | None, typer.Option("--db", help="Database (default: $SAETUI_DB, else ./saetui.duckdb).")]
SaeName = Annotated[str, typer.Option("--sae", help="The SAE: a name of `saetui fetch --list` or a hub repo id.")]
Checkpoint = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="'latest', a CLIP-Scope token count (e.g. 100069632) or the repo path of one of its SAEs.",
    ),
]
Revision = Annotated[
    str | None,
    typer.Option(
        "--revision", help="Branch, tag or commit of the SAE repo (default: the entry's).", show_default=False
    ),
]
ModelRevision = Annotated[
    str | None,
    typer.Option(
        "--model-revision",
        help="Branch, tag or commit of the CLIP model repo (default: the entry's).",
        show_default=False,
    ),
]
Features = Annotated[
    str | None, typer.Option("--features", help="Only these features (comma-separated ids).", show_default=False)
]


def feature_list(text: str | None) -> list[int] | None:
    """--features 1,2,3 as ints (None when not given)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--features {text!r} is not a list of feature ids", "e.g. --features 12,345") from None


EndpointUrl = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        envvar="SAETUI_ENDPOINT",
        help="Base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1 [env: SAETUI_ENDPOINT]. "
        "Nothing is sent anywhere without it.",
        show_default=False,
        show_envvar=False,
    ),
]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model",
        envvar="SAETUI_MODEL",
        help="Model name the server knows [env: SAETUI_MODEL].",
        show_default=False,
        show_envvar=False,
    ),
]
Retries = Annotated[int, typer.Option("--retries", min=0, help="Retries of a rate-limited or failed request.")]
Timeout = Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for one answer.")]
RequestRate = Annotated[
    float | None,
    typer.Option(
        "--rate", min=0.01, help="At most this many requests per second (default: no limit).", show_default=False
    ),
]
