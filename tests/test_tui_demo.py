"""`saetui demo`: the offline workspace (random-weight model and SAE in a hub cache, drawn images, database).

The workspace is built once for the module (about 15 s here: it generates the tiny model, runs the real index
and stats engines over 16 images, lens included), because that end-to-end path is what the demo promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from harness.tui import browser, settle
from saetui.commands.main import main
from saetui.demo import DB_NAME, MODEL_REPO, SAE_FILE, SAE_REPO, DemoWorkspace, build_demo
from saetui.tui.screens.features import FeaturesScreen

PER_CLASS = 2


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> DemoWorkspace:
    """A demo workspace with two images per class, in its default place inside the cache."""
    cache = tmp_path_factory.mktemp("demo") / "cache"
    built = build_demo(per_class=PER_CLASS, cache=cache)
    assert built.root == cache / "demo" and built.cache == cache
    return built


def _sql(db: Path, query: str) -> list[tuple]:
    """Rows of a query on a database."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_the_demo_database_is_indexed_and_has_statistics(workspace: DemoWorkspace) -> None:
    """Every drawn image is indexed with the demo SAE and the derived tables, lens included, exist."""
    assert workspace.built and workspace.db.name == DB_NAME
    assert _sql(workspace.db, "SELECT count(*), count(DISTINCT label) FROM images")[0] == (8 * PER_CLASS, 8)
    model, sae, tokens = _sql(workspace.db, "SELECT model_id, sae_repo, tokens FROM runs")[0]
    assert (model, sae, tokens) == (f"hf-hub:{MODEL_REPO}", SAE_REPO, "all")
    alive = _sql(workspace.db, "SELECT count(*) FROM features WHERE NOT dead")[0][0]
    assert alive > 0
    assert _sql(workspace.db, "SELECT count(*) FROM logit_lens")[0][0] > 0
    assert _sql(workspace.db, "SELECT count(*) FROM activations WHERE image_id = 0")[0][0] == 257 * 16


def test_the_model_and_sae_resolve_offline_like_fetched_files(workspace: DemoWorkspace) -> None:
    """With HF_HUB_OFFLINE=1, huggingface_hub and `saetui`'s fetch find the published files in the cache."""
    code = f"""
import json
from huggingface_hub import hf_hub_download
from saetui.demo import demo_spec
from saetui.hub import fetch
path = hf_hub_download({SAE_REPO!r}, {SAE_FILE!r}, cache_dir={str(workspace.cache / "hub")!r})
fetched = fetch(demo_spec(), cache={str(workspace.cache)!r})
print(json.dumps([path, str(fetched.checkpoint_path), str(fetched.model_dir)]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    path, checkpoint, model_dir = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(path).resolve() == workspace.fetched.checkpoint_path.resolve() == Path(checkpoint).resolve()
    assert Path(model_dir) == workspace.fetched.model_dir


def test_a_second_build_reuses_the_workspace(workspace: DemoWorkspace) -> None:
    """Without --rebuild the existing database is kept."""
    again = build_demo(workspace.root, per_class=PER_CLASS, cache=workspace.cache)
    assert not again.built and again.db == workspace.db


def test_demo_command_prints_the_database_and_says_the_weights_are_random(
    workspace: DemoWorkspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """`saetui demo DIR --no-browse` writes the database path to stdout and the random-weights note to stderr."""
    args = ["demo", "--cache-dir", str(workspace.cache), "--no-browse", "--per-class", str(PER_CLASS)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(workspace.db)
    assert "RANDOM weights" in captured.err
    assert "saetui index PHOTOS --sae demo-random-weights --cache-dir" in captured.err


def test_your_own_images_index_with_the_demo_sae_by_name(
    workspace: DemoWorkspace, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the demo, `--sae demo-random-weights` indexes any folder from the cache alone (no hub is asked)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a request would fail
    photos = tmp_path / "photos"
    photos.mkdir()
    drawn = sorted((workspace.images / "red circle").iterdir())[0]
    for name in ("a.png", "b.png"):
        (photos / name).write_bytes(drawn.read_bytes())
    db = tmp_path / "mine.duckdb"
    args = ["index", str(photos), "--sae", "demo-random-weights", "--cache-dir", str(workspace.cache), "--db", str(db)]
    assert main(args) == 0, capsys.readouterr().err
    assert "cannot reach" not in capsys.readouterr().err
    assert _sql(db, "SELECT count(*), any_value(sae_name) FROM images JOIN runs USING (run_id)") == [
        (2, "demo-random-weights")
    ]
    assert main(["fetch", "demo-random-weights", "--cache-dir", str(tmp_path / "empty")]) == 3
    err = capsys.readouterr().err
    assert "run `saetui demo` first" in err


async def test_the_browser_opens_the_demo(workspace: DemoWorkspace) -> None:
    """The demo database browses like any other, and the top bar names it as random-weight."""
    app = browser(workspace.db)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, FeaturesScreen) and app.screen.rows is not None
        assert len(app.screen.table.order) > 0
        assert "demo-random-weights" in str(app.screen.query_one("#top-bar").render())
