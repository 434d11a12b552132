"""Logit lens with the tiny CLIP: a direction built to point at a label's text embedding ranks that label first."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

import saetui
from harness.fakehub import FetchedCache
from harness.handbuilt import build_db
from harness.tiny import tiny_model_repo_files, tiny_sae_tensors, write_files
from saetui.models.trunk import load_clip
from saetui.stats import SaeFiles, StatsOptions, compute_stats
from saetui.stats.lens import prompt_templates, text_embeddings

LABELS = ["cat", "dog", "bird", "fish", "car", "tree"]
N_FEATURES = 512
TARGETS = {7: "dog", 11: "tree", 13: "bird"}  # feature -> the label its direction is built for


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny open_clip repo on disk."""
    return write_files(tmp_path_factory.mktemp("model"), tiny_model_repo_files())


@pytest.fixture(scope="module")
def model(model_dir: Path) -> torch.nn.Module:
    """The tiny CLIP."""
    return load_clip(model_dir, "cpu")


@pytest.fixture(scope="module")
def text(model: torch.nn.Module, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Normalised text embeddings of "A photo of a {label}." for LABELS."""
    cache = tmp_path_factory.mktemp("cache")
    return text_embeddings(model, model_dir, LABELS, prompt_templates("single"), cache, "tiny")


def _direction_without_ln(model: torch.nn.Module, target: np.ndarray) -> torch.Tensor:
    """A residual direction d with d @ proj = target exactly (least-norm solution)."""
    proj = model.visual.proj.detach().double().numpy()  # [width, embed]
    d, *_ = np.linalg.lstsq(proj.T, target.astype(np.float64), rcond=None)
    return torch.from_numpy(d).float()


def _direction_with_ln(model: torch.nn.Module, target: np.ndarray) -> torch.Tensor:
    """A direction u (mean 0, variance 1) with ln_post(u) @ proj = c * target, c > 0."""
    ln = model.visual.ln_post
    w, b = ln.weight.detach().double().numpy(), ln.bias.detach().double().numpy()
    proj = model.visual.proj.detach().double().numpy()
    width = len(w)
    a = (w[:, None] * proj).T  # u @ diag(w) @ proj = a @ u
    m = np.zeros((a.shape[0] + 1, width + 1))
    m[: a.shape[0], :width] = a
    m[: a.shape[0], width] = -target
    m[a.shape[0], :width] = 1.0 / width
    r = np.concatenate([-(b @ proj), [0.0]])
    v0, *_ = np.linalg.lstsq(m, r, rcond=None)
    null = np.linalg.svd(m)[2][m.shape[0] :]
    for n in null:
        u0, nu = v0[:width], n[:width]
        # |u0 + s nu|^2 = width  ->  quadratic in s
        qa, qb, qc = nu @ nu, 2 * u0 @ nu, u0 @ u0 - width
        disc = qb * qb - 4 * qa * qc
        for s in ((-qb + np.sqrt(disc)) / (2 * qa), (-qb - np.sqrt(disc)) / (2 * qa)):
            v = v0 + s * n
            if v[width] > 0:
                return torch.from_numpy(v[:width]).float()
    raise AssertionError("no positive solution")


def _checkpoint(path: Path, dec_rows: dict[int, torch.Tensor], enc_cols: dict[int, torch.Tensor]) -> Path:
    """The tiny SAE in CLIP-Scope format with some decoder rows / encoder columns replaced."""
    pre_b, enc, dec = tiny_sae_tensors(n_features=N_FEATURES)
    for f, row in dec_rows.items():
        dec[f] = row
    for f, col in enc_cols.items():
        enc[:, f] = col
    state = OrderedDict([("pre_b", pre_b), ("enc", enc), ("dec", dec)])
    torch.save({"model_state_dict": state, "d_in": 32, "n_features": N_FEATURES, "k": 32}, path)
    return path


def _db(tmp_path: Path) -> Path:
    """A database whose images carry LABELS, so the lens ranks the dataset's labels."""
    images = [(i, f"{i}.jpg", LABELS[i % len(LABELS)]) for i in range(12)]
    acts = [(i, 0, i, 1.0) for i in range(12)]
    return build_db(tmp_path / "lens.duckdb", images, acts, N_FEATURES, tokens_per_image=1)


def _lens_rows(path: Path, feature: int) -> list[tuple]:
    """(rank, label, score, prob) of one feature."""
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute(
        "SELECT rank, label, score, prob FROM logit_lens WHERE feature = $f ORDER BY rank", {"f": feature}
    ).fetchall()
    con.close()
    return rows


@pytest.mark.parametrize("variant", ["decoder", "encoder", "decoder+pre_b"])
@pytest.mark.parametrize("ln", [False, True])
def test_built_direction_ranks_its_label_first(
    variant: str, ln: bool, tmp_path: Path, model: torch.nn.Module, model_dir: Path, text: np.ndarray
) -> None:
    """For every direction variant, with and without ln_post, the constructed label is rank 1 with cosine 1."""
    build = _direction_with_ln if ln else _direction_without_ln
    pre_b = tiny_sae_tensors(n_features=N_FEATURES)[0]
    directions = {f: build(model, text[LABELS.index(label)]) for f, label in TARGETS.items()}
    if variant == "decoder+pre_b":
        directions = {f: d - pre_b for f, d in directions.items()}
    dec_rows = directions if variant != "encoder" else {}
    enc_cols = directions if variant == "encoder" else {}
    checkpoint = _checkpoint(tmp_path / "sae.pt", dec_rows, enc_cols)
    path = _db(tmp_path)
    options = StatsOptions(lens_direction=variant, lens_ln=ln, lens_top=3)
    summary = compute_stats(
        path, options, cache=tmp_path / "cache", sae_files=SaeFiles(checkpoint, model_dir), progress=None
    )
    assert summary.lens
    for feature, label in TARGETS.items():
        rows = _lens_rows(path, feature)
        assert [r[0] for r in rows] == [1, 2, 3]
        assert rows[0][1] == label
        assert rows[0][2] == pytest.approx(1.0, abs=1e-4)
        assert rows[0][3] > rows[1][3] > rows[2][3]


def test_prob_is_softmax_over_all_labels(tmp_path: Path, model: torch.nn.Module, model_dir: Path) -> None:
    """prob = softmax over every label of cosine x exp(logit_scale), checked against an independent computation."""
    checkpoint = _checkpoint(tmp_path / "sae.pt", {}, {})
    path = _db(tmp_path)
    compute_stats(
        path,
        StatsOptions(lens_top=len(LABELS)),
        cache=tmp_path / "cache",
        sae_files=SaeFiles(checkpoint, model_dir),
        progress=None,
    )
    rows = _lens_rows(path, 5)
    assert sum(r[3] for r in rows) == pytest.approx(1.0)
    dec = tiny_sae_tensors(n_features=N_FEATURES)[2][5]
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.visual.ln_post(dec) @ model.visual.proj, dim=-1)
        from saetui.stats.lens import text_embeddings as embed

        text = torch.from_numpy(embed(model, model_dir, LABELS, ["A photo of a {label}."], tmp_path, "x"))
        cos = text @ emb
        prob = torch.softmax(cos * model.logit_scale.exp(), dim=0)
    by_label = {label: (score, p) for _, label, score, p in rows}
    for i, label in enumerate(LABELS):
        assert by_label[label][0] == pytest.approx(float(cos[i]), abs=1e-5)
        assert by_label[label][1] == pytest.approx(float(prob[i]), abs=1e-5)
    con = duckdb.connect(str(path), read_only=True)
    lens_label = con.execute("SELECT lens_label FROM features WHERE feature = 5").fetchall()[0][0]
    con.close()
    assert lens_label == rows[0][1]


