"""Fetch SAE checkpoints and their open_clip model, and list checkpoints, through huggingface_hub's cache.

Every hub access goes through huggingface_hub with ``cache_dir=<saetui cache>/hub``, so ``HF_ENDPOINT``,
``HF_TOKEN`` and ``HF_HUB_OFFLINE`` behave as in every Hugging Face tool (huggingface_hub reads them when it
is imported). Downloads resume within a run when a connection breaks, a second run downloads nothing, and
offline runs resolve everything, "latest" included, from the cache. Hub failures become one-line errors.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.hf_api import RepoFile

from saetui.errors import DataError, NetworkError, NotFoundError, UsageError
from saetui.paths import cache_dir, hub_cache
from saetui.registry import SaeSpec, all_specs, get_spec, is_repo_id

T = TypeVar("T")

LATEST = "latest"
OPEN_CLIP_CONFIG = "open_clip_config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
# open_clip's own order for hf-hub: repos: safetensors first, the pickled state dict otherwise.
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_CHECKPOINT = re.compile(r"(\d+)\.pt")


@dataclass(frozen=True)
class FetchedSae:
    """Local paths and provenance of a fetched SAE checkpoint and the open_clip model it reads."""

    spec: SaeSpec
    checkpoint_path: Path  # the .pt in the hub cache (a snapshot link)
    checkpoint_file: str  # its path inside the SAE repo
    checkpoint_tokens: int | None  # tokens trained (from the file name, else from the checkpoint)
    sae_revision: str  # commit sha of the SAE repo the file came from
    model_dir: Path  # the model repo's local snapshot folder
    model_config: Path  # open_clip_config.json
    model_weights: Path  # open_clip_model.safetensors or open_clip_pytorch_model.bin
    model_revision: str  # commit sha of the model repo
    preprocessor_config: Path | None  # preprocessor_config.json; None when the model repo has none
    config_path: Path | None = None  # the SAE family's config file (ViT-Prisma, dictionary_learning)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file of an SAE: its repo path, tokens trained, size and whether it is cached."""

    file: str
    tokens: int | None
    size: int | None  # bytes
    cached: bool


# Set while a command answers from the cache because the hub could not be reached (HF_HUB_OFFLINE unset).
_CACHE_ONLY: ContextVar[bool] = ContextVar("saetui_cache_only", default=False)
COPY_CACHE_HINT = (
    "on a machine without internet: run the same `saetui fetch` where the hub is reachable, copy that cache "
    "folder here and pass --cache-dir DIR (or set SAETUI_CACHE)"
)


class HubUnreachable(NetworkError):
    """The hub did not answer at all (no connection, a time-out, a server error): the cache may stand in."""


def is_offline() -> bool:
    """Whether only the cache may be read: HF_HUB_OFFLINE is set, or the hub was found unreachable."""
    return constants.is_offline_mode() or _CACHE_ONLY.get()


def _not_cached_hint() -> str:
    """What to do when the files are not in the cache and no download may happen."""
    if constants.is_offline_mode():
        return f"HF_HUB_OFFLINE=1 forbids downloads: unset it where the hub is reachable; {COPY_CACHE_HINT}"
    return COPY_CACHE_HINT


@contextmanager
def _cache_only() -> Iterator[None]:
    """Read the cache alone inside the block."""
    token = _CACHE_ONLY.set(True)
    try:
        yield
    finally:
        _CACHE_ONLY.reset(token)


