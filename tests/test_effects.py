"""Causal effects, steering and attribution on the demo workspace (a real index of real-format files).

Known answer: a feature's decoder row is planted along the direction that raises one class's logit against the
others, so ablating it must lower that class most: rank 1 of the classes it supports, with a negative delta.
Independent recomputation: the ablation is redone with plain open_clip (a forward hook on block L adding
-v dec_f where the dense CLIP-Scope forward says the feature is active) and text embeddings from encode_text.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from saetui.demo import build_demo
from saetui.effects.attribution import attribute
from saetui.effects.causal import compute_effects
from saetui.effects.context import open_context
from saetui.effects.interventions import hook_state
from saetui.stats.engine import open_for_writing


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """The demo workspace (tiny random-weight CLIP + SAE, 96 images, statistics) in a fresh cache."""
    return build_demo(cache=tmp_path_factory.mktemp("effects") / "cache", log=io.StringIO())


def _busiest_feature(db: Path) -> int:
    """The alive feature with the most top images."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT feature FROM features WHERE NOT dead ORDER BY n_images DESC, feature LIMIT 1"
        ).fetchone()[0]


def test_planted_decoder_row_is_found_at_rank_one(demo, tmp_path: Path) -> None:
    """dec_f planted along d(z_c - mean z)/dx: ablating f lowers class c most (supports rank 1, relative delta < 0)."""
    import shutil

    db = tmp_path / "planted.duckdb"
    shutil.copy(demo.db, db)
    feature = _busiest_feature(db)
    with open_for_writing(db) as con:
        ctx = open_context(con, demo.cache, "cpu")
        paths = [r[0] for r in con.execute(
            "SELECT i.path FROM feature_images f JOIN images i USING (image_id) WHERE f.feature = ? AND f.rank <= 16",
            [feature]).fetchall()]  # fmt: skip
        target = 3
        state = hook_state(ctx, ctx.pixels(paths))
        residual = state.residual.clone().requires_grad_(True)
        z = ctx.logits(ctx.trunk.finish(residual))
        (z[:, target] - z.mean(dim=1)).sum().backward()
        match = (state.features == feature) * state.values  # [B, T, K]
        weights = match.sum(dim=-1)  # v_t,f per stored token
        direction = (weights[..., None] * residual.grad[:, ctx.positions]).sum(dim=(0, 1))
        direction = direction / direction.norm()
    checkpoint = demo.fetched.checkpoint_path.resolve()
    data = torch.load(checkpoint, weights_only=True)
    dec = data["model_state_dict"]["dec"]
    dec[feature] = direction * 4 * dec[feature].norm()
    checkpoint.unlink()
    torch.save(data, checkpoint)
    with open_for_writing(db) as con:
        ctx = open_context(con, demo.cache, "cpu")
        compute_effects(con, ctx, top=16, features=[feature])
        rows = con.execute(
            "SELECT label, delta, relative_delta FROM causal_effects WHERE feature = ? AND role = 'supports' "
            "ORDER BY rank",
            [feature],
        ).fetchall()
    assert rows[0][0] == ctx.labels[target]
    # The relative change (against the mean over classes, what the softmax sees) is negative: the feature supported c.
    assert rows[0][2] < 0 and rows[0][1] < rows[1][1]


