"""`saetui fetch` against the fake hub: downloads, caching, offline use, listing, resume and failure paths.

Three tests run `saetui` in a subprocess, since huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE at
import; the others run the CLI in this process with huggingface_hub's constants patched (fixture
hub_in_process) on a private copy of the fetched layer20 cache, which keeps the suite fast.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from harness.fakehub import FakeHub, FetchedCache
from harness.families import PRISMA_MLP_REPO
from harness.tiny import EARLY_TOKENS, FINAL_TOKENS, MODEL_REPO, SCOPE_LAYERS, SCOPE_REPO, tiny_sae_bytes
from saetui.commands.main import main
from saetui.hub import FetchedSae, fetch, list_checkpoints
from saetui.registry import get_spec

FINAL_20 = f"20_resid/{FINAL_TOKENS}.pt"
EARLY_20 = f"20_resid/{EARLY_TOKENS}.pt"
CHUNK = 10 * 1024 * 1024  # huggingface_hub writes downloads in 10 MiB chunks; a resume starts at a chunk edge


def _fields(stdout: str) -> dict[str, str]:
    """The `key value` lines `saetui fetch` prints on stdout."""
    return dict(line.split(None, 1) for line in stdout.strip().splitlines())


def _one_error_line(stderr: str) -> str:
    """stderr must be exactly one `saetui: error:` line; return it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("saetui: error: "), stderr
    return lines[0]


def _blobs(cache: Path, repo_id: str) -> set[str]:
    """Names of the blobs huggingface_hub holds for a repo in a saetui cache."""
    folder = cache / "hub" / f"models--{repo_id.replace('/', '--')}" / "blobs"
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def _snapshot(cache: Path, repo_id: str, commit: str) -> Path:
    """A repo's snapshot folder in a saetui cache."""
    return cache / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / commit


# --- through a subprocess: the environment variables themselves ------------------------------------------


def test_fresh_fetch_puts_sae_model_and_preprocessing_in_the_cache(layer20_first_fetch, fake_hub: FakeHub) -> None:
    """`saetui fetch layer20` downloads the latest checkpoint, the model weights and both configs intact."""
    (cache, _), done = layer20_first_fetch
    fields = _fields(done.stdout)
    scope_commit, model_commit = fake_hub.commit(SCOPE_REPO), fake_hub.commit(MODEL_REPO)
    checkpoint = Path(fields["checkpoint"])
    assert checkpoint == _snapshot(cache, SCOPE_REPO, scope_commit) / FINAL_20
    assert checkpoint.read_bytes() == fake_hub.file_bytes(SCOPE_REPO, FINAL_20)
    assert fields["checkpoint_tokens"] == str(FINAL_TOKENS)
    assert fields["sae_revision"] == scope_commit
    model_dir = Path(fields["model_dir"])
    assert model_dir == _snapshot(cache, MODEL_REPO, model_commit)
    assert fields["model_revision"] == model_commit
    for name in ("open_clip_config.json", "open_clip_model.safetensors", "preprocessor_config.json"):
        assert (model_dir / name).read_bytes() == fake_hub.file_bytes(MODEL_REPO, name)
    assert Path(fields["model_weights"]) == model_dir / "open_clip_model.safetensors"
    assert Path(fields["preprocessor_config"]) == model_dir / "preprocessor_config.json"
    assert not (model_dir / "open_clip_pytorch_model.bin").exists()  # safetensors preferred, like open_clip
    # The tiny SAE is smaller than the release documents: loaded on its own terms, with a warning on stderr.
    assert "d_in = 32, n_features = 512" in done.stderr and "using the file's sizes" in done.stderr
    assert "warning" not in done.stdout


def test_second_fetch_downloads_nothing(hub: FakeHub, layer20_first_fetch, run_saetui) -> None:
    """A re-run asks the hub (HEAD and API calls) but GETs no file body, and reports the same paths."""
    (_, env), first = layer20_first_fetch
    done = run_saetui("fetch", "layer20", env=env)
    assert done.returncode == 0, done.stderr
    assert _fields(done.stdout) == _fields(first.stdout)
    assert [request.method for request in hub.requests if "/resolve/" in request.path] == ["HEAD"] * 4
    assert hub.file_downloads() == []


