"""`saetui fetch`: download an SAE checkpoint and its CLIP model into the cache, or list what the hub has."""

from __future__ import annotations

import sys

import typer

from saetui.commands.options import CacheDir, Checkpoint, ModelRevision, Revision
from saetui.errors import NotFoundError, UsageError

HELP = """Download an SAE checkpoint and the open_clip model it reads into the cache.

NAME is a registered SAE (`saetui fetch --list`: CLIP-Scope's layer2..layer22, ViT-Prisma's and saev's released
SAEs, your config file's entries) or a hub repo id ORG/NAME, whose family (ViT-Prisma, dictionary_learning, saev)
is detected from its files. Files go through huggingface_hub into <cache>/hub (--cache-dir, else $SAETUI_CACHE,
else ./cache): HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE work as in every Hugging Face tool, a second run
downloads nothing, and with HF_HUB_OFFLINE=1 everything comes from the cache. The checkpoint is loaded with
weights_only=True (a saev JSON header is parsed as JSON) and checked (keys, shapes, k, d_in = width at the hook);
a broken file is removed from the cache.

Paths of what was fetched go to stdout, progress and diagnostics to stderr.

Examples:

  saetui fetch layer20

  saetui fetch layer20 --checkpoint 100069632

  saetui fetch Prisma-Multimodal/sae-top_k-64-cls_only-layer_11-hook_resid_post

  HF_HUB_OFFLINE=1 saetui fetch layer20 --cache-dir /data/saetui-cache

  saetui fetch --list
"""


def _human_size(size: int | None) -> str:
    """Bytes as a short human-readable size (powers of 1000)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _print_table(rows: list[list[str]]) -> None:
    """Left-aligned columns separated by two spaces, on stdout."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")


def _list(cache: str | None) -> None:
    """Print every known SAE, grouped by family, with the checkpoints the hub (offline: the cache) has."""
    from saetui.hub import is_offline, list_checkpoints
    from saetui.registry import FAMILIES, all_specs

    if is_offline():
        sys.stderr.write("saetui: HF_HUB_OFFLINE is set: listing the checkpoints in the cache only\n")
    rows = [["family", "name", "layer", "hook", "tokens", "repo", "checkpoint", "size", "cached"]]
    failures: list[str] = []
    for spec in sorted(all_specs(), key=lambda spec: FAMILIES.index(spec.family)):
        try:
            infos = list_checkpoints(spec, cache)
        except NotFoundError as error:
            failures.append(f"{spec.name}: {error.one_line()}")
            sys.stderr.write(f"saetui: warning: {spec.name}: {error.one_line()}\n")
            infos = []
        where = [spec.family, spec.name, str(spec.layer), spec.hook, spec.tokens, spec.repo_id]
        if not infos:
            rows.append([*where, "-", "-", ""])
        for info in infos:
            checkpoint = str(info.tokens) if spec.folder is not None and info.tokens is not None else info.file
            rows.append([*where, checkpoint, _human_size(info.size), "yes" if info.cached else ""])
    _print_table(rows)
    _model_sizes(cache)
    if failures:
        raise NotFoundError(f"{len(failures)} SAE(s) could not be listed", "see the warnings above")


def _model_sizes(cache: str | None) -> None:
    """Say on stderr what each CLIP model adds to a checkpoint's download (fetched once, shared by its SAEs)."""
    from saetui.hub import model_download_size
    from saetui.registry import all_specs

    seen: set[str] = set()
    for spec in all_specs():
        if spec.model_repo in seen:
            continue
        seen.add(spec.model_repo)
        size = model_download_size(spec, cache)
        if size is not None:
            sys.stderr.write(f"saetui: plus the CLIP model {spec.model_repo}: {_human_size(size)}, fetched once\n")


def _fetch(name: str, checkpoint: str, revision: str | None, model_revision: str | None, cache: str | None) -> None:
    """Fetch one SAE and print where its files are."""
    from saetui.hub import fetch

    fetched = fetch(name, checkpoint=checkpoint, revision=revision, cache=cache, model_revision=model_revision)
    rows = [
        ["sae", fetched.spec.name],
        ["checkpoint", str(fetched.checkpoint_path)],
        ["checkpoint_file", fetched.checkpoint_file],
        [
            "checkpoint_tokens",
            str(fetched.checkpoint_tokens) if fetched.checkpoint_tokens is not None else "-",
        ],
        ["family", fetched.spec.family],
        ["hook", f"{fetched.spec.hook} of block {fetched.spec.layer}" if fetched.spec.hook != "pooled" else "pooled"],
        ["tokens", fetched.spec.tokens],
        ["sae_repo", fetched.spec.repo_id],
        ["sae_revision", fetched.sae_revision],
        ["model", fetched.spec.model],
        ["model_dir", str(fetched.model_dir)],
        ["model_weights", str(fetched.model_weights)],
        ["model_revision", fetched.model_revision],
        ["preprocessor_config", str(fetched.preprocessor_config) if fetched.preprocessor_config else "-"],
        ["preprocessing", fetched.spec.preprocessing],
        ["sae_config", str(fetched.config_path) if fetched.config_path else "-"],
    ]
    _print_table(rows)
    sys.stderr.write(
        f"saetui: {fetched.spec.name} ready: {fetched.checkpoint_file} @ {fetched.sae_revision[:10]}, "
        f"model {fetched.spec.model_repo} @ {fetched.model_revision[:10]}\n"
    )


def register(app: typer.Typer) -> None:
    """Add the `fetch` command to the root app."""

    @app.command("fetch", help=HELP, no_args_is_help=True)
    def fetch_command(
        name: str | None = typer.Argument(
            None, metavar="NAME", help="SAE to fetch: a name (e.g. layer20) or a hub repo id.", show_default=False
        ),
        checkpoint: Checkpoint = "latest",
        revision: Revision = None,
        model_revision: ModelRevision = None,
        cache: CacheDir = None,
        list_: bool = typer.Option(False, "--list", help="List every SAE and the checkpoints the hub has."),
    ) -> None:
        """Download an SAE checkpoint and its CLIP model, or list the checkpoints."""
        if list_:
            if name is not None:
                raise UsageError("--list takes no NAME", "run `saetui fetch --list` alone")
            _list(cache)
            return
        if name is None:
            raise UsageError("missing NAME", "e.g. `saetui fetch layer20`; `saetui fetch --list` shows the names")
        _fetch(name, checkpoint, revision, model_revision, cache)
