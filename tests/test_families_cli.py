"""The real workflow for every family through the fake hub: `saetui fetch <repo id>`, `index --sae <repo id>`,
then stats, show, query, browse and compare on the results (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import pytest

from harness.badimages import copy_imagenet_sample
from harness.fakehub import FakeHub, hub_environment
from harness.families import PACH_REPO, PRISMA_MODEL, PRISMA_REPO, SAEV_REPO
from harness.tui import browser, screen_text, settle
from saetui.tui.data import BrowseData
from saetui.tui.screens.feature import FeatureScreen

FAMILIES = {  # repo id -> (family, grid, stored tokens per image)
    PRISMA_REPO: ("vit-prisma", (7, 7), 50),
    SAEV_REPO: ("saev", (14, 14), 196),
    PACH_REPO: ("dictionary_learning", (24, 24), 1),
}


class Workspace(NamedTuple):
    """The images, the environment and one database per SAE (by repo id, plus layer20 for CLIP-Scope)."""

    images: Path
    env: dict[str, str]
    dbs: dict[str, Path]
    logs: dict[str, str]


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    """stderr of a run that must have succeeded."""
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def workspace(fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory, run_saetui) -> Workspace:
    """Fetch each family's SAE by repo id and index the same 10 real images with it (and with layer20)."""
    root = tmp_path_factory.mktemp("families")
    env = hub_environment(fake_hub.url, root)
    images = root / "images"
    copy_imagenet_sample(images, wnids=10, split=None)
    dbs, logs = {}, {}
    for name in [*FAMILIES, "layer20"]:
        db = root / (name.replace("/", "_") + ".duckdb")
        logs[name] = _ok(run_saetui("fetch", name, env=env)) + _ok(
            run_saetui("index", str(images), "--sae", name, "--db", str(db), "--no-stats", env=env)
        )
        lens = [] if name == PRISMA_REPO else ["--no-lens"]  # the logit lens on one family is enough here
        logs[name] += _ok(run_saetui("stats", "--db", str(db), *lens, env=env))
        dbs[name] = db
    return Workspace(images, env, dbs, logs)


def _runs(db: Path) -> dict[str, object]:
    """The first runs row as a dict."""
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute("SELECT * FROM runs ORDER BY run_id LIMIT 1")
        return dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))


@pytest.mark.parametrize("repo", list(FAMILIES))
def test_fetch_and_index_by_repo_id_record_the_family_and_grid(workspace: Workspace, repo: str) -> None:
    """Each database says which family, hook and grid it holds, and stores the SAE's own token set."""
    family, grid, tokens = FAMILIES[repo]
    run = _runs(workspace.dbs[repo])
    assert (run["sae_family"], run["sae_repo"], run["status"]) == (family, repo, "done")
    assert (run["grid_rows"], run["grid_cols"]) == grid
    assert run["preprocess_reference"] == "open_clip"
    with duckdb.connect(str(workspace.dbs[repo]), read_only=True) as con:
        n_images, n_tokens = con.execute("SELECT count(DISTINCT image_id), count(*) FROM token_codes").fetchone()
        assert n_images == 10 and n_tokens == 10 * tokens
        pairs = con.execute("SELECT max(len(feature_values)) FROM token_codes").fetchone()[0]
        n_features = con.execute("SELECT count(*) FROM features").fetchone()[0]
        assert n_features == run["n_features"]
    if family != "dictionary_learning":
        assert pairs > 0


