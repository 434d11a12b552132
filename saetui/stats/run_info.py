"""What `saetui stats` needs from the `runs` table, and where the run's SAE and model files sit in the hub cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from saetui.errors import DataError, NotFoundError
from saetui.paths import cache_dir, file_identity, hub_cache
from saetui.registry import SaeSpec


@dataclass(frozen=True)
class RunInfo:
    """The SAE a database was indexed with (identical on every run row of one database)."""

    n_features: int
    sae_name: str | None
    sae_repo: str | None
    sae_file: str | None
    sae_revision: str | None
    model: str | None  # open_clip id, "hf-hub:ORG/NAME"
    model_revision: str | None
    layer: int | None
    k: int | None
    tokens: str | None  # stored token set: all | cls | patches
    family: str = "clip-scope"
    hook: str = "resid_post"


@dataclass(frozen=True)
class SaeFiles:
    """Local files of an SAE: the checkpoint and (for the logit lens) the open_clip model folder."""

    checkpoint_path: Path
    model_dir: Path | None
    spec: SaeSpec | None = None  # the entry the run was indexed with (its family decides how the file reads)
    config_path: Path | None = None  # the family's config file beside the checkpoint, where it has one

    def identity(self) -> list[str]:
        """What the derived tables depend on in these files: the checkpoint's identity and the model folder."""
        model = None if self.model_dir is None else str(Path(self.model_dir).resolve())
        config = None if self.config_path is None else file_identity(self.config_path)
        return [file_identity(self.checkpoint_path), str(model)] + ([config] if config else [])


def _first(row: dict[str, Any], *names: str) -> Any:
    """The first non-NULL value among the named columns (runs columns are read by name)."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


def read_run(con: duckdb.DuckDBPyConnection) -> RunInfo:
    """The SAE identity of the database from its latest `runs` row."""
    try:
        cursor = con.execute("SELECT * FROM runs")
    except duckdb.CatalogException:
        raise DataError("the database has no runs table", "index images with `saetui index` first") from None
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if not rows:
        raise DataError("the database has no runs", "index images with `saetui index` first")
    row = dict(zip(columns, rows[-1], strict=True))
    n_features = _first(row, "n_features")
    if n_features is None:
        raise DataError("the runs table does not record n_features", "re-index with this saetui version")
    model = _first(row, "model", "model_id")
    return RunInfo(
        n_features=int(n_features),
        sae_name=_first(row, "sae", "sae_name"),
        sae_repo=_first(row, "sae_repo", "repo"),
        sae_file=_first(row, "sae_file", "checkpoint_file"),
        sae_revision=_first(row, "sae_revision"),
        model=model,
        model_revision=_first(row, "model_revision"),
        layer=_first(row, "layer"),
        k=_first(row, "k"),
        tokens=_first(row, "tokens", "token_set"),
        family=_first(row, "sae_family") or "clip-scope",
        hook=_first(row, "hook") or "resid_post",
    )


def run_spec(run: RunInfo) -> SaeSpec:
    """The registry entry a run was indexed with: the named entry when it still exists, else one from the run."""
    from saetui.registry import all_specs

    for spec in all_specs():
        if spec.name == run.sae_name and spec.family == run.family:
            return spec
    return SaeSpec(
        name=run.sae_name or run.sae_repo or "sae",
        repo_id=run.sae_repo or "unknown/unknown",
        model=run.model or "",
        layer=run.layer or 0,
        file=run.sae_file,
        family=run.family,
        hook=run.hook,
        k=run.k or None,
    )


def cached_sae_files(run: RunInfo, cache: str | Path | None = None) -> SaeFiles:
    """The run's checkpoint and model folder from the hub cache, without any download."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub_dir = hub_cache(cache_dir(cache))
    hint = f"run `saetui fetch {run.sae_name or '<sae>'}`, or pass --no-lens"
    if not (run.sae_repo and run.sae_file and run.model):
        raise NotFoundError("the runs table does not say which SAE files were used", hint)
    model_repo = run.model.removeprefix("hf-hub:")
    try:
        checkpoint = hf_hub_download(
            run.sae_repo, run.sae_file, revision=run.sae_revision, cache_dir=hub_dir, local_files_only=True
        )
        config = hf_hub_download(
            model_repo,
            "open_clip_config.json",
            revision=run.model_revision,
            cache_dir=hub_dir,
            local_files_only=True,
        )
        spec = run_spec(run)
        sae_config = None
        if spec.config_file is not None or run.family in ("vit-prisma", "dictionary_learning"):
            folder = run.sae_file.rsplit("/", 1)[0] + "/" if "/" in run.sae_file else ""
            sae_config = hf_hub_download(
                run.sae_repo,
                folder + "config.json",
                revision=run.sae_revision,
                cache_dir=hub_dir,
                local_files_only=True,
            )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise NotFoundError(f"the files of SAE {run.sae_name or run.sae_repo} are not in {hub_dir}", hint) from None
    return SaeFiles(
        checkpoint_path=Path(checkpoint),
        model_dir=Path(config).parent,
        spec=spec,
        config_path=Path(sae_config) if sae_config else None,
    )
