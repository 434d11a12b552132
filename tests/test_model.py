"""VisionTrunk fidelity: equal to HF CLIPVisionModel hidden_states[L + 1] and open_clip's intermediates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.reference import hf_hidden_states, open_clip_to_hf
from harness.sample import SAMPLE
from harness.tiny import (
    TINY_LAYERS,
    TINY_WIDTH,
    _tiny_model_repo_files,
    tiny_model_repo_files,
    tiny_open_clip_config,
    tiny_state_dict,
    write_files,
)
from saetui.device import resolve_device
from saetui.errors import DataError, NotFoundError, UsageError
from saetui.models.hooks import HookPoint
from saetui.models.preprocess import load_preprocessing, preprocess_image
from saetui.models.trunk import VisionTrunk, hook_width, load_clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny open_clip repo on disk."""
    return write_files(tmp_path_factory.mktemp("model"), tiny_model_repo_files())


@pytest.fixture(scope="module")
def pixels(model_dir: Path) -> torch.Tensor:
    """Four real ImageNet images (one greyscale) preprocessed like HF CLIPImageProcessor."""
    prep = load_preprocessing(model_dir)
    files = sorted(SAMPLE.glob("*/*"))
    grey = next(f for f in files if Image.open(f).mode == "L")
    chosen = [files[0], files[100], files[200], grey]
    return torch.from_numpy(np.stack([preprocess_image(Image.open(f), prep) for f in chosen]))


@pytest.fixture(scope="module")
def hf_states(pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Hidden states of HF's CLIPVisionModel on the converted tiny weights."""
    model = open_clip_to_hf(tiny_state_dict(), tiny_open_clip_config()["model_cfg"])
    states = hf_hidden_states(model, pixels)
    assert len(states) == TINY_LAYERS + 1
    return states


@pytest.mark.parametrize("layer", [0, 2, 11, 20, 22, 23])
def test_trunk_matches_hf_hidden_states(layer: int, model_dir: Path, pixels: torch.Tensor, hf_states) -> None:
    """Block L's output equals HF hidden_states[L + 1] within 1e-5 (fp32), CLS first, 257 tokens."""
    trunk = VisionTrunk.from_dir(model_dir, layer, device="cpu")
    out = trunk(pixels)
    assert out.shape == (4, 257, TINY_WIDTH) and out.dtype == torch.float32
    assert (trunk.width, trunk.layer, trunk.n_tokens, trunk.dtype) == (TINY_WIDTH, layer, 257, torch.float32)
    expected = hf_states[layer + 1]
    assert (out - expected).abs().max().item() <= 1e-5
    # The residual stream is non-trivial and differs between layers, so the comparison means something.
    assert (hf_states[layer + 1] - hf_states[layer]).abs().max().item() > 0.1


def test_sequence_first_blocks_are_detected_from_their_attention(
    model_dir: Path, pixels: torch.Tensor, hf_states
) -> None:
    """Blocks built sequence-first (open_clip 2.24: MultiheadAttention without batch_first, no flag on the
    transformer) still give HF's hidden states: the layout comes from the attention modules, not a default."""
    built = VisionTrunk.from_dir(model_dir, 2, device="cpu")
    transformer = built.visual.transformer
    for block in transformer.resblocks:
        block.attn.batch_first = False
    del transformer.batch_first
    trunk = VisionTrunk(built.visual, HookPoint(2), built.device, built.dtype)
    assert trunk.sequence_first and not built.sequence_first
    assert (trunk(pixels) - hf_states[3]).abs().max().item() <= 1e-5
    transformer.resblocks[1].attn.batch_first = True  # a mix has no single layout: refused, not guessed
    with pytest.raises(DataError, match="cannot tell the token layout"):
        VisionTrunk(built.visual, HookPoint(2), built.device, built.dtype)


def test_trunk_builds_and_computes_only_blocks_up_to_layer(model_dir: Path) -> None:
    """Later blocks, ln_post and proj are never built."""
    trunk = VisionTrunk.from_dir(model_dir, 5, device="cpu")
    assert len(trunk.visual.transformer.resblocks) == 6
    assert trunk.visual.proj is None and isinstance(trunk.visual.ln_post, torch.nn.Identity)
    names = [name for name, _ in trunk.named_parameters()]
    assert not any("ln_post" in n or n.endswith(".proj") for n in names)
    assert all(p.device.type == "cpu" and not p.is_meta for p in trunk.parameters())


def test_trunk_matches_open_clip_intermediates_and_bin_weights(
    model_dir: Path, pixels: torch.Tensor, tmp_path: Path
) -> None:
    """Same numbers as open_clip's full model forward_intermediates; the .bin weights load identically."""
    clip = load_clip(model_dir, "cpu")
    assert not clip.training
    out = clip.visual.forward_intermediates(
        pixels, indices=[20], intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
    )
    expected = torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)
    assert torch.equal(VisionTrunk.from_dir(model_dir, 20, device="cpu")(pixels), expected)
    files = {k: v for k, v in tiny_model_repo_files().items() if not k.endswith(".safetensors")}
    bin_dir = write_files(tmp_path, files)
    assert torch.equal(VisionTrunk.from_dir(bin_dir, 20, device="cpu")(pixels), expected)