def with_cache_fallback(action: Callable[[], T], what: str, hub_dir: Path, spec: SaeSpec | None = None) -> T:
    """Run a hub action; when the hub cannot be reached, run it again on the cache alone and say so.

    An SAE that a saetui command publishes (the demo's) is read from the cache alone, with a hint to run it.
    """
    if spec is not None and spec.published_by is not None:
        with _cache_only():
            try:
                return action()
            except NotFoundError:
                raise NotFoundError(
                    f"{spec.name} is made by `{spec.published_by}`, and it is not in {hub_dir}",
                    f"run `{spec.published_by}` first (with the same --cache-dir)",
                ) from None
    try:
        return action()
    except HubUnreachable as error:
        _warn_once(f"{error.message}: using the cached {what} in {hub_dir}")
        with _cache_only():
            try:
                return action()
            except NotFoundError as missing:
                raise NetworkError(f"{error.message}, and {missing.message}", COPY_CACHE_HINT) from None


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning line on stderr, once per process for the same text."""
    if message not in _WARNED:
        _WARNED.add(message)
        _warn(message)


def _warn(message: str) -> None:
    """One warning line on stderr."""
    sys.stderr.write(f"saetui: warning: {message}\n")
    sys.stderr.flush()


def _tokens_of(path: str) -> int | None:
    """The token count in a checkpoint file name like "20_resid/1200013184.pt"."""
    match = _CHECKPOINT.fullmatch(path.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def parse_checkpoint(value: str) -> int | None:
    """--checkpoint: None for "latest", else the token count; anything else is a UsageError."""
    if value == LATEST:
        return None
    if value.isdigit():
        return int(value)
    raise UsageError(f"invalid checkpoint '{value}'", "use 'latest' or the token count of a checkpoint, e.g. 100069632")


def _http_failure(status: int | None, what: str, repo_id: str, hint: str) -> NetworkError:
    """The error for an HTTP status the other rules left: a server error means the hub is down (the cache may
    stand in), anything else is a refusal of this request."""
    endpoint = constants.ENDPOINT
    if status is not None and status >= 500:
        return HubUnreachable(f"{endpoint} answered HTTP {status}", hint)
    return NetworkError(f"{endpoint} answered HTTP {status} for {what} of {repo_id}", hint)


@contextmanager
def _hub_errors(repo_id: str, revision: str, what: str, hub_dir: Path) -> Iterator[None]:
    """Turn huggingface_hub and HTTP failures while getting `what` from `repo_id` into one-line errors."""
    endpoint = constants.ENDPOINT
    offline_hint = f"check the network; cached files are used when the hub cannot be reached ({COPY_CACHE_HINT})"
    try:
        yield
    except GatedRepoError:
        raise NetworkError(
            f"{repo_id} is gated and refused access to {what}",
            "accept its conditions on the hub and set HF_TOKEN to a token of that account",
        ) from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise NetworkError(
                f"{endpoint} refused access to {repo_id} (HTTP {status})",
                "set HF_TOKEN to a token that can read it; the repo may be private, gated or misspelt",
            ) from None
        if isinstance(error, RepositoryNotFoundError):
            raise NotFoundError(
                f"repo {repo_id} not found on {endpoint}", "check the repo id of the SAE entry"
            ) from None
        if isinstance(error, RevisionNotFoundError):
            raise NotFoundError(
                f"revision '{revision}' not found in {repo_id}",
                "pass an existing branch, tag or commit to --revision",
            ) from None
        if isinstance(error, RemoteEntryNotFoundError):
            raise NotFoundError(
                f"{repo_id} has no {what} at revision '{revision}'",
                "`saetui fetch --list` shows the checkpoints the hub has",
            ) from None
        raise _http_failure(status, what, repo_id, offline_hint) from None
    except (LocalEntryNotFoundError, RevisionResolutionError, OfflineModeIsEnabled) as error:
        if is_offline():
            raise NotFoundError(f"{what} of {repo_id} is not in the cache {hub_dir}", _not_cached_hint()) from None
        cause = error.__cause__ or error.__context__
        if isinstance(cause, HfHubHTTPError):
            status = cause.response.status_code if cause.response is not None else None
            raise _http_failure(status, what, repo_id, offline_hint) from None
        if isinstance(cause, FileMetadataError):
            raise NetworkError(
                f"{endpoint} did not answer like a Hugging Face hub for {what} of {repo_id}",
                "check HF_ENDPOINT and any proxy in between",
            ) from None
        raise HubUnreachable(f"cannot reach {endpoint}", offline_hint) from None
    except (httpx2.ProtocolError, httpx2.ReadError):
        raise NetworkError(
            f"the connection to {endpoint} broke while getting {what} of {repo_id}",
            "run the command again: finished files are kept",
        ) from None
    except httpx2.RequestError:
        raise HubUnreachable(f"cannot reach {endpoint}", offline_hint) from None


def _snapshot_folder(hub_dir: Path, repo_id: str, commit: str) -> Path:
    """The cache's snapshot folder of a repo at a commit."""
    return hub_dir / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots" / commit