def test_text_embeddings_are_cached(model: torch.nn.Module, model_dir: Path, tmp_path: Path) -> None:
    """The second call reads the .npy from the cache instead of running the text tower."""
    first = text_embeddings(model, model_dir, LABELS, prompt_templates("imagenet80")[:3], tmp_path, "k")
    files = list((tmp_path / "text_embeddings").glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.full_like(first, 7.0))
    again = text_embeddings(model, model_dir, LABELS, prompt_templates("imagenet80")[:3], tmp_path, "k")
    assert (again == 7.0).all()
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert len(prompt_templates("imagenet80")) == 80


def test_free_text_search_finds_the_built_feature(
    tmp_path: Path, model: torch.nn.Module, model_dir: Path, text: np.ndarray
) -> None:
    """Searching for a label's prompt returns the feature whose lens embedding is that text embedding."""
    directions = {f: _direction_without_ln(model, text[LABELS.index(label)]) for f, label in TARGETS.items()}
    checkpoint = _checkpoint(tmp_path / "sae.pt", directions, {})
    path = _db(tmp_path)
    options = StatsOptions(lens_ln=False)
    compute_stats(path, options, cache=tmp_path / "cache", sae_files=SaeFiles(checkpoint, model_dir), progress=None)
    with saetui.open(path, cache=tmp_path / "cache") as db:
        hits = db.search("A photo of a tree.", n=3)
    assert hits.columns == ["feature", "score", "lens_label", "top_label"]
    assert hits["feature"][0] == 11 and hits["score"][0] == pytest.approx(1.0, abs=1e-4)
    assert hits["lens_label"][0] == "tree"


def test_stats_finds_the_fetched_sae_in_the_hub_cache(layer20_cache: FetchedCache, tmp_path: Path) -> None:
    """Without explicit files, stats takes the run's checkpoint and model from the hub cache (no download)."""
    path = _db(tmp_path)
    summary = compute_stats(path, StatsOptions(lens_top=2), cache=layer20_cache.cache_dir, progress=None)
    assert summary.lens and summary.neighbours
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT feature, rank, label FROM logit_lens ORDER BY feature, rank LIMIT 4").fetchall()
    model_dir = con.execute("SELECT model_dir FROM stats_info").fetchall()[0][0]
    con.close()
    assert [r[:2] for r in rows] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(r[2] in LABELS for r in rows)
    assert str(layer20_cache.cache_dir.resolve()) in model_dir
