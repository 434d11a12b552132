"""`saetui eval` on the ImageNet sample with the tiny CLIP: known answers, an independent reference, the report.

Known answers: an SAE that reconstructs exactly (orthogonal encoder, its transpose as decoder, k = n_features =
d_in, non-zero pre_b) leaves loss and accuracy unchanged; reconstruction + error equals the original for any SAE.
The reference recomputes the loss, accuracy and reconstruction metrics of the built-in layer20 stand-in with
open_clip directly (no splice code), a hook of its own, clipscope's dense SAE forward and the formulas of the
README. The CLI runs in-process against the session's fake hub, where an extra repo serves the exact SAE.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import torch
from PIL import Image

from harness.badimages import SAMPLE
from harness.fakehub import FakeHub, FetchedCache, copy_cache
from harness.handbuilt import build_db
from harness.reference import dense_reference_encode
from harness.tiny import TINY_WIDTH
from saetui.commands.main import main
from saetui.errors import UsageError
from saetui.evaluate.alignment import neuron_alignment, neuron_directions
from saetui.evaluate.downstream import contrastive_loss, resolve_label_set
from saetui.families.clip_scope import load_checkpoint
from saetui.hub import fetch
from saetui.imagenet import class_names
from saetui.ingest.sources import open_source
from saetui.models.preprocess import load_preprocessing, preprocess_image

EXACT_REPO = "saetui-tests/exact-sae"
LIMIT = 16
BATCH = 8
LAYER = 20
CONDITIONS = ("original", "reconstruction", "reconstruction+error")


def exact_sae_bytes(d_in: int = TINY_WIDTH, seed: int = 7) -> bytes:
    """A CLIP-Scope .pt that reconstructs every vector exactly: enc = Q orthogonal, dec = Q^T, k = n = d_in."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=gen, dtype=torch.float64))
    checkpoint = {
        "model_state_dict": {
            "pre_b": (0.5 * torch.randn(d_in, generator=gen)).float(),
            "enc": q.float().contiguous(),
            "dec": q.T.float().contiguous(),
        },
        "d_in": d_in,
        "n_features": d_in,
        "k": d_in,
        "token_count": 1000,
        "n_iter": 1000,
        "dead_latents": torch.zeros(d_in),
        "log_id": "exact",
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def eval_env(
    fake_hub: FakeHub, fetched_layer20: FetchedCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """This process pointed at the fake hub (serving the exact SAE too), a private cache copy and a config."""
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("eval")
    cache = copy_cache(fetched_layer20.cache_dir, root / "cache")
    fake_hub.add_repo(EXACT_REPO, {"exact.pt": exact_sae_bytes(), "README.md": b"# exact SAE for tests\n"})
    config = root / "config.toml"
    config.write_text(
        f'[sae.exact]\nrepo = "{EXACT_REPO}"\nfile = "exact.pt"\n'
        'model = "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K"\n'
        f"layer = {LAYER}\nd_in = {TINY_WIDTH}\nn_features = {TINY_WIDTH}\nk = {TINY_WIDTH}\n",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "ENDPOINT", fake_hub.url)
        patch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "HF_TOKEN_PATH", str(root / "hf_home" / "token"))
        patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(root / "hf_home" / "stored_tokens"))
        for key in list(os.environ):
            if key.startswith(("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "SAETUI_")):
                patch.delenv(key)
        patch.setenv("SAETUI_CACHE", str(cache))
        patch.setenv("SAETUI_CONFIG", str(config))
        yield root


def run_cli(*args: str) -> tuple[int, str, str]:
    """main(args) in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def eval_json(*args: str) -> dict[str, Any]:
    """`saetui eval SAMPLE --json ...` on the first LIMIT images in batches of BATCH, parsed."""
    code, out, err = run_cli("eval", str(SAMPLE), "--json", "--limit", str(LIMIT), "--batch-size", str(BATCH), *args)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def layer20_run(eval_env: Path) -> tuple[dict[str, Any], Path]:
    """The JSON report of the built-in layer20 (tiny contents), also stored with --db: (report, database)."""
    db = eval_env / "results.duckdb"
    code, out, err = run_cli(
        "eval",
        str(SAMPLE),
        "--sae",
        "layer20",
        "--json",
        "--limit",
        str(LIMIT),
        "--batch-size",
        str(BATCH),
        "--db",
        str(db),
    )
    assert code == 0, err
    assert "eval_id 1" in err
    return json.loads(out), db


@pytest.fixture(scope="module")
def layer20(layer20_run: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    """The JSON report of layer20."""
    return layer20_run[0]


@pytest.fixture(scope="module")
def exact(eval_env: Path) -> dict[str, Any]:
    """The JSON report of the exactly reconstructing SAE."""
    return eval_json("--sae", "exact")


@pytest.fixture(scope="module")
def text_report(eval_env: Path) -> str:
    """The readable report of layer20 on 4 images (the acceptance command, shortened)."""
    code, out, err = run_cli("eval", str(SAMPLE), "--sae", "layer20", "--limit", "4", "--batch-size", "4")
    assert code == 0, err
    return out


def test_exact_sae_gives_the_same_loss_and_accuracy_as_no_sae(exact: dict[str, Any]) -> None:
    conditions = exact["downstream"]["conditions"]
    original = conditions["original"]
    assert original["loss"] > 0
    for name in ("reconstruction", "reconstruction+error"):
        assert conditions[name]["loss"] == pytest.approx(original["loss"], abs=1e-5)
        assert conditions[name]["top1"] == original["top1"]
        assert conditions[name]["top5"] == original["top5"]
        assert conditions[name]["max_abs_diff_to_original"] < 1e-4
        assert conditions[name]["mean_cosine_to_original"] == pytest.approx(1.0, abs=1e-6)
    for mode in ("raw", "standardised"):
        metrics = exact["reconstruction"][mode]
        assert metrics["tokens"] == LIMIT * 257
        assert metrics["sum_mse"] < 1e-8
        assert metrics["explained_variance"] == pytest.approx(1.0, abs=1e-8)
        assert metrics["normalised_mse"] < 1e-8
        assert 0 < metrics["l0"] < TINY_WIDTH  # every latent is kept; only the positive ones count
    assert exact["reconstruction"]["hub_readme"] is None  # a user entry, not a built-in CLIP-Scope SAE


def test_reconstruction_plus_error_equals_original(layer20: dict[str, Any]) -> None:
    conditions = layer20["downstream"]["conditions"]
    original, restored = conditions["original"], conditions["reconstruction+error"]
    assert restored["loss"] == pytest.approx(original["loss"], abs=1e-5)
    assert (restored["top1"], restored["top5"]) == (original["top1"], original["top5"])
    assert restored["max_abs_diff_to_original"] < 1e-5
    assert conditions["reconstruction"]["max_abs_diff_to_original"] > 1e-2  # the random tiny SAE is lossy


def _reference(fetched: Any, n: int) -> dict[str, Any]:
    """Loss, accuracy and raw/standardised metrics of the first n sample images, without saetui's eval code."""
    import open_clip

    model = open_clip.create_model(f"local-dir:{fetched.model_dir}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{fetched.model_dir}")
    ckpt = load_checkpoint(fetched.checkpoint_path)
    prep = load_preprocessing(fetched.model_dir)
    items = list(islice(open_source(str(SAMPLE)).items(), n))
    pixels = torch.from_numpy(
        np.stack([preprocess_image(Image.open(item.path).convert("RGB"), prep) for item in items])
    )
    labels = [item.label for item in items]
    names = class_names()
    with torch.no_grad():
        text = torch.nn.functional.normalize(
            model.encode_text(tokenizer([f"A photo of a {name}." for name in names])), dim=-1
        )
        captured: list[torch.Tensor] = []
        block = model.visual.transformer.resblocks[LAYER]
        handle = block.register_forward_hook(lambda m, a, out: captured.append(out.clone()))
        original = model.encode_image(pixels, normalize=True)
        handle.remove()
        x = captured[0].reshape(-1, captured[0].shape[-1])
        _, _, recon = dense_reference_encode(ckpt, x)
        handle = block.register_forward_hook(lambda m, a, out: recon.reshape(out.shape))
        spliced = model.encode_image(pixels, normalize=True)
        handle.remove()
    scale = float(model.logit_scale.detach().exp())
    target = torch.tensor([names.index(label) for label in labels])
    result: dict[str, Any] = {}
    for name, emb in (("original", original), ("reconstruction", spliced)):
        losses = []
        for start in range(0, n, BATCH):
            logits = scale * emb[start : start + BATCH] @ text[target[start : start + BATCH]].T
            diag = torch.arange(len(logits))
            ce = torch.nn.functional.cross_entropy
            losses.append(float(ce(logits, diag) + ce(logits.T, diag)) / 2)
        top = (emb @ text.T).topk(5, dim=1).indices
        result[name] = {
            "loss": float(np.mean(losses)),
            "top1": float((top[:, 0] == target).float().mean()),
            "top5": float((top == target[:, None]).any(dim=1).float().mean()),
        }

    def metrics(xs: np.ndarray, rs: np.ndarray, values: np.ndarray) -> dict[str, float]:
        """The README's formulas in numpy float64."""
        sse = ((xs - rs) ** 2).sum(axis=1)
        total = ((xs - xs.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        return {
            "sum_mse": sse.mean(),
            "explained_variance": (1 - sse / total).mean(),
            "normalised_mse": sse.sum() / ((xs - xs.mean(axis=0)) ** 2).sum(),
            "l0": (values > 0).sum(axis=1).mean(),
        }

    values, _, _ = dense_reference_encode(ckpt, x)
    result["raw"] = metrics(x.double().numpy(), recon.double().numpy(), values.numpy())
    tokens_per_batch = BATCH * 257
    zs, zrs, zvs = [], [], []
    for start in range(0, len(x), tokens_per_batch):
        chunk = x[start : start + tokens_per_batch].double()
        z = ((chunk - chunk.mean(0)) / chunk.std(0, correction=0)).float()
        zv, _, zr = dense_reference_encode(ckpt, z)
        zs.append(z.double().numpy()), zrs.append(zr.double().numpy()), zvs.append(zv.numpy())
    result["standardised"] = metrics(np.concatenate(zs), np.concatenate(zrs), np.concatenate(zvs))
    return result


def test_figures_match_an_independent_reference(layer20: dict[str, Any], eval_env: Path) -> None:
    reference = _reference(fetch("layer20"), LIMIT)
    conditions = layer20["downstream"]["conditions"]
    assert layer20["downstream"]["label_set"] == "imagenet"
    assert layer20["downstream"]["labels"] == 1000
    assert layer20["downstream"]["loss_batches"] == LIMIT // BATCH
    for name in ("original", "reconstruction"):
        assert conditions[name]["loss"] == pytest.approx(reference[name]["loss"], rel=1e-4)
        assert conditions[name]["top1"] == pytest.approx(reference[name]["top1"])
        assert conditions[name]["top5"] == pytest.approx(reference[name]["top5"])
    assert conditions["reconstruction"]["loss"] != pytest.approx(conditions["original"]["loss"], rel=1e-3)
    for mode in ("raw", "standardised"):
        for metric, value in reference[mode].items():
            assert layer20["reconstruction"][mode][metric] == pytest.approx(value, rel=1e-4), (mode, metric)


def test_text_report_shows_every_section_beside_the_hub_readme(text_report: str) -> None:
    out = text_report
    for condition in CONDITIONS:
        assert any(line.strip().startswith(condition + " ") for line in out.splitlines()), condition
    assert "loss change with the SAE spliced in" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("metric"))
    assert header.split()[1:3] == ["raw", "standardised"] and "hub README (standardised)" in header
    mse_line = next(line for line in out.splitlines() if line.strip().startswith("sum-MSE per token"))
    assert mse_line.split()[-1] == "278.1"  # layer 20 of the hub README table
    for name in ("explained variance", "normalised MSE (saev)", "L0 (kept values > 0)", "dead fraction"):
        assert name in out
    assert "Neuron alignment" in out and "random directions" in out
    assert any(line.strip().startswith("features ") for line in out.splitlines())


def test_db_holds_eval_results_and_neuron_alignment(layer20_run: tuple[dict[str, Any], Path]) -> None:
    layer20, db = layer20_run
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = dict(
            ((section, condition, metric), (value, ref))
            for section, condition, metric, value, ref in con.execute(
                "SELECT section, condition, metric, value, reference FROM eval_results WHERE eval_id = 1"
            ).fetchall()
        )
        alignment = con.execute(
            "SELECT count(*), min(max_abs_cosine), max(max_abs_cosine), max(neuron), min(eval_id) FROM neuron_alignment"
        ).fetchall()[0]
    finally:
        con.close()
    loss = layer20["downstream"]["conditions"]["original"]["loss"]
    assert rows[("downstream", "original", "loss")][0] == pytest.approx(loss)
    assert rows[("reconstruction", "standardised", "sum_mse")][1] == pytest.approx(278.06)
    assert rows[("reconstruction", "raw", "sum_mse")][1] is None
    assert rows[("alignment", "features", "mean")][0] == pytest.approx(layer20["alignment"]["features"]["mean"])
    count, low, high, neuron, eval_id = alignment
    assert count == 512 and 0 < low <= high <= 1 and neuron < 4 * TINY_WIDTH and eval_id == 1


def test_db_of_another_sae_is_refused_before_any_work(eval_env: Path) -> None:
    db = build_db(eval_env / "index-layer20.duckdb", [(0, "/a.jpg", "cat")], [(0, 0, 1, 1.0)], n_features=512)
    code, out, err = run_cli("eval", str(SAMPLE), "--sae", "exact", "--db", str(db))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "indexes lewington/CLIP-ViT-L-scope 20_resid/1200013184.pt" in err


def test_bf16_runs_under_autocast(eval_env: Path) -> None:
    report = eval_json("--sae", "layer20", "--precision", "bf16", "--limit", "4", "--batch-size", "4")
    conditions = report["downstream"]["conditions"]
    assert report["settings"]["precision"] == "bf16"
    assert conditions["reconstruction+error"]["max_abs_diff_to_original"] < 1e-2
    assert math.isfinite(conditions["reconstruction"]["loss"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--label-set", "words"], "unknown label set 'words'"),
        (["--precision", "fp8"], "unknown precision 'fp8'"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args: list[str], message: str) -> None:
    code, out, err = run_cli("eval", str(SAMPLE), *args)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_alignment_finds_the_neuron_a_feature_reads() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 20, generator=gen)  # Linear(20 neurons -> d_in 8): columns are the directions
    enc = torch.randn(8, 5, generator=gen)
    enc[:, 2] = -3 * weight[:, 13]  # feature 2 reads neuron 13 (sign and scale do not matter)
    result = neuron_alignment(enc, weight)
    assert result.max_abs_cosine[2] == pytest.approx(1.0, abs=1e-6) and result.neuron[2] == 13
    assert result.n_neurons == 20 and sum(count for _, _, count in result.histogram) == 5
    flipped = neuron_alignment(enc, weight.T.contiguous())  # the other orientation reads the same directions
    assert np.allclose(flipped.max_abs_cosine, result.max_abs_cosine) and (flipped.neuron == result.neuron).all()
    assert neuron_directions(weight, 8).shape == (20, 8)
    with pytest.raises(Exception, match="none of whose sides is d_in = 7"):
        neuron_directions(weight, 7)


def test_contrastive_loss_known_answer() -> None:
    images = torch.eye(2)
    texts = torch.eye(2)
    scale = 3.0
    expected = math.log(1 + math.exp(-scale))  # each row: softmax of (s, 0) at the diagonal
    assert contrastive_loss(images, texts, scale) == pytest.approx(expected)
    assert contrastive_loss(images, texts.flip(0), scale) == pytest.approx(math.log(1 + math.exp(scale)))


def test_label_set_choice() -> None:
    names = ["tench", "goldfish", "great white shark"]
    assert resolve_label_set("auto", {"tench"}, names) == ("imagenet", names)
    assert resolve_label_set("auto", {"tench", "cat"}, names) == ("dataset", ["cat", "tench"])
    assert resolve_label_set("dataset", {"tench"}, names) == ("dataset", ["tench"])
    with pytest.raises(UsageError, match="'cat' are not ImageNet class names"):
        resolve_label_set("imagenet", {"cat"}, names)