def test_offline_fetch_resolves_latest_from_the_cache(hub: FakeHub, fetched_layer20: FetchedCache, run_saetui) -> None:
    """With HF_HUB_OFFLINE=1 the fetch succeeds without a single request, "latest" included."""
    done = run_saetui("fetch", "layer20", env={**fetched_layer20.env, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert hub.requests == []
    fields = _fields(done.stdout)
    assert fields["checkpoint_file"] == FINAL_20
    assert Path(fields["checkpoint"]).read_bytes() == hub.file_bytes(SCOPE_REPO, FINAL_20)
    assert fields["sae_revision"] == hub.commit(SCOPE_REPO)


# --- in this process, on a private copy of the layer20 cache ---------------------------------------------


def test_unknown_name_exits_2_naming_the_valid_ones(hub_in_process: FetchedCache, capfd) -> None:
    """`saetui fetch layer21` is a usage error listing all eight built-in names."""
    assert main(["fetch", "layer21"]) == 2
    line = _one_error_line(capfd.readouterr().err)
    assert "layer21" in line
    for layer in SCOPE_LAYERS:
        assert f"layer{layer}," in line or f"layer{layer};" in line


def test_list_shows_every_layer_with_sizes_and_cached_marks(hub_in_process: FetchedCache, hub: FakeHub, capfd) -> None:
    """`saetui fetch --list` lists the hub's checkpoints of all eight layers, their sizes, what is cached."""
    assert main(["fetch", "--list"]) == 0
    out = capfd.readouterr().out.strip().splitlines()
    assert out[0].split() == ["family", "name", "layer", "hook", "tokens", "repo", "checkpoint", "size", "cached"]
    table = [line.split() for line in out[1:]]
    families = [cells[0] for cells in table]
    assert families == sorted(families, key=["clip-scope", "vit-prisma", "saev"].index)  # grouped by family
    rows = {(cells[1], cells[6]): cells[1:] for cells in table}
    assert rows.pop(("demo-random-weights", "-"))[6] == "-"  # listed, not yet published by `saetui demo`
    prisma = {name: cells for (name, _), cells in rows.items() if name.startswith("prisma-")}
    assert prisma["prisma-b32-layer11-mlp_out"][2:5] == ["mlp_out", "all", PRISMA_MLP_REPO]
    assert {cells[5] for cells in prisma.values()} == {"n_images_2600058.pt"}
    rows = {key: cells for key, cells in rows.items() if key[0].startswith("layer")}
    assert len(rows) == 2 * len(SCOPE_LAYERS)
    for layer in SCOPE_LAYERS:
        for tokens in (EARLY_TOKENS, FINAL_TOKENS):
            cells = rows[(f"layer{layer}", str(tokens))]
            size = len(hub.file_bytes(SCOPE_REPO, f"{layer}_resid/{tokens}.pt"))
            assert cells[1:5] == [str(layer), "resid_post", "all", SCOPE_REPO]
            assert " ".join(cells[6:8]) == f"{size / 1000:.1f} kB"
            cached = layer == 20 and tokens == FINAL_TOKENS
            assert cells[8:] == (["yes"] if cached else [])
    assert not any(request.is_file_body for request in hub.requests)


def test_list_says_what_the_clip_model_adds(hub_in_process: FetchedCache, hub: FakeHub, capfd) -> None:
    """The download size of the CLIP model (weights and configs), fetched once for all eight layers."""
    assert main(["fetch", "--list"]) == 0
    err = capfd.readouterr().err
    size = sum(
        len(hub.file_bytes(MODEL_REPO, name))
        for name in ("open_clip_config.json", "preprocessor_config.json", "open_clip_model.safetensors")
    )
    assert f"saetui: plus the CLIP model {MODEL_REPO}: {size / 1e6:.1f} MB, fetched once" in err


def test_checkpoint_option_picks_that_checkpoint(hub_in_process: FetchedCache, hub: FakeHub, capfd) -> None:
    """--checkpoint 100069632 fetches 20_resid/100069632.pt rather than the latest."""
    assert main(["fetch", "layer20", "--checkpoint", str(EARLY_TOKENS)]) == 0
    fields = _fields(capfd.readouterr().out)
    assert fields["checkpoint_file"] == EARLY_20
    assert fields["checkpoint_tokens"] == str(EARLY_TOKENS)
    assert Path(fields["checkpoint"]).read_bytes() == hub.file_bytes(SCOPE_REPO, EARLY_20)
    assert [request.path for request in hub.file_downloads()] == [f"/{SCOPE_REPO}/resolve/main/{EARLY_20}"]


def test_fetch_returns_local_paths_and_provenance(hub_in_process: FetchedCache, hub: FakeHub) -> None:
    """The library call returns a FetchedSae: paths with the hub's bytes, revisions that are its commits."""
    fetched = fetch("layer20")
    assert isinstance(fetched, FetchedSae)
    assert fetched.spec == get_spec("layer20")
    assert fetched.checkpoint_file == FINAL_20 and fetched.checkpoint_tokens == FINAL_TOKENS
    assert fetched.checkpoint_path.read_bytes() == hub.file_bytes(SCOPE_REPO, FINAL_20)
    assert fetched.sae_revision == hub.commit(SCOPE_REPO)
    assert fetched.model_revision == hub.commit(MODEL_REPO)
    assert fetched.model_config == fetched.model_dir / "open_clip_config.json"
    assert fetched.model_weights.read_bytes() == hub.file_bytes(MODEL_REPO, "open_clip_model.safetensors")
    assert fetched.preprocessor_config is not None
    assert fetched.preprocessor_config.read_bytes() == hub.file_bytes(MODEL_REPO, "preprocessor_config.json")
    assert hub.file_downloads() == []  # all of it was in the cache already


def test_interrupted_download_resumes_with_a_range_request(hub_in_process: FetchedCache, hub: FakeHub) -> None:
    """The server cuts the connection mid-file once; the download resumes with Range; the file is intact."""
    path = f"8_resid/{FINAL_TOKENS}.pt"
    big = tiny_sae_bytes(n_features=50_000, seed=8, token_count=FINAL_TOKENS)  # > one 10 MiB download chunk
    assert len(big) > CHUNK + 2**20
    hub.serve_bytes(SCOPE_REPO, path, big)
    hub.cut_connection(SCOPE_REPO, path, after_bytes=CHUNK + 2**20)
    fetched = fetch("layer8")
    gets = [request for request in hub.file_downloads() if request.path.endswith(path)]
    assert [request.range for request in gets] == [None, f"bytes={CHUNK}-"]
    assert [request.status for request in gets] == [200, 206]
    assert fetched.checkpoint_path.read_bytes() == big


def test_missing_checkpoint_is_not_found_in_one_line(hub_in_process: FetchedCache, capfd) -> None:
    """--checkpoint 123 (no such file on the hub) exits 3 with one line naming the file."""
    assert main(["fetch", "layer20", "--checkpoint", "123"]) == 3
    line = _one_error_line(capfd.readouterr().err)
    assert "20_resid/123.pt" in line and SCOPE_REPO in line


def test_unknown_revision_is_not_found(hub_in_process: FetchedCache, capfd) -> None:
    """--revision of a branch the repo lacks exits 3 in one line."""
    assert main(["fetch", "layer20", "--revision", "no-such-branch"]) == 3
    assert "no-such-branch" in _one_error_line(capfd.readouterr().err)


def test_refused_token_exits_4_and_hf_token_is_sent(
    hub_in_process: FetchedCache, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """A hub answering 401 gives exit 4 and an HF_TOKEN hint; with HF_TOKEN set the same fetch works."""
    hub.require_token("secret-token")
    assert main(["fetch", "layer20"]) == 4
    line = _one_error_line(capfd.readouterr().err)
    assert "401" in line and "HF_TOKEN" in line
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    hub.clear_log()
    assert main(["fetch", "layer20"]) == 0
    assert hub.requests and all(request.authorization == "Bearer secret-token" for request in hub.requests)


def _close_the_hub(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point huggingface_hub at a closed port (nothing listens on the discard port) and return its URL."""
    from huggingface_hub import constants

    closed = "http://127.0.0.1:9"
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", closed + "/{repo_id}/resolve/{revision}/{filename}")
    return closed


def test_unreachable_hub_uses_the_cached_files_and_says_so(
    hub_in_process: FetchedCache, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """With every file cached and the hub down, fetch succeeds without HF_HUB_OFFLINE and warns on stderr."""
    closed = _close_the_hub(monkeypatch)
    assert main(["fetch", "layer20"]) == 0
    captured = capfd.readouterr()
    assert f"saetui: warning: cannot reach {closed}: using the cached files of layer20" in captured.err
    assert _fields(captured.out)["checkpoint_file"] == FINAL_20
    assert main(["fetch", "--list"]) == 0
    captured = capfd.readouterr()
    assert captured.err.count(f"cannot reach {closed}") == 1  # one warning, not one per SAE
    assert [line.split()[6] for line in captured.out.splitlines()[1:] if line.split()[1] == "layer20"] == [
        str(FINAL_TOKENS)
    ]


def test_unreachable_hub_without_the_files_says_how_to_work_offline(
    hub_in_process: FetchedCache, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """Exit 4 in one line that names the cache and tells an offline machine to copy a cache (--cache-dir)."""
    closed = _close_the_hub(monkeypatch)
    assert main(["fetch", "layer20", "--checkpoint", str(EARLY_TOKENS)]) == 4
    warning, *rest = capfd.readouterr().err.strip().splitlines()
    assert warning.startswith(f"saetui: warning: cannot reach {closed}: using the cached files of layer20")
    line = _one_error_line("\n".join(rest))
    assert f"cannot reach {closed}, and " in line and "not in the cache" in line
    assert "--cache-dir" in line and "HF_HUB_OFFLINE=1" not in line


def test_offline_fetch_of_an_uncached_checkpoint_is_not_found(
    hub_in_process: FetchedCache, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """Offline, a never-downloaded checkpoint is 'not in the cache' (exit 3); --list shows the cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["fetch", "layer20", "--checkpoint", str(EARLY_TOKENS)]) == 3
    line = _one_error_line(capfd.readouterr().err)
    assert "not in the cache" in line and "forbids downloads" in line and "--cache-dir" in line
    assert main(["fetch", "--list"]) == 0
    captured = capfd.readouterr()
    listed = [line.split() for line in captured.out.strip().splitlines()[1:]]
    assert [cells[6] for cells in listed if cells[1] == "layer20"] == [str(FINAL_TOKENS)]
    assert all(cells[6] == "-" for cells in listed if cells[1] != "layer20")
    assert "cache only" in captured.err
    assert hub.requests == []


def test_model_revision_pins_the_clip_model(hub_in_process: FetchedCache, hub: FakeHub, capfd) -> None:
    """--model-revision resolves the model repo at that revision; an unknown one is not found (exit 3)."""
    commit = hub.commit(MODEL_REPO)
    assert main(["fetch", "layer20", "--model-revision", commit]) == 0
    assert _fields(capfd.readouterr().out)["model_revision"] == commit
    assert main(["fetch", "layer20", "--model-revision", "no-such-branch"]) == 3
    assert "revision 'no-such-branch' not found in " + MODEL_REPO in _one_error_line(capfd.readouterr().err)


def test_corrupt_checkpoint_is_removed_and_a_later_fetch_works(
    hub_in_process: FetchedCache, hub: FakeHub, capfd
) -> None:
    """A truncated checkpoint fails in one line (exit 5), leaves no trace in the cache; re-fetching works."""
    good = hub.file_bytes(SCOPE_REPO, EARLY_20)
    blobs_before = _blobs(hub_in_process.cache_dir, SCOPE_REPO)
    hub.serve_bytes(SCOPE_REPO, EARLY_20, good[: len(good) // 2])
    assert main(["fetch", "layer20", "--checkpoint", str(EARLY_TOKENS)]) == 5
    line = _one_error_line(capfd.readouterr().err)
    assert "corrupt" in line and f"removed {EARLY_20} from the cache" in line
    snapshot = _snapshot(hub_in_process.cache_dir, SCOPE_REPO, hub.commit(SCOPE_REPO))
    assert not (snapshot / EARLY_20).exists() and not (snapshot / EARLY_20).is_symlink()
    assert _blobs(hub_in_process.cache_dir, SCOPE_REPO) == blobs_before
    hub.reset_faults()
    assert main(["fetch", "layer20", "--checkpoint", str(EARLY_TOKENS)]) == 0
    assert (snapshot / EARLY_20).read_bytes() == good


class _RunsShell:
    """A pickle payload that would run a shell command if unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_unsafe_pickle_is_refused_and_removed(
    hub_in_process: FetchedCache, hub: FakeHub, tmp_path: Path, capfd
) -> None:
    """A checkpoint whose pickle calls os.system is refused by weights_only (exit 5), never run, removed."""
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model_state_dict": {}, "k": 32, "payload": _RunsShell(marker)}, buffer)
    hub.serve_bytes(SCOPE_REPO, EARLY_20, buffer.getvalue())
    assert main(["fetch", "layer20", "--checkpoint", str(EARLY_TOKENS)]) == 5
    line = _one_error_line(capfd.readouterr().err)
    assert "refused to unpickle" in line and "removed" in line
    assert not marker.exists()
    snapshot = _snapshot(hub_in_process.cache_dir, SCOPE_REPO, hub.commit(SCOPE_REPO))
    assert not (snapshot / EARLY_20).exists()


def _write_config(cache: FetchedCache, text: str) -> None:
    """Write the user config file the cache's environment points at."""
    Path(cache.env["SAETUI_CONFIG"]).write_text(text, encoding="utf-8")


def test_user_config_entry_fetches_a_single_file_sae(hub_in_process: FetchedCache, hub: FakeHub, capfd) -> None:
    """A [sae.<name>] entry (hub repo + file, open_clip model id, layer) fetches, validates and lists."""
    sae = tiny_sae_bytes(seed=77, token_count=123_456, log_id="mine")
    hub.add_repo("tester/tiny-sae", {"checkpoints/sae.pt": sae, "README.md": b"# mine\n"})
    _write_config(
        hub_in_process,
        '[sae.mine]\nrepo = "tester/tiny-sae"\nfile = "checkpoints/sae.pt"\n'
        f'model = "hf-hub:{MODEL_REPO}"\nlayer = 5\nd_in = 32\nn_features = 512\n',
    )
    assert main(["fetch", "mine"]) == 0
    captured = capfd.readouterr()
    fields = _fields(captured.out)
    assert fields["checkpoint_file"] == "checkpoints/sae.pt"
    assert fields["checkpoint_tokens"] == "123456"  # from the checkpoint: the name has no token count
    assert Path(fields["checkpoint"]).read_bytes() == sae
    assert fields["sae_revision"] == hub.commit("tester/tiny-sae")
    assert "warning" not in captured.err  # sizes match the entry
    assert list_checkpoints(get_spec("mine"))[0].cached
    assert main(["fetch", "--list"]) == 0
    mine = [line.split() for line in capfd.readouterr().out.splitlines() if line.split()[1] == "mine"]
    size = f"{len(sae) / 1000:.1f}"
    assert mine == [
        ["clip-scope", "mine", "5", "resid_post", "all", "tester/tiny-sae", "checkpoints/sae.pt", size, "kB", "yes"]
    ]


def test_sae_wider_than_the_model_is_removed(hub_in_process: FetchedCache, hub: FakeHub, capfd) -> None:
    """An SAE whose d_in differs from the model's width is inconsistent: exit 5, one line, removed."""
    hub.add_repo("tester/wide-sae", {"sae.pt": tiny_sae_bytes(d_in=48, seed=5)})
    _write_config(
        hub_in_process,
        f'[sae.wide]\nrepo = "tester/wide-sae"\nfile = "sae.pt"\nmodel = "hf-hub:{MODEL_REPO}"\nlayer = 3\n',
    )
    assert main(["fetch", "wide"]) == 5
    line = _one_error_line(capfd.readouterr().err)
    assert "d_in = 48" in line and "width 32" in line and "removed sae.pt" in line
    snapshot = _snapshot(hub_in_process.cache_dir, "tester/wide-sae", hub.commit("tester/wide-sae"))
    assert not (snapshot / "sae.pt").exists()


def test_model_repo_with_only_a_pickled_state_dict_and_no_preprocessor(
    hub_in_process: FetchedCache, hub: FakeHub, capfd
) -> None:
    """Without safetensors the .bin weights are fetched; a missing preprocessor_config.json is a warning."""
    model_files = {name: hub.file_bytes(MODEL_REPO, name) for name in ("open_clip_config.json", "README.md")}
    hub.add_repo("tester/bare-clip", {**model_files, "open_clip_pytorch_model.bin": b"weights"})
    hub.add_repo("tester/headless-clip", model_files)
    sae = {"sae.pt": hub.file_bytes(SCOPE_REPO, EARLY_20)}
    hub.add_repo("tester/sae-for-bare", sae)
    _write_config(
        hub_in_process,
        "".join(
            f'[sae.{name}]\nrepo = "tester/sae-for-bare"\nfile = "sae.pt"\nmodel = "hf-hub:tester/{model}"\nlayer = 1\n'
            for name, model in (("bare", "bare-clip"), ("headless", "headless-clip"))
        ),
    )
    fetched = fetch("bare")
    assert fetched.model_weights.name == "open_clip_pytorch_model.bin"
    assert fetched.model_weights.read_bytes() == b"weights"
    assert fetched.preprocessor_config is None
    assert "has no preprocessor_config.json" in capfd.readouterr().err
    assert main(["fetch", "headless"]) == 3
    line = _one_error_line(capfd.readouterr().err)
    assert "has no open_clip_model.safetensors or open_clip_pytorch_model.bin" in line