def _commit_of(local: Path, repo_file: str) -> str:
    """The commit sha of a downloaded file, read off its snapshot path (snapshots/<sha>/<repo_file>)."""
    return local.parents[len(repo_file.split("/")) - 1].name


def _hub_commit(api: HfApi, repo_id: str, revision: str) -> str:
    """Ask the hub which commit a revision is; fails fast (no retries) when the hub cannot be reached."""
    sha = api.model_info(repo_id, revision=revision, expand=["sha"]).sha
    if not sha:
        raise NetworkError(f"{constants.ENDPOINT} gave no commit for {repo_id}@{revision}", "check HF_ENDPOINT")
    return sha


def _cached_commit(api: HfApi, repo_id: str, revision: str, hub_dir: Path) -> str | None:
    """The commit a revision had when it was last fetched (from the cache's refs); None if never fetched."""
    try:
        return api.resolve_revision(repo_id, revision=revision, cache_dir=hub_dir, local_files_only=True).resolved
    except RevisionResolutionError:
        return None


def _is_cached(repo_id: str, path: str, revision: str, hub_dir: Path) -> bool:
    """Whether the file is in the cache for that revision."""
    return isinstance(try_to_load_from_cache(repo_id, path, cache_dir=hub_dir, revision=revision), str)


def _listed_files(api: HfApi, repo_id: str, revision: str, folder: str | None) -> list[RepoFile]:
    """The files directly inside a repo folder at a revision, as the hub lists them."""
    commit = _hub_commit(api, repo_id, revision)
    return [
        entry
        for entry in api.list_repo_tree(repo_id, path_in_repo=folder or None, revision=commit)
        if isinstance(entry, RepoFile)
    ]


def _repo_files(api: HfApi, repo_id: str, revision: str, hub_dir: Path) -> list[str]:
    """Every file path of a repo at a revision (offline: those in its cached snapshot)."""
    if is_offline():
        commit = _cached_commit(api, repo_id, revision, hub_dir)
        folder = _snapshot_folder(hub_dir, repo_id, commit) if commit else None
        if folder is None or not folder.is_dir():
            raise NotFoundError(f"{repo_id} is not in the cache {hub_dir}", _not_cached_hint())
        return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    commit = _hub_commit(api, repo_id, revision)
    return sorted(
        entry.path
        for entry in api.list_repo_tree(repo_id, revision=commit, recursive=True)
        if isinstance(entry, RepoFile)
    )


def resolve_spec(
    name: str, checkpoint: str = "latest", revision: str | None = None, cache: str | Path | None = None
) -> SaeSpec:
    """The entry of an SAE named by registry name or by hub repo id (detecting the family from the repo's files).

    A repo id that one entry has is that entry; any other repo is read: its family from its file names, the
    model, layer, hook and tokens from its own config (saetui.families.detect).
    """
    if not is_repo_id(name):
        return get_spec(name)
    specs = all_specs()
    named = [spec for spec in specs if spec.name == name]
    if named:
        return named[0]
    matching = [spec for spec in specs if spec.repo_id == name]
    if len(matching) == 1:
        return matching[0]
    if matching:
        raise UsageError(f"{name} holds {len(matching)} SAEs", f"name one: {', '.join(s.name for s in matching)}")
    from saetui.families.detect import detect, entry_fields

    hub_dir = hub_cache(cache_dir(cache))
    api = HfApi()
    wanted = None if checkpoint == LATEST else checkpoint

    def read() -> SaeSpec:
        """Detect the family from the file list and read the config the entry is built from."""
        with _hub_errors(name, revision or "main", "the file list", hub_dir):
            files = _repo_files(api, name, revision or "main", hub_dir)
        detected = detect(name, files, wanted)
        config = None
        if detected.config_file is not None:
            from saetui.families.safe_load import read_json

            with _hub_errors(name, revision or "main", detected.config_file, hub_dir):
                config = read_json(_download(name, detected.config_file, revision or "main", hub_dir))
        fields = entry_fields(name, detected, config)
        return SaeSpec(
            name=name,
            repo_id=name,
            file=detected.file,
            config_file=detected.config_file,
            family=detected.family,
            revision=revision or "main",
            source=f"detected from the files of {name}",
            **fields,
        )

    return with_cache_fallback(read, f"files of {name}", hub_dir)