def test_logit_lens_and_eval_run_on_a_prisma_sae(workspace: Workspace, run_saetui) -> None:
    """The lens maps Prisma's decoder rows through ln_post and the projection; eval splices it into the B/32."""
    with duckdb.connect(str(workspace.dbs[PRISMA_REPO]), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT feature) FROM logit_lens").fetchone()[0] > 0
    done = run_saetui("eval", str(workspace.images), "--sae", PRISMA_REPO, "--json", env=workspace.env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["images"]["evaluated"] == 10 and report["downstream"]["labelled_images"] == 10


def test_relu_sae_stores_every_active_latent(workspace: Workspace) -> None:
    """The Prisma ReLU SAE keeps more than 32 latents per token (no fixed k; runs.k = 0 means unbounded)."""
    run = _runs(workspace.dbs[PRISMA_REPO])
    assert run["k"] == 0 and run["activation"] == "ReLU" and run["normalisation"] == "layer_norm"
    with duckdb.connect(str(workspace.dbs[PRISMA_REPO]), read_only=True) as con:
        mean_pairs = con.execute("SELECT avg(len(feature_values)) FROM token_codes").fetchone()[0]
        assert mean_pairs > 32
        assert con.execute("SELECT min(value) FROM activations").fetchone()[0] > 0


def test_saev_codes_are_marked_approximate(workspace: Workspace, run_saetui) -> None:
    """saev's input scaling was estimated from the indexed images: runs.approximate, the log, show and browse say so."""
    run = _runs(workspace.dbs[SAEV_REPO])
    shown = run_saetui("show", "5", "--db", str(workspace.dbs[SAEV_REPO]), env=workspace.env)
    assert "approximate codes: saev's input scaling" in shown.stdout, shown.stderr
    data = BrowseData(workspace.dbs[SAEV_REPO])
    try:
        assert "estimated from the indexed images" in dict(data.overview().run)["approximate"]
    finally:
        data.close()
    assert "estimated from the indexed images" in run["approximate"]
    assert run["input_scale"] > 0 and len(run["input_mean"]) == 32
    assert "estimating saev-clip-b16-layer10's input scaling" in workspace.logs[SAEV_REPO]


def test_show_and_query_work_on_every_family(workspace: Workspace, run_saetui) -> None:
    """`saetui show` prints a feature card and `saetui query` answers, whatever the family."""
    for repo in FAMILIES:
        db = str(workspace.dbs[repo])
        done = run_saetui("query", "SELECT feature FROM features WHERE NOT dead ORDER BY frequency DESC LIMIT 1",
                          "--db", db, "--format", "json", env=workspace.env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        if not rows:
            continue
        feature = rows[0]["feature"]
        shown = run_saetui("show", str(feature), "--db", db, env=workspace.env)
        assert shown.returncode == 0 and f"feature {feature}" in shown.stdout.lower(), shown.stderr


def test_browse_heatmaps_use_the_models_own_grid(workspace: Workspace) -> None:
    """BrowseData reads the 7 x 7 grid of ViT-B/32: patch values have 50 entries, the overlay a 7 x 7 map."""
    data = BrowseData(workspace.dbs[PRISMA_REPO])
    try:
        assert (data.grid.rows, data.grid.cols, data.grid.n_tokens) == (7, 7, 50)
        with data.cursor() as cur:
            feature, image_id = cur.execute(
                "SELECT feature, image_id FROM feature_images ORDER BY rank, feature LIMIT 1"
            ).fetchone()
        values = data.patch_values(image_id, feature)
        assert values.shape == (50,) and values.max() > 0
    finally:
        data.close()


async def test_browse_feature_page_on_a_prisma_database(workspace: Workspace) -> None:
    """The feature page of a Prisma SAE opens with its thumbnails (a Pilot run of the real app)."""
    app = browser(workspace.dbs[PRISMA_REPO])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FeatureScreen)
        assert "Feature" in screen_text(app)


def test_compare_clip_scope_with_prisma_on_the_same_images(workspace: Workspace, run_saetui) -> None:
    """`saetui compare` matches a CLIP-Scope database against a Prisma one (another model, another family)."""
    scope, prisma = str(workspace.dbs["layer20"]), str(workspace.dbs[PRISMA_REPO])
    done = run_saetui("compare", scope, prisma, "--json", env=workspace.env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["images"] == 10  # matched by content hash: the same ten files
    with duckdb.connect(str(workspace.dbs["layer20"]), read_only=True) as con:
        alive = con.execute("SELECT count(*) FROM features WHERE NOT dead").fetchone()[0]
    matched = [m for m in result["matches"] if m["match_feature"] is not None]
    assert len(result["matches"]) == alive and matched and all(0 < m["jaccard"] <= 1 for m in matched)


def test_one_database_holds_one_family(workspace: Workspace, run_saetui) -> None:
    """Indexing with a Prisma SAE into the CLIP-Scope database is refused in one line saying why."""
    done = run_saetui("index", str(workspace.images), "--sae", PRISMA_REPO, "--db", str(workspace.dbs["layer20"]),
                      "--no-stats", env=workspace.env)  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("saetui: error")]
    assert len(lines) == 1 and "clip-scope SAE" in lines[0] and "vit-prisma" in lines[0]


def test_patch_map_length_follows_the_grid(workspace: Workspace) -> None:
    """The notebook API's patch_map has the run's token count: 197 for saev's ViT-B/16 patches."""
    import saetui

    db = saetui.open(workspace.dbs[SAEV_REPO])
    top = db.con.execute("SELECT feature, image_id FROM feature_images ORDER BY rank LIMIT 1").fetchone()
    values = db.patch_map(*top)
    assert values.shape == (197,) and values[0] == 0 and np.count_nonzero(values) > 0


GENERIC_CONFIG = f"""
[sae.bigg-pooled]
family = "generic"
repo = "gytdau/clip-sae-128"
file = "sparse_autoencoder_128.pth"
model = "hf-hub:{PRISMA_MODEL}"
layer = 0
hook = "pooled"

[sae.bigg-pooled.keys]
enc = "encoder.weight"
transpose_enc = true
b_enc = "encoder.bias"
dec = "decoder.weight"
transpose_dec = true
b_dec = "decoder.bias"
input_bias = "decoder.bias"
activation = "relu"
"""


def test_generic_pooled_sae_from_the_user_config(workspace: Workspace, fake_hub: FakeHub, run_saetui, tmp_path) -> None:
    """A state dict described in the config (no code from the hub) on the pooled embedding: one token per image."""
    import io

    import torch

    from harness.families import sae_tensors

    t = sae_tensors(128, seed=400, d_in=16)  # 16 = the stand-in's embedding width
    state = {"encoder.weight": t["W_enc"].T.contiguous(), "encoder.bias": t["b_enc"],
             "decoder.weight": t["W_dec"].T.contiguous(), "decoder.bias": t["b_dec"]}  # fmt: skip
    buffer = io.BytesIO()
    torch.save(state, buffer)
    fake_hub.add_repo(
        "gytdau/clip-sae-128", {"sparse_autoencoder_128.pth": buffer.getvalue(), "model.py": b"raise SystemExit"}
    )
    env = {**workspace.env, "SAETUI_CONFIG": str(tmp_path / "config.toml")}
    (tmp_path / "config.toml").write_text(GENERIC_CONFIG, encoding="utf-8")
    db = tmp_path / "pooled.duckdb"
    _ok(run_saetui("fetch", "bigg-pooled", env=env))
    _ok(run_saetui("index", str(workspace.images), "--sae", "bigg-pooled", "--db", str(db), env=env))
    run = _runs(db)
    assert (run["sae_family"], run["hook"], run["grid_rows"], run["tokens"]) == ("generic", "pooled", 0, "all")
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*), max(token) FROM token_codes").fetchone() == (10, 0)
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 128


