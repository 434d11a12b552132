"""`saetui index` end to end on the ImageNet sample: contents, fidelity to an independent reference, bad input.

One run over the 300 sample images (the acceptance run, statistics included) is shared by the read-only
tests of this module. The CLI runs in-process with HF_HUB_OFFLINE set, so the SAE comes from the session's
fetched layer20 cache exactly as `HF_HUB_OFFLINE=1 saetui index ...` would take it.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from harness.badimages import SAMPLE, copy_imagenet_sample, make_bad_input_folder
from harness.fakehub import FetchedCache
from harness.reference import dense_reference_encode, hf_hidden_states, open_clip_to_hf
from harness.tables import rows
from harness.tiny import tiny_open_clip_config, tiny_state_dict
from saetui import imagenet
from saetui.commands.main import main
from saetui.families.clip_scope import load_checkpoint
from saetui.stats import StatsOptions

LAYER = 20
N_TOKENS = 257


class Indexed(NamedTuple):
    """A finished `saetui index` run: its database, exit code, stderr and wall time."""

    db: Path
    code: int
    stderr: str
    seconds: float


def run_cli(*args: str) -> tuple[int, str]:
    """main(args) in this process, returning the exit code and what it wrote to stderr."""
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        code = main(list(args))
    return code, buffer.getvalue()


def scalar(db: Path, sql: str) -> object:
    """The single value of a query."""
    return rows(db, sql)[0][0]


@pytest.fixture(scope="module")
def offline(fetched_layer20: FetchedCache) -> Iterator[FetchedCache]:
    """This process's huggingface_hub offline and saetui pointed at the session's fetched layer20 cache."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        patch.setenv("SAETUI_CACHE", str(fetched_layer20.cache_dir))
        patch.setenv("SAETUI_CONFIG", fetched_layer20.env["SAETUI_CONFIG"])
        patch.delenv("SAETUI_DB", raising=False)
        yield fetched_layer20