def _single_file_info(api: HfApi, spec: SaeSpec, revision: str, hub_dir: Path) -> list[CheckpointInfo]:
    """The one checkpoint of a single-file entry."""
    assert spec.file is not None
    folder = spec.file.rsplit("/", 1)[0] if "/" in spec.file else None
    if is_offline():
        commit = _cached_commit(api, spec.repo_id, revision, hub_dir)
        local = _snapshot_folder(hub_dir, spec.repo_id, commit) / spec.file if commit else None
        if local is None or not local.is_file():
            return []
        return [CheckpointInfo(spec.file, _tokens_of(spec.file), local.stat().st_size, True)]
    for entry in _listed_files(api, spec.repo_id, revision, folder):
        if entry.path == spec.file:
            cached = _is_cached(spec.repo_id, entry.path, revision, hub_dir)
            return [CheckpointInfo(entry.path, _tokens_of(entry.path), entry.size, cached)]
    return []


def _folder_infos(api: HfApi, spec: SaeSpec, revision: str, hub_dir: Path) -> list[CheckpointInfo]:
    """The <tokens>.pt checkpoints of a folder entry, smallest token count first."""
    assert spec.folder is not None
    infos: list[CheckpointInfo] = []
    if is_offline():
        commit = _cached_commit(api, spec.repo_id, revision, hub_dir)
        folder = _snapshot_folder(hub_dir, spec.repo_id, commit) / spec.folder if commit else None
        for local in folder.glob("*.pt") if folder is not None and folder.is_dir() else []:
            file = f"{spec.folder}/{local.name}"
            tokens = _tokens_of(file)
            if tokens is not None and local.is_file():
                infos.append(CheckpointInfo(file, tokens, local.stat().st_size, True))
    else:
        for entry in _listed_files(api, spec.repo_id, revision, spec.folder):
            tokens = _tokens_of(entry.path)
            if tokens is not None:
                cached = _is_cached(spec.repo_id, entry.path, revision, hub_dir)
                infos.append(CheckpointInfo(entry.path, tokens, entry.size, cached))
    return sorted(infos, key=lambda info: info.tokens or 0)


def _hub_checkpoints(spec: SaeSpec, revision: str, hub_dir: Path) -> list[CheckpointInfo]:
    """The checkpoints the hub has for an SAE (cache-only: the ones in the cache, all marked cached)."""
    api = HfApi()
    with _hub_errors(spec.repo_id, revision, "the checkpoint list", hub_dir):
        if spec.file is not None:
            return _single_file_info(api, spec, revision, hub_dir)
        return _folder_infos(api, spec, revision, hub_dir)


def list_checkpoints(
    spec: SaeSpec, cache: str | Path | None = None, revision: str | None = None
) -> list[CheckpointInfo]:
    """The checkpoints the hub has for an SAE; offline or with the hub unreachable, the ones in the cache."""
    hub_dir = hub_cache(cache_dir(cache))
    revision = revision or spec.revision
    return with_cache_fallback(lambda: _hub_checkpoints(spec, revision, hub_dir), "checkpoint list", hub_dir, spec)


def _choose_checkpoint(spec: SaeSpec, tokens: int | None, revision: str, hub_dir: Path) -> str:
    """The repo path of the checkpoint to fetch: the spec's file, the asked tokens, or the largest listed."""
    if spec.file is not None:
        if tokens is not None:
            raise UsageError(f"SAE '{spec.name}' is the single file {spec.file}", "leave out --checkpoint")
        return spec.file
    if tokens is not None:
        return spec.checkpoint_file(tokens)
    infos = _hub_checkpoints(spec, revision, hub_dir)
    if not infos:
        where = "in the cache" if is_offline() else f"on {constants.ENDPOINT}"
        raise NotFoundError(
            f"no {spec.folder}/<tokens>.pt checkpoint of {spec.repo_id}@{revision} {where}",
            _not_cached_hint() if is_offline() else "check the folder of the SAE entry",
        )
    return infos[-1].file


