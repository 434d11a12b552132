"""saetui.models.preprocess against HF's PIL CLIPImageProcessor on real ImageNet images and odd synthetic sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.sample import SAMPLE
from harness.tiny import tiny_model_config_files, write_files
from saetui.errors import DataError, NotFoundError
from saetui.models.preprocess import (
    OPENAI_MEAN,
    OPENAI_STD,
    Preprocessing,
    input_crop,
    load_preprocessing,
    normalise,
    open_clip_normalisation,
    pixels_batch,
    preprocess_image,
    resized_shape,
    to_pixels,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model repo's config files on disk (weights are not needed here)."""
    return write_files(tmp_path_factory.mktemp("model"), tiny_model_config_files())


@pytest.fixture(scope="module")
def hf_processor(model_dir: Path):
    """HF's slow (PIL/numpy) CLIP image processor built from the tiny preprocessor_config.json."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil.from_pretrained(model_dir)


def _odd_margin(image: Image.Image, size: int = 224) -> bool:
    """True when the resized image has an odd crop margin on either side."""
    width, height = resized_shape(image.width, image.height, size)
    return (width - size) % 2 == 1 or (height - size) % 2 == 1


def _sample_images() -> list[Path]:
    """About 40 sample images: every greyscale one, 14 with an odd crop margin, the rest in name order."""
    files = sorted(SAMPLE.glob("*/*"))
    grey = [f for f in files if Image.open(f).mode != "RGB"]
    odd = [f for f in files if f not in grey and _odd_margin(Image.open(f))][:14]
    rest = [f for f in files if f not in grey and f not in odd][: 40 - len(grey) - len(odd)]
    return grey + odd + rest


def test_load_preprocessing_prefers_hf_config(model_dir: Path) -> None:
    """preprocessor_config.json decides mean/std; open_clip's own (0.5) numbers are reported separately."""
    prep = load_preprocessing(model_dir)
    assert prep == Preprocessing(224, 224, OPENAI_MEAN, OPENAI_STD, "preprocessor_config.json")
    assert open_clip_normalisation(model_dir) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_load_preprocessing_falls_back_to_open_clip_config(tmp_path: Path) -> None:
    """Without preprocessor_config.json the open_clip preprocess_cfg is used and the source says so."""
    write_files(tmp_path, {"open_clip_config.json": tiny_model_config_files()["open_clip_config.json"]})
    prep = load_preprocessing(tmp_path)
    assert (prep.size, prep.crop, prep.mean, prep.std) == (224, 224, (0.5,) * 3, (0.5,) * 3)
    assert "open_clip_config.json" in prep.source and "no preprocessor_config.json" in prep.source


def test_old_style_hf_config_and_bad_configs(tmp_path: Path) -> None:
    """Integer size/crop_size (old CLIPFeatureExtractor files) load; non-CLIP steps and missing files fail."""
    config = {
        "size": 224,
        "crop_size": 224,
        "resample": 3,
        "image_mean": [0.1, 0.2, 0.3],
        "image_std": [1, 2, 3],
    }
    write_files(tmp_path, {"preprocessor_config.json": json.dumps(config).encode()})
    assert load_preprocessing(tmp_path) == Preprocessing(
        224, 224, (0.1, 0.2, 0.3), (1.0, 2.0, 3.0), "preprocessor_config.json"
    )
    write_files(tmp_path, {"preprocessor_config.json": json.dumps({**config, "resample": 2}).encode()})
    with pytest.raises(DataError, match="not bicubic"):
        load_preprocessing(tmp_path)
    write_files(tmp_path, {"preprocessor_config.json": b"{not json"})
    with pytest.raises(DataError, match="cannot read"):
        load_preprocessing(tmp_path)
    with pytest.raises(NotFoundError):
        load_preprocessing(tmp_path / "missing")


def test_matches_hf_processor_on_real_images(model_dir: Path, hf_processor) -> None:
    """<= 1e-6 from CLIPImageProcessorPil on 40 real images, greyscale and odd-margin ones included."""
    prep = load_preprocessing(model_dir)
    paths = _sample_images()
    images = [Image.open(p) for p in paths]
    assert len(paths) == 40
    assert sum(im.mode == "L" for im in images) >= 5
    assert sum(_odd_margin(im) for im in images) >= 14
    expected = hf_processor(images=images, return_tensors="np")["pixel_values"]
    ours = pixels_batch([input_crop(im, prep) for im in images], prep)
    assert ours.dtype == np.float32 and ours.shape == expected.shape == (40, 3, 224, 224)
    diffs = np.abs(ours - expected).reshape(40, -1).max(axis=1)
    assert diffs.max() <= 1e-6, {str(p.name): float(d) for p, d in zip(paths, diffs, strict=True) if d > 1e-6}


@pytest.mark.parametrize(
    ("size", "mode"),
    [
        ((225, 224), "RGB"),
        ((224, 301), "RGB"),
        ((333, 257), "RGB"),
        ((97, 41), "L"),
        ((513, 1025), "RGBA"),
        ((224, 224), "P"),
        ((50, 4000), "RGB"),
    ],
)
def test_matches_hf_processor_on_synthetic_sizes(
    size: tuple[int, int], mode: str, model_dir: Path, hf_processor
) -> None:
    """Odd sizes, extreme aspect ratios, upsampling, palette and alpha images agree with HF too."""
    prep = load_preprocessing(model_dir)
    rng = np.random.default_rng(sum(size))
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "P": 1}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if mode == "RGBA":
        array[..., 3] = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    image = Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode="L" if channels == 1 else mode)
    if mode == "P":
        image = image.convert("P")
    expected = hf_processor(images=[image], return_tensors="np")["pixel_values"][0]
    ours = preprocess_image(image, prep)
    assert np.abs(ours - expected).max() <= 1e-6


def test_torchvision_rounding_would_shift_odd_margin_crops(model_dir: Path, hf_processor) -> None:
    """Why floor offsets: torchvision-style rounded offsets move the crop one pixel on an odd margin."""
    prep = load_preprocessing(model_dir)
    path = next(p for p in _sample_images() if _odd_margin(Image.open(p)))
    image = Image.open(path).convert("RGB")
    width, height = resized_shape(image.width, image.height, prep.size)
    resized = image.resize((width, height), resample=Image.Resampling.BICUBIC)
    left, top = (
        round((width - prep.crop) / 2.0),
        round((height - prep.crop) / 2.0),
    )  # torchvision's CenterCrop
    assert (left, top) != ((width - prep.crop) // 2, (height - prep.crop) // 2)
    rounded = to_pixels(resized.crop((left, top, left + prep.crop, top + prep.crop)), prep)
    expected = hf_processor(images=[image], return_tensors="np")["pixel_values"][0]
    assert np.abs(rounded - expected).max() > 0.1
    assert np.abs(preprocess_image(image, prep) - expected).max() <= 1e-6


@pytest.mark.parametrize("reference", ["hf-clip", "open_clip"])
def test_level_lookup_is_bit_identical_to_the_arithmetic(reference: str) -> None:
    """to_pixels looks each level up in a 3 x 256 table: the same bits as normalise() over the whole image."""
    prep = Preprocessing(224, 224, OPENAI_MEAN, OPENAI_STD, "test", reference)
    rng = np.random.default_rng(7)
    for shape in ((224, 224, 3), (17, 301, 3)):
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        array[0, :3] = [[0, 0, 0], [255, 255, 255], [128, 1, 254]]
        expected = normalise(array, prep).transpose(2, 0, 1)
        got = to_pixels(Image.fromarray(array), prep)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
