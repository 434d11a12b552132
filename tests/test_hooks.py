"""Hook points and token grids against open_clip's own forward, and open_clip's transform against its own code.

The reference for every site is open_clip's complete CLIP (model.visual run whole) with PyTorch forward hooks on
the block's modules, so no code of saetui's trunk is reused: resid_post = output of resblocks[L], attn_out =
output of resblocks[L].attn (before ls_1, an Identity here), mlp_out = output of resblocks[L].mlp, pooled =
model.encode_image. Tolerance: both run the same float32 modules on the same inputs, so they agree to rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.families import PACH_MODEL, PRISMA_MODEL, SAEV_MODEL, model_config, model_repo_files
from harness.sample import SAMPLE
from harness.tiny import write_files
from saetui.models.preprocess import load_preprocessing, preprocess_image
from saetui.models.trunk import VisionTrunk, config_grid, load_clip


@pytest.fixture(scope="module")
def prisma_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ViT-B/32 stand-in (7 x 7 patches) as a local model folder."""
    return write_files(tmp_path_factory.mktemp("b32"), model_repo_files(PRISMA_MODEL))


def _pixels(model_dir: Path, n: int = 3) -> torch.Tensor:
    """Real sample images prepared with open_clip's transform of the model."""
    prep = load_preprocessing(model_dir, "open_clip")
    images = [Image.open(path) for path in sorted(SAMPLE.glob("*/*"))[:n]]
    return torch.from_numpy(np.stack([preprocess_image(image, prep) for image in images]))


@pytest.mark.parametrize("site", ["resid_post", "mlp_out", "attn_out"])
def test_block_sites_match_open_clip_hooks(prisma_model_dir: Path, site: str) -> None:
    """Every site of block 5 equals what a forward hook on open_clip's own module sees; 50 tokens for B/32."""
    model = load_clip(prisma_model_dir, "cpu")
    block = model.visual.transformer.resblocks[5]
    module = {"resid_post": block, "mlp_out": block.mlp, "attn_out": block.attn}[site]
    seen: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(keep)
    pixels = _pixels(prisma_model_dir)
    with torch.no_grad():
        model.encode_image(pixels)
    handle.remove()
    reference = seen[0]
    if reference.shape[0] != pixels.shape[0]:  # sequence-first blocks
        reference = reference.transpose(0, 1)
    trunk = VisionTrunk.from_dir(prisma_model_dir, 5, "cpu", site=site)
    ours = trunk(pixels)
    assert ours.shape == (3, 50, 32) and trunk.grid == (7, 7)
    assert torch.allclose(ours, reference.float(), atol=1e-5, rtol=1e-5)


def test_pooled_site_is_the_image_embedding(prisma_model_dir: Path) -> None:
    """pooled = encode_image (ln_post on CLS, then the projection): one token of the embedding width."""
    model = load_clip(prisma_model_dir, "cpu")
    pixels = _pixels(prisma_model_dir)
    with torch.no_grad():
        reference = model.encode_image(pixels)
    trunk = VisionTrunk.from_dir(prisma_model_dir, 0, "cpu", site="pooled")
    ours = trunk(pixels)
    assert ours.shape == (3, 1, 16) and torch.allclose(ours[:, 0], reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("repo", "tokens", "grid"), [(SAEV_MODEL, 197, (14, 14)), (PACH_MODEL, 577, (24, 24))])
def test_token_grids_of_b16_and_l14_336(tmp_path: Path, repo: str, tokens: int, grid: tuple[int, int]) -> None:
    """197 tokens (14 x 14) for ViT-B/16 at 224 px, 577 (24 x 24) for ViT-L/14 at 336 px."""
    model_dir = write_files(tmp_path, model_repo_files(repo))
    trunk = VisionTrunk.from_dir(model_dir, 1, "cpu")
    pixels = _pixels(model_dir, 1)
    assert pixels.shape[-1] == model_config(repo)["model_cfg"]["vision_cfg"]["image_size"]
    assert trunk(pixels).shape == (1, tokens, 32) and trunk.grid == grid
    assert config_grid(model_dir) == grid  # what the Ray driver records without loading the weights


@pytest.mark.parametrize("repo", [PRISMA_MODEL, PACH_MODEL])
def test_open_clip_preprocessing_is_open_clips_transform(tmp_path: Path, repo: str) -> None:
    """Bit-identical to open_clip.image_transform (torchvision's rounded centre crop, float32 ToTensor)."""
    import open_clip

    model_dir = write_files(tmp_path, {"open_clip_config.json": model_repo_files(repo)["open_clip_config.json"]})
    cfg = model_config(repo)
    size = cfg["model_cfg"]["vision_cfg"]["image_size"]
    transform = open_clip.image_transform(
        size, is_train=False, mean=cfg["preprocess_cfg"]["mean"], std=cfg["preprocess_cfg"]["std"]
    )
    prep = load_preprocessing(model_dir, "open_clip")
    odd = [Image.new("RGB", (301, 224)), Image.new("RGB", (225, 640))]  # odd margins: rounding differs from floor
    for image in odd + [Image.open(path) for path in sorted(SAMPLE.glob("*/*"))[:6]]:
        image = image.convert("RGB") if image.mode != "RGB" else image
        if image.getbbox() is None:
            image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*image.size[::-1], 3), dtype=np.uint8))
        expected = transform(image).numpy()
        assert np.array_equal(preprocess_image(image, prep), expected)