def test_bf16_runs_in_bf16_and_returns_float32(model_dir: Path, pixels: torch.Tensor, hf_states) -> None:
    """bf16 precision keeps weights in bf16 (LayerNorm in fp32) and returns float32 close to fp32."""
    trunk = VisionTrunk.from_dir(model_dir, 20, device="cpu", precision="bf16")
    assert trunk.dtype == torch.bfloat16
    assert trunk.visual.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    out = trunk(pixels)
    assert out.dtype == torch.float32
    expected = hf_states[21]
    relative = (out - expected).norm() / expected.norm()
    assert 0 < relative.item() < 0.05


def test_hook_width_reads_config_only(model_dir: Path, tmp_path: Path) -> None:
    """hook_width needs only open_clip_config.json."""
    write_files(tmp_path, {"open_clip_config.json": json.dumps(tiny_open_clip_config()).encode()})
    assert hook_width(tmp_path) == hook_width(model_dir) == TINY_WIDTH


def test_bad_requests_and_broken_folders(model_dir: Path, tmp_path: Path) -> None:
    """Missing files, a layer past the last block, truncated weights and unknown devices fail in one line."""
    with pytest.raises(UsageError, match="layer 24 does not exist"):
        VisionTrunk.from_dir(model_dir, 24, device="cpu")
    with pytest.raises(UsageError, match="precision"):
        VisionTrunk.from_dir(model_dir, 2, device="cpu", precision="fp8")
    with pytest.raises(NotFoundError):
        VisionTrunk.from_dir(tmp_path / "nothing", 2, device="cpu")
    files = tiny_model_repo_files()
    broken = {
        "open_clip_config.json": files["open_clip_config.json"],
        "open_clip_model.safetensors": files["open_clip_model.safetensors"][:100_000],
    }
    with pytest.raises(DataError, match="cannot read weights") as info:
        VisionTrunk.from_dir(write_files(tmp_path / "broken", broken), 2, device="cpu")
    assert "\n" not in info.value.one_line()
    no_weights = write_files(tmp_path / "config_only", {"open_clip_config.json": files["open_clip_config.json"]})
    with pytest.raises(NotFoundError, match="open_clip_model.safetensors"):
        VisionTrunk.from_dir(no_weights, 2, device="cpu")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")


def test_resolve_device() -> None:
    """auto falls back to cpu without an accelerator; asking for a missing one is a usage error."""
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="not available"):
            resolve_device("cuda")


def test_tiny_repo_files_are_complete_and_deterministic() -> None:
    """The fake model repo holds the real repo's file names; same seed, same bytes (rebuilt, not cached)."""
    files = tiny_model_repo_files()
    assert set(files) == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.bin",
        "preprocessor_config.json",
        "README.md",
    }
    assert files == _tiny_model_repo_files.__wrapped__(0)
    state = tiny_state_dict()
    assert not torch.equal(state["visual.ln_pre.weight"], torch.ones(TINY_WIDTH))
    assert not torch.equal(tiny_state_dict(1)["visual.conv1.weight"], state["visual.conv1.weight"])
