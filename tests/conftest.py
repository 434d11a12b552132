"""Shared fixtures: the fake hub, hub environments for saetui subprocesses, and a fetched layer20 cache."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.fakehub import FakeHub, FetchedCache, copy_cache, hub_environment, serve_clip_scope
from harness.families import serve_families

SAETUI = Path(sys.executable).with_name("saetui")  # the console script of the environment running the tests

RunSaetui = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def fake_hub() -> Iterator[FakeHub]:
    """A fake hub on 127.0.0.1 serving the tiny CLIP-Scope, family and model repos under their real ids."""
    with FakeHub() as hub:
        serve_clip_scope(hub)
        serve_families(hub)
        yield hub


@pytest.fixture
def hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    """The session's fake hub with an empty request log and no faults, cleaned up again after the test."""
    fake_hub.reset_faults()
    fake_hub.clear_log()
    yield fake_hub
    fake_hub.reset_faults()


@pytest.fixture(scope="session")
def run_saetui() -> RunSaetui:
    """Run `saetui ARGS...` in a subprocess with an environment (huggingface_hub reads it at import)."""

    def run(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SAETUI), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    return run


@pytest.fixture
def hub_env(fake_hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """Environment for a saetui subprocess: HF_ENDPOINT = the fake hub, the cache and HF_HOME in tmp_path."""
    return hub_environment(fake_hub.url, tmp_path)


@pytest.fixture(scope="session")
def layer20_first_fetch(
    fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory, run_saetui: RunSaetui
) -> tuple[FetchedCache, subprocess.CompletedProcess[str]]:
    """`saetui fetch layer20` run once into a fresh cache: (cache, its environment), the completed run."""
    env = hub_environment(fake_hub.url, tmp_path_factory.mktemp("layer20"))
    done = run_saetui("fetch", "layer20", env=env)
    if done.returncode != 0:
        raise RuntimeError(f"saetui fetch layer20 failed ({done.returncode}): {done.stderr}")
    return FetchedCache(Path(env["SAETUI_CACHE"]), env), done


@pytest.fixture(scope="session")
def fetched_layer20(
    layer20_first_fetch: tuple[FetchedCache, subprocess.CompletedProcess[str]],
) -> FetchedCache:
    """(cache_dir, env): a cache holding layer20's latest checkpoint and its model; treat it as read-only."""
    return layer20_first_fetch[0]


@pytest.fixture
def layer20_cache(fetched_layer20: FetchedCache, tmp_path: Path) -> FetchedCache:
    """A private copy of the fetched layer20 cache that a test may change, with its own environment."""
    root = tmp_path / "copy"
    root.mkdir()
    env = {
        **fetched_layer20.env,
        "SAETUI_CACHE": str(root / "cache"),
        "SAETUI_CONFIG": str(root / "config.toml"),
    }
    return FetchedCache(copy_cache(fetched_layer20.cache_dir, root / "cache"), env)


@pytest.fixture
def hub_in_process(hub: FakeHub, layer20_cache: FetchedCache, monkeypatch: pytest.MonkeyPatch) -> FetchedCache:
    """Point this process's huggingface_hub at the fake hub (as its own tests do) and saetui at a cache copy.

    huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import, so in-process tests patch the
    constants it derives from them; subprocess tests (run_saetui + hub_env) exercise the variables themselves.
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    home = layer20_cache.cache_dir.parent / "hf_home"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    for key in list(os.environ):
        if key.startswith(("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "SAETUI_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SAETUI_CACHE", layer20_cache.env["SAETUI_CACHE"])
    monkeypatch.setenv("SAETUI_CONFIG", layer20_cache.env["SAETUI_CONFIG"])
    return layer20_cache