def _model_files(api: HfApi, repo_id: str, revision: str, hub_dir: Path) -> set[str]:
    """Which of the files saetui needs the model repo has (offline: which of them are cached)."""
    wanted = {OPEN_CLIP_CONFIG, PREPROCESSOR_CONFIG, *WEIGHT_FILES}
    if is_offline():
        return {name for name in wanted if _is_cached(repo_id, name, revision, hub_dir)}
    return {entry.path for entry in _listed_files(api, repo_id, revision, None)} & wanted


def model_download_size(spec: SaeSpec, cache: str | Path | None = None) -> int | None:
    """Bytes `fetch` downloads for the SAE's CLIP model (the weights it picks and the configs); None offline."""
    hub_dir = hub_cache(cache_dir(cache))
    if is_offline() or spec.published_by is not None:
        return None
    api = HfApi()
    try:
        with _hub_errors(spec.model_repo, spec.model_revision, "the model file list", hub_dir):
            sizes = {entry.path: entry.size for entry in _listed_files(api, spec.model_repo, spec.model_revision, None)}
    except (NetworkError, NotFoundError):
        return None
    weights = next((name for name in WEIGHT_FILES if name in sizes), None)
    return sum(sizes[name] for name in (OPEN_CLIP_CONFIG, PREPROCESSOR_CONFIG, weights) if name in sizes) or None


def _download(repo_id: str, file: str, revision: str, hub_dir: Path) -> Path:
    """One file through huggingface_hub's cache (a HEAD only when it is already there; none in cache-only mode)."""
    return Path(hf_hub_download(repo_id, file, revision=revision, cache_dir=hub_dir, local_files_only=is_offline()))