def test_effects_and_steering_through_a_normalised_sae(workspace: Workspace, run_saetui, tmp_path) -> None:
    """On the fake-hub Prisma database (layer_norm SAE: edits are mapped back through sigma), effects and steer run."""
    import shutil

    db = tmp_path / "prisma-effects.duckdb"
    shutil.copy(workspace.dbs[PRISMA_REPO], db)
    done = run_saetui("effects", "--db", str(db), "--top-images", "4", env=workspace.env)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        n, flips = con.execute("SELECT count(*), avg(flip_share) FROM feature_effects").fetchone()
        feature = con.execute("SELECT feature FROM feature_effects ORDER BY abs(top_delta) DESC LIMIT 1").fetchone()[0]
    assert n > 0 and 0 <= flips <= 1
    steered = run_saetui("steer", "0", "--feature", str(feature), "--scale", "10", "--db", str(db), env=workspace.env)
    assert steered.returncode == 0, steered.stderr
    assert steered.stdout.splitlines()[0].startswith(f"image 0: feature {feature} set to 10 x max")
    shown = run_saetui("show", str(feature), "--db", str(db), env=workspace.env)
    assert "causal effect (ablation over" in shown.stdout


def test_index_embeddings_feed_the_steering_preview(workspace: Workspace, run_saetui, tmp_path, monkeypatch) -> None:
    """--embeddings stores each image's final embedding (= open_clip's encode_image, normalised); steer then names
    the indexed images nearest the steered one."""
    import open_clip
    import torch
    from PIL import Image

    from saetui.hub import fetch
    from saetui.models.preprocess import load_preprocessing, preprocess_image

    db = tmp_path / "embedded.duckdb"
    _ok(
        run_saetui(
            "index", str(workspace.images), "--sae", "layer20", "--db", str(db), "--embeddings", env=workspace.env
        )
    )
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT e.embedding, i.path FROM image_embeddings e JOIN images i USING (image_id) ORDER BY image_id"
        ).fetchall()
        assert con.execute("SELECT embeddings FROM runs").fetchone()[0] is True
    assert len(rows) == 10
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the cached files only, no hub
    fetched = fetch("layer20", cache=workspace.env["SAETUI_CACHE"])
    model = open_clip.create_model(f"local-dir:{fetched.model_dir}").eval()
    prep = load_preprocessing(fetched.model_dir)
    pixels = torch.from_numpy(np.stack([preprocess_image(Image.open(path).convert("RGB"), prep) for _, path in rows]))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()
    assert np.allclose(np.array([r[0] for r in rows]), expected, atol=1e-5)
    _ok(run_saetui("stats", "--db", str(db), "--no-lens", env=workspace.env))
    with duckdb.connect(str(db), read_only=True) as con:
        feature = con.execute("SELECT feature FROM features WHERE NOT dead ORDER BY n_images DESC LIMIT 1").fetchone()[
            0
        ]
    steered = run_saetui("steer", "0", "--feature", str(feature), "--scale", "0", "--db", str(db), env=workspace.env)
    assert steered.returncode == 0, steered.stderr
    assert (
        "nearest to (index --embeddings): #0" in steered.stdout
    )  # ablating one feature leaves the image itself nearest


async def test_steering_panel_on_a_fake_hub_database(workspace: Workspace, monkeypatch) -> None:
    """The image page's steering panel on the Prisma database fetched through the fake hub."""
    from textual.widgets import Static

    from saetui.tui.navigation import Location

    monkeypatch.setenv("SAETUI_CACHE", workspace.env["SAETUI_CACHE"])
    with duckdb.connect(str(workspace.dbs[PRISMA_REPO]), read_only=True) as con:
        feature, image_id = con.execute(
            "SELECT feature, image_id FROM feature_images WHERE rank = 1 ORDER BY feature LIMIT 1"
        ).fetchone()
    app = browser(workspace.dbs[PRISMA_REPO], Location("image", image_id, feature))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot, rounds=5)
        text = str(app.screen.query_one("#steer", Static).render())
        assert f"Feature {feature} ablated" in text and "after" in text