@pytest.fixture(scope="module")
def sample_run(offline: FetchedCache, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """`saetui index <imagenet-sample>` over all 300 images, statistics included (the acceptance run)."""
    db = tmp_path_factory.mktemp("sample") / "imagenet.duckdb"
    started = time.perf_counter()
    code, stderr = run_cli("index", str(SAMPLE), "--db", str(db), "--batch-size", "16")
    return Indexed(db, code, stderr, time.perf_counter() - started)


@pytest.fixture(scope="module")
def checkpoint(offline: FetchedCache):
    """The fetched tiny layer20 checkpoint."""
    path = next(offline.cache_dir.rglob("20_resid/1200013184.pt"))
    return load_checkpoint(path)


@pytest.fixture(scope="module")
def model_dir(offline: FetchedCache) -> Path:
    """The fetched tiny model's snapshot folder."""
    return next(offline.cache_dir.rglob("preprocessor_config.json")).parent


def sample_files() -> list[Path]:
    """The 300 sample images in source order (sorted relative paths)."""
    return sorted(SAMPLE.rglob("*.JPEG"), key=lambda p: p.relative_to(SAMPLE).as_posix())


def test_sample_stores_every_token_and_pair(sample_run: Indexed, checkpoint) -> None:
    """300 images x 257 tokens x k pairs, every token's error, nothing skipped, a summary line saying so."""
    db = sample_run.db
    assert sample_run.code == 0, sample_run.stderr
    assert scalar(db, "SELECT count(*) FROM images") == 300
    assert scalar(db, "SELECT count(*) FROM skipped") == 0
    assert scalar(db, "SELECT count(*) FROM token_errors") == 300 * N_TOKENS
    assert scalar(db, "SELECT count(*) FROM activations") == 300 * N_TOKENS * checkpoint.k
    per_token = rows(
        db, "SELECT min(n), max(n), count(*) FROM (SELECT count(*) n FROM activations GROUP BY image_id, token)"
    )
    assert per_token == [(checkpoint.k, checkpoint.k, 300 * N_TOKENS)]
    distinct = rows(db, "SELECT count(DISTINCT (image_id, token, feature)) FROM activations")[0][0]
    assert distinct == 300 * N_TOKENS * checkpoint.k
    assert rows(db, "SELECT min(token), max(token) FROM token_errors") == [(0, 256)]
    assert scalar(db, "SELECT count(*) FROM token_errors WHERE NOT (sse >= 0 AND total_ss > 0)") == 0
    assert "300 images indexed, 0 skipped" in sample_run.stderr
    assert f"{300 * N_TOKENS:,} tokens" in sample_run.stderr


def test_sample_images_rows(sample_run: Indexed) -> None:
    """Paths, ImageNet class-name labels, sizes, content hashes and JPEG thumbnails of the input crops."""
    wnids = imagenet.wnids()
    import open_clip

    names = dict(zip(wnids, open_clip.IMAGENET_CLASSNAMES, strict=True))
    stored = {
        row[0]: row[1:]
        for row in rows(
            sample_run.db, "SELECT path, label, width, height, content_hash, source_row, thumbnail FROM images"
        )
    }
    files = sample_files()
    assert sorted(stored) == sorted(str(f) for f in files)
    for row, file in enumerate(files):
        label, width, height, digest, source_row, thumbnail = stored[str(file)]
        assert label == names[file.parent.name]
        with Image.open(file) as image:
            assert (width, height) == image.size
        assert digest == hashlib.sha256(file.read_bytes()).hexdigest()
        assert source_row == row
        with Image.open(io.BytesIO(thumbnail)) as thumb:
            assert (thumb.format, thumb.size, thumb.mode) == ("JPEG", (96, 96), "RGB")


def test_greyscale_images_are_indexed(sample_run: Indexed) -> None:
    """The sample's greyscale (mode L) JPEGs are converted and indexed with all their tokens."""
    grey = [f for f in sample_files() if Image.open(f).mode == "L"]
    assert len(grey) >= 3
    for file in grey:
        found = rows(
            sample_run.db,
            "SELECT count(*) FROM token_errors JOIN images USING (image_id) WHERE path = ?",
            [str(file)],
        )
        assert found == [(N_TOKENS,)]


def test_runs_row_records_the_run(sample_run: Indexed, checkpoint, offline: FetchedCache) -> None:
    """The runs table names the model, layer, SAE file and revision, k, tokens, preprocessing and versions."""
    (run,) = rows(
        sample_run.db,
        "SELECT model_id, pretrained, layer, sae_name, sae_repo, sae_file, sae_revision, sae_checkpoint, k, "
        "n_features, tokens, precision, device, batch_size, mean, std, preprocess_source, status, "
        "torch_version, open_clip_version, saetui_version FROM runs",
    )
    assert run[:6] == (
        "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
        "laion2b_s32b_b82k",
        LAYER,
        "layer20",
        "lewington/CLIP-ViT-L-scope",
        "20_resid/1200013184.pt",
    )
    assert len(run[6]) == 40
    assert run[7:14] == (1200013184, checkpoint.k, checkpoint.n_features, "all", "fp32", "cpu", 16)
    assert list(run[14]) == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert list(run[15]) == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert run[16:18] == ("preprocessor_config.json", "done")
    assert all(run[18:21])
    model_dir = next(offline.cache_dir.rglob("open_clip_config.json")).parent
    assert rows(sample_run.db, "SELECT model_revision FROM runs") == [(model_dir.name,)]  # the resolved commit


def test_sample_run_says_what_it_used_and_ran_stats(sample_run: Indexed, checkpoint) -> None:
    """The mean/std warning names the file used; statistics ran at the end and built the features table."""
    assert "preprocessor_config.json normalises with mean" in sample_run.stderr
    assert "using preprocessor_config.json's" in sample_run.stderr
    assert "statistics computed" in sample_run.stderr
    assert scalar(sample_run.db, "SELECT count(*) FROM features") == checkpoint.n_features


def test_stats_after_index_recomputes_nothing(sample_run: Indexed, capsys: pytest.CaptureFixture) -> None:
    """`saetui stats` with its defaults finds what index computed up to date; feature_images has the default ranks."""
    capsys.readouterr()
    assert main(["stats", "--db", str(sample_run.db)]) == 0
    captured = capsys.readouterr()
    assert "computed no (up to date)" in captured.out, captured.err
    top = StatsOptions().top_images
    assert top == 200  # the README's number
    assert scalar(sample_run.db, "SELECT max(rank) FROM feature_images") == top
    busiest = scalar(sample_run.db, "SELECT max(n_images) FROM features")
    assert (
        busiest > top
        and scalar(sample_run.db, "SELECT max(n) FROM (SELECT count(*) n FROM feature_images GROUP BY feature)") == top
    )


def test_sample_statistics_cover_every_active_feature(sample_run: Indexed, capsys: pytest.CaptureFixture) -> None:
    """Every feature active anywhere has exact counts in `features`, the rest are dead, and the lens ranks labels."""
    active = dict(rows(sample_run.db, "SELECT feature, count(*) FROM activations WHERE value > 0 GROUP BY feature"))
    stored = {f: (n, dead) for f, n, dead in rows(sample_run.db, "SELECT feature, n_tokens, dead FROM features")}
    assert active
    assert all(stored[f] == (n, False) for f, n in active.items())
    assert all(dead and n == 0 for f, (n, dead) in stored.items() if f not in active)
    feature = min(active)
    sql = f"select rank, label, score from logit_lens where feature = {feature} order by rank"
    capsys.readouterr()
    assert main(["query", sql, "--db", str(sample_run.db), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "rank,label,score" and len(lines) == 11
    ranks = [int(line.split(",")[0]) for line in lines[1:]]
    scores = [float(line.rsplit(",", 1)[1]) for line in lines[1:]]
    assert ranks == list(range(1, 11)) and scores == sorted(scores, reverse=True)


def test_moments_cover_every_token(sample_run: Indexed) -> None:
    """The batch moments add up to every stored token and to the sum of x computed from the codes' run."""
    tokens, sum_sq = rows(sample_run.db, "SELECT sum(tokens), sum(sum_sq) FROM batch_moments")[0]
    assert tokens == 300 * N_TOKENS
    # Forward batches of 16 are committed 256 images at a time: one moments row per commit.
    assert rows(sample_run.db, "SELECT first_image_id, last_image_id FROM batch_moments ORDER BY 1") == [
        (0, 255),
        (256, 299),
    ]
    assert sum_sq > 0


def test_codes_match_an_independent_reference(sample_run: Indexed, checkpoint, model_dir: Path) -> None:
    """HF processor + HF CLIPVisionModel hidden_states[21] + dense clipscope SAE give the same codes and errors."""
    from transformers import CLIPImageProcessorPil

    files = sample_files()
    grey = next(f for f in files if Image.open(f).mode == "L")
    chosen = [files[0], files[137], grey]
    processor = CLIPImageProcessorPil.from_pretrained(model_dir)
    images = [Image.open(f) for f in chosen]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    model = open_clip_to_hf(tiny_state_dict(0), tiny_open_clip_config()["model_cfg"])
    hidden = hf_hidden_states(model, pixels)[LAYER + 1]
    for file, x in zip(chosen, hidden, strict=True):
        values, indices, recon = dense_reference_encode(checkpoint, x)
        sse = (x - recon).pow(2).sum(dim=-1)
        stored = rows(
            sample_run.db,
            "SELECT token, feature, value FROM activations JOIN images USING (image_id) "
            "WHERE path = ? ORDER BY token, feature",
            [str(file)],
        )
        expected = sorted(
            (token, int(indices[token, j]), float(values[token, j]))
            for token in range(N_TOKENS)
            for j in range(checkpoint.k)
        )
        assert [(t, f) for t, f, _ in stored] == [(t, f) for t, f, _ in expected]
        got = np.array([v for _, _, v in stored])
        want = np.array([v for _, _, v in expected])
        assert np.abs(got - want).max() <= 1e-4
        errors = rows(
            sample_run.db,
            "SELECT sse FROM token_errors JOIN images USING (image_id) WHERE path = ? ORDER BY token",
            [str(file)],
        )
        assert np.allclose([e for (e,) in errors], sse.numpy(), rtol=1e-4, atol=1e-5)


def test_bad_input_folder(offline: FetchedCache, tmp_path: Path) -> None:
    """Every good or convertible file is indexed, every bad one is in skipped with its reason; exit 0."""
    root = tmp_path / "mixed"
    expected = make_bad_input_folder(root)
    db = tmp_path / "bad.duckdb"
    code, stderr = run_cli("index", str(root), "--db", str(db), "--tokens", "cls", "--batch-size", "4", "--no-stats")
    assert code == 0, stderr
    indexed = {Path(p).relative_to(root).as_posix() for (p,) in rows(db, "SELECT path FROM images")}
    skipped = {Path(p).relative_to(root).as_posix(): r for p, r in rows(db, "SELECT path, reason FROM skipped")}
    good = {name for name, outcome in expected.items() if outcome is None}
    bad = {name: outcome for name, outcome in expected.items() if outcome is not None}
    assert indexed == good
    assert set(skipped) == set(bad)
    for name, outcome in bad.items():
        assert outcome in skipped[name], (name, skipped[name])
    assert f"{len(good)} images indexed, {len(bad)} skipped" in stderr
    assert "  skipped 1: zero-byte file" in stderr
    assert "  skipped 2: unreadable" in stderr  # the two symlinks of the loop
    assert scalar(db, "SELECT count(*) FROM token_errors") == len(good)


def test_token_sets_store_the_chosen_positions(offline: FetchedCache, sample_run: Indexed, tmp_path: Path) -> None:
    """--tokens cls stores token 0 and --tokens patches tokens 1..256, with the codes of the full run."""
    for tokens, expected in (("cls", (0, 0, 1)), ("patches", (1, 256, 256))):
        db = tmp_path / f"{tokens}.duckdb"
        code, stderr = run_cli("index", str(SAMPLE), "--db", str(db), "--tokens", tokens, "--limit", "3", "--no-stats")
        assert code == 0, stderr
        assert rows(db, "SELECT min(token), max(token), count(DISTINCT token) FROM token_errors") == [expected]
        subset = rows(
            db,
            "SELECT i.path, a.token, a.feature, a.value FROM activations a JOIN images i USING (image_id) ORDER BY ALL",
        )
        full = rows(
            sample_run.db,
            "SELECT i.path, a.token, a.feature, a.value FROM activations a JOIN images i USING (image_id) "
            f"WHERE i.source_row < 3 AND a.token BETWEEN {expected[0]} AND {expected[1]} ORDER BY ALL",
        )
        assert [r[:3] for r in subset] == [r[:3] for r in full]
        assert np.allclose([r[3] for r in subset], [r[3] for r in full], atol=1e-5)


def test_index_reads_the_checkpoint_once(
    offline: FetchedCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetch's validation, the index run and the statistics after it share one load of the checkpoint file."""
    import torch

    from saetui.families import loading as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "_LAST_LOADED", [])
    loads: list[str] = []
    original = torch.load

    def counting_load(path, *args, **kwargs):  # noqa: ANN001, ANN202 - torch.load's own signature
        """torch.load that records which checkpoint files it reads."""
        if str(path).endswith(".pt"):
            loads.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    source = tmp_path / "two"
    copy_imagenet_sample(source, wnids=2, split=None)
    code, stderr = run_cli("index", str(source), "--db", str(tmp_path / "once.duckdb"), "--tokens", "cls")
    assert code == 0, stderr
    assert "statistics computed" in stderr
    assert len(loads) == 1, loads