def remove_cached(path: Path) -> None:
    """Delete a cached file: its snapshot link and the blob behind it, so the next fetch downloads it anew."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _fetch_model(api: HfApi, spec: SaeSpec, revision: str, hub_dir: Path) -> tuple[Path, Path, Path | None, str]:
    """Download the model's open_clip config, weights and preprocessor config at a revision; returns them and
    the commit sha."""
    repo_id = spec.model_repo
    with _hub_errors(repo_id, revision, "the model files", hub_dir):
        present = _model_files(api, repo_id, revision, hub_dir)
    weights_name = next((name for name in WEIGHT_FILES if name in present), None)
    missing = [] if OPEN_CLIP_CONFIG in present else [OPEN_CLIP_CONFIG]
    missing += [] if weights_name is not None else [" or ".join(WEIGHT_FILES)]
    if weights_name is None or missing:
        where, hint = ("in the cache", _not_cached_hint()) if is_offline() else ("on the hub", None)
        raise NotFoundError(
            f"model repo {repo_id} has no {', '.join(missing)} {where}",
            hint or f"{spec.model} must be an open_clip model repo",
        )
    with _hub_errors(repo_id, revision, OPEN_CLIP_CONFIG, hub_dir):
        config = _download(repo_id, OPEN_CLIP_CONFIG, revision, hub_dir)
    with _hub_errors(repo_id, revision, weights_name, hub_dir):
        weights = _download(repo_id, weights_name, revision, hub_dir)
    preprocessor = None
    if PREPROCESSOR_CONFIG in present:
        with _hub_errors(repo_id, revision, PREPROCESSOR_CONFIG, hub_dir):
            preprocessor = _download(repo_id, PREPROCESSOR_CONFIG, revision, hub_dir)
    elif spec.preprocessing == "hf-clip":
        _warn(f"model repo {repo_id} has no {PREPROCESSOR_CONFIG}; preprocessing falls back to open_clip's")
    return config, weights, preprocessor, _commit_of(config, OPEN_CLIP_CONFIG)


def _validate(
    spec: SaeSpec, checkpoint: Path, file: str, model_dir: Path, config: Path, sae_config: Path | None
) -> int | None:
    """Load the SAE safely, check it against the model, remove what is broken; returns its token_count."""
    from saetui.families.loading import load_sae
    from saetui.models.trunk import hook_width

    again = "fetch again to download a fresh copy; if it fails again, the file on the hub is bad"
    try:
        width = hook_width(model_dir, spec.hook)
    except DataError as error:
        remove_cached(config)
        raise DataError(f"{error.message}; removed {OPEN_CLIP_CONFIG} from the cache", again) from None
    try:
        loaded = load_sae(spec, checkpoint, sae_config)
    except DataError as error:
        remove_cached(checkpoint)
        raise DataError(f"{spec.name}: {error.message}; removed {file} from the cache", again) from None
    if loaded.d_in != width:
        remove_cached(checkpoint)
        raise DataError(
            f"{spec.name}: {file} reads d_in = {loaded.d_in} but {spec.model} has width {width} at {spec.hook}; "
            f"removed {file} from the cache",
            "the SAE belongs to another model: fix the model of the SAE entry",
        )
    stated = (spec.k, spec.d_in, spec.n_features)
    actual = (loaded.k, loaded.d_in, loaded.n_features)
    if actual != stated:
        _warn(
            f"{spec.name}: {file} has k = {loaded.k}, d_in = {loaded.d_in}, n_features = {loaded.n_features} "
            f"where the entry states {spec.k}, {spec.d_in}, {spec.n_features}; using the file's sizes"
        )
    return loaded.token_count


def fetch(
    spec_or_name: SaeSpec | str,
    checkpoint: str = LATEST,
    revision: str | None = None,
    cache: str | Path | None = None,
    model_revision: str | None = None,
) -> FetchedSae:
    """Download (or find in the cache) an SAE checkpoint and its open_clip model; validate; return paths.

    revision pins the SAE repo, model_revision the model repo (default: the entry's, else main). When the hub
    cannot be reached, the cached files are used and a warning says so.
    """
    spec = resolve_spec(spec_or_name, checkpoint, revision, cache) if isinstance(spec_or_name, str) else spec_or_name
    tokens = parse_checkpoint(checkpoint) if spec.family == "clip-scope" else None
    revision = revision or spec.revision
    model_revision = model_revision or spec.model_revision
    hub_dir = hub_cache(cache_dir(cache))
    api = HfApi()

    def download() -> tuple[str, Path, Path | None, tuple[Path, Path, Path | None, str]]:
        """The checkpoint's repo path and local path, the family's config file, and the model files."""
        if not is_offline():  # one fail-fast request first: an unreachable hub then costs no download retries
            with _hub_errors(spec.repo_id, revision, "the revision", hub_dir):
                _hub_commit(api, spec.repo_id, revision)
        file = _choose_checkpoint(spec, tokens, revision, hub_dir)
        with _hub_errors(spec.repo_id, revision, file, hub_dir):
            checkpoint_path = _download(spec.repo_id, file, revision, hub_dir)
        sae_config = None
        if spec.config_file is not None:
            with _hub_errors(spec.repo_id, revision, spec.config_file, hub_dir):
                sae_config = _download(spec.repo_id, spec.config_file, revision, hub_dir)
        return file, checkpoint_path, sae_config, _fetch_model(api, spec, model_revision, hub_dir)

    file, checkpoint_path, sae_config, (config, weights, preprocessor, model_commit) = with_cache_fallback(
        download, f"files of {spec.name}", hub_dir, spec
    )
    token_count = _validate(spec, checkpoint_path, file, config.parent, config, sae_config)
    return FetchedSae(
        spec=spec,
        checkpoint_path=checkpoint_path,
        checkpoint_file=file,
        checkpoint_tokens=_tokens_of(file) if _tokens_of(file) is not None else token_count,
        sae_revision=_commit_of(checkpoint_path, file),
        model_dir=config.parent,
        model_config=config,
        model_weights=weights,
        model_revision=model_commit,
        preprocessor_config=preprocessor,
        config_path=sae_config,
    )