def _open_clip_ablation(demo, paths: list[str], feature: int, labels: list[str]) -> np.ndarray:
    """Mean class-logit change of ablating the feature, with open_clip's own forward and a dense SAE."""
    import open_clip

    from saetui.models.preprocess import load_preprocessing, preprocess_image

    model_dir = demo.fetched.model_dir
    model = open_clip.create_model(f"local-dir:{model_dir}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    data = torch.load(demo.fetched.checkpoint_path, weights_only=True)
    pre_b, enc, dec = (data["model_state_dict"][key].float() for key in ("pre_b", "enc", "dec"))
    k = int(data["k"])
    prep = load_preprocessing(model_dir)
    from PIL import Image

    pixels = torch.from_numpy(np.stack([preprocess_image(Image.open(p).convert("RGB"), prep) for p in paths]))
    layer = 20
    edit = {"on": False}

    def hook(_module, _inputs, output):
        if not edit["on"]:
            return output
        x = output  # batch-first [B, T, d] in open_clip >= 3
        pre = (x - pre_b) @ enc
        top = torch.topk(pre, k, dim=-1)
        v = torch.where(top.indices == feature, top.values, torch.zeros_like(top.values)).sum(dim=-1)
        v = torch.clamp(v, min=0)  # ablation removes the active part only
        return x - v[..., None] * dec[feature]

    model.visual.transformer.resblocks[layer].register_forward_hook(hook)
    with torch.no_grad():
        text = torch.nn.functional.normalize(
            model.encode_text(tokenizer([f"A photo of a {lb}." for lb in labels])), dim=-1
        )
        scale = model.logit_scale.exp()
        base = scale * torch.nn.functional.normalize(model.encode_image(pixels), dim=-1) @ text.T
        edit["on"] = True
        after = scale * torch.nn.functional.normalize(model.encode_image(pixels), dim=-1) @ text.T
    return (after - base).mean(dim=0).numpy()


def test_ablation_deltas_match_plain_open_clip(demo, tmp_path: Path) -> None:
    """Stored mean deltas of three features equal an open_clip recomputation (float32: logits ~ 100 cos, so 1e-3)."""
    import shutil

    db = tmp_path / "copy.duckdb"
    shutil.copy(demo.db, db)
    with duckdb.connect(str(db), read_only=True) as con:
        query = "SELECT feature FROM features WHERE NOT dead ORDER BY n_images DESC, feature LIMIT 3"
        features = [r[0] for r in con.execute(query).fetchall()]
    with open_for_writing(db) as con:
        ctx = open_context(con, demo.cache, "cpu")
        compute_effects(con, ctx, top=8, features=features)
        for feature in features:
            paths = [r[0] for r in con.execute(
                "SELECT i.path FROM feature_images f JOIN images i USING (image_id) WHERE f.feature = ? "
                "AND f.rank <= 8 ORDER BY f.rank", [feature]).fetchall()]  # fmt: skip
            expected = _open_clip_ablation(demo, paths, feature, ctx.labels)
            stored = dict(con.execute(
                "SELECT label, delta FROM causal_effects WHERE feature = ?", [feature]).fetchall())  # fmt: skip
            for label, delta in stored.items():
                assert abs(delta - expected[ctx.labels.index(label)]) < 1e-3, (feature, label)


def test_attribution_agrees_with_exact_ablation(demo) -> None:
    """Gradient x activation ranks the features as exact ablation does (sign agreement on the confirmed ones)."""
    with duckdb.connect(str(demo.db), read_only=True) as con:
        ctx = open_context(con, demo.cache, "cpu")
        path = con.execute("SELECT path FROM images ORDER BY image_id LIMIT 1").fetchone()[0]
    state = hook_state(ctx, ctx.pixels([path]))
    result = attribute(ctx, state, 0, top=8, confirm=5)
    assert len(result.features) == 8 and result.ablation[5] is None
    assert result.sign_agreement is not None and result.sign_agreement >= 0.8


def test_effects_and_steer_commands(demo, tmp_path: Path) -> None:
    """`saetui effects` fills the tables; `saetui steer` prints before/after classes and `--attribute` a ranking."""
    import shutil
    import subprocess
    import sys

    db = tmp_path / "cli.duckdb"
    shutil.copy(demo.db, db)
    saetui = str(Path(sys.executable).with_name("saetui"))
    env = {"SAETUI_CACHE": str(demo.cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([saetui, "effects", "--db", str(db), "--features", "1,2,3,4,5,6,7,8,9,10"],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "s per feature" in done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM feature_effects").fetchone()[0] > 0
    steer = subprocess.run([saetui, "steer", "0", "--feature", str(_busiest_feature(db)), "--scale", "8", "--db",
                            str(db)], env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert steer.returncode == 0, steer.stderr
    assert "before" in steer.stdout and len(steer.stdout.splitlines()) == 8
    assert "the steered image is nearest to (index --embeddings): #" in steer.stdout  # the demo stores embeddings
    attributed = subprocess.run([saetui, "steer", "0", "--attribute", "--db", str(db)], env=env,
                                capture_output=True, text=True, check=False)  # fmt: skip
    assert attributed.returncode == 0 and "agreement with exact ablation" in attributed.stdout, attributed.stderr
    gone = subprocess.run([saetui, "steer", "999999", "--feature", "1", "--db", str(db)], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert gone.returncode == 3 and gone.stderr.count("\n") == 1


async def test_image_page_steering_panel(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an image page, s steers the highlighted feature and a ablates it: the panel shows before/after classes."""
    from textual.widgets import Static

    from harness.tui import browser, settle
    from saetui.tui.navigation import Location
    from saetui.tui.screens.image import ImageScreen

    monkeypatch.setenv("SAETUI_CACHE", str(demo.cache))
    feature = _busiest_feature(demo.db)
    with duckdb.connect(str(demo.db), read_only=True) as con:
        image_id = con.execute(
            "SELECT image_id FROM feature_images WHERE feature = ? AND rank = 1", [feature]
        ).fetchone()[0]
    app = browser(demo.db, Location("image", image_id, feature))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        page = app.screen
        assert isinstance(page, ImageScreen) and not page.query_one("#steer", Static).display
        await pilot.press("s")
        await settle(pilot, rounds=5)
        text = str(page.query_one("#steer", Static).render())
        assert f"Feature {feature} set to 5 x max" in text and "before" in text and "after" in text
        await pilot.press("a")
        await settle(pilot, rounds=5)
        assert f"Feature {feature} ablated" in str(page.query_one("#steer", Static).render())
        await pilot.press("plus")
        await settle(pilot, rounds=5)
        assert "set to 6 x max" in str(page.query_one("#steer", Static).render())
        await pilot.press("t")
        await settle(pilot, rounds=5)
        assert "Attribution to" in str(page.query_one("#steer", Static).render())


async def test_features_list_sorts_by_lens_agreement(demo, tmp_path: Path) -> None:
    """With effects stored, the list shows lens~causal agreement and sorts by it (the lens most wrong first)."""
    import shutil

    from textual.widgets import Static

    from harness.tui import browser, screen_text, settle
    from saetui.tui.widgets.feature_table import FeatureTable

    db = tmp_path / "sorted.duckdb"
    shutil.copy(demo.db, db)
    with duckdb.connect(str(db), read_only=True) as con:
        chosen = [
            r[0]
            for r in con.execute("SELECT feature FROM features WHERE NOT dead ORDER BY feature LIMIT 40").fetchall()
        ]
    with open_for_writing(db) as con:
        compute_effects(con, open_context(con, demo.cache, "cpu"), top=4, features=chosen)
        lowest = con.execute(
            "SELECT feature FROM feature_effects WHERE lens_causal_overlap IS NOT NULL "
            "ORDER BY lens_causal_overlap, feature LIMIT 1"
        ).fetchone()[0]
    app = browser(db)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert "lens~c" in screen_text(app)
        await pilot.press("s", "s", "s")
        await settle(pilot)
        assert "lens~causal agreement" in str(app.screen.query_one("#features-status", Static).render())
        table = app.screen.query_one(FeatureTable)
        assert int(table.rows.feature[table.order[0]]) == lowest  # the first row: the lens agrees least
