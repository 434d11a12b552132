"""Each model's reference preprocessing, bit for bit: HF ``CLIPImageProcessor`` or open_clip's own transform.

Two references exist and an SAE was trained on one of them (its family says which, saetui.registry):

* ``hf-clip`` (CLIP-Scope): HF's processor from the model repo's ``preprocessor_config.json``: RGB (alpha
  composited onto white), shortest side to ``size`` with PIL bicubic (long side ``int(size * long / short)``),
  centre crop at FLOOR offsets ``(W - crop) // 2, (H - crop) // 2``, then ``uint8 -> float64 * 1/255 -> float32``
  and ``(x - mean) / std`` in float32.
* ``open_clip`` (ViT-Prisma, saev, dictionary_learning): ``open_clip.image_transform`` from the model's
  ``open_clip_config.json``: the same PIL bicubic resize of the shortest side (or a squash to a square), torchvision's
  CenterCrop at ROUNDED offsets ``round((W - crop) / 2)`` (one pixel off HF's whenever the margin is odd), ToTensor's
  ``uint8 -> float32 / 255``, then ``(x - mean) / std`` in float32.

Every step below does the same arithmetic in the same dtypes as its reference.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from saetui.errors import DataError, NotFoundError

PREPROCESSOR_CONFIG = "preprocessor_config.json"
REFERENCES = ("hf-clip", "open_clip")
OPEN_CLIP_CONFIG = "open_clip_config.json"
# open_clip's PreprocessCfg defaults, used when open_clip_config.json names no mean/std.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_RESCALE = 1 / 255
_BICUBIC = 3

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """Resize/crop geometry and normalisation constants, with the file they came from."""

    size: int  # shortest side after resizing
    crop: int  # side of the square centre crop fed to the model
    mean: Triple
    std: Triple
    source: str  # where mean/std/size came from, recorded in the database
    reference: str = "hf-clip"  # hf-clip | open_clip: crop offsets and rescale arithmetic (see the module doc)
    squash: bool = False  # open_clip resize_mode "squash": resize to crop x crop, no centre crop


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a config file, or a one-line DataError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}", "fetch the model again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object", "fetch the model again")
    return data


def _triple(value: Any, key: str, path: Path) -> Triple:
    """Three positive-or-any floats (mean or std) from a config value."""
    if isinstance(value, (int, float)):
        value = [value] * 3
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
        raise DataError(f"{path}: '{key}' must be three numbers, got {value!r}", "fetch the model again")
    return (float(value[0]), float(value[1]), float(value[2]))


def _edge(value: Any, key: str, path: Path) -> int:
    """A square edge length from an int, {'shortest_edge': n} or {'height': n, 'width': n}."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if set(value) == {"shortest_edge"}:
            return int(value["shortest_edge"])
        if set(value) == {"height", "width"} and value["height"] == value["width"]:
            return int(value["height"])
    raise DataError(f"{path}: unsupported '{key}' {value!r}", "saetui supports CLIP's shortest-edge resize")


def _check_hf_steps(config: dict[str, Any], path: Path) -> None:
    """Refuse HF processor configs whose steps differ from CLIP's (resize, crop, rescale 1/255, normalise)."""
    for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
        if config.get(flag, True) is not True:
            raise DataError(f"{path}: {flag} is off", "saetui supports CLIP-style preprocessing only")
    if config.get("resample", _BICUBIC) != _BICUBIC:
        raise DataError(f"{path}: resample {config['resample']} is not bicubic", "use a CLIP preprocessor config")
    if abs(float(config.get("rescale_factor", _RESCALE)) - _RESCALE) > 1e-12:
        raise DataError(f"{path}: rescale_factor is not 1/255", "use a CLIP preprocessor config")
    size = config.get("size", 224)
    if isinstance(size, dict) and set(size) == {"height", "width"}:
        raise DataError(f"{path}: square resize {size} is not CLIP's", "use a CLIP preprocessor config")


def open_clip_normalisation(model_dir: Path) -> tuple[Triple, Triple]:
    """The mean/std open_clip itself would normalise with (open_clip_config.json preprocess_cfg)."""
    path = Path(model_dir) / OPEN_CLIP_CONFIG
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "fetch the model first")
    cfg = _read_json(path).get("preprocess_cfg", {})
    mean = _triple(cfg["mean"], "mean", path) if "mean" in cfg else OPENAI_MEAN
    std = _triple(cfg["std"], "std", path) if "std" in cfg else OPENAI_STD
    return mean, std


def _open_clip_side(path: Path) -> tuple[dict[str, Any], int]:
    """open_clip_config.json's preprocess_cfg and the square side it resizes and crops to (else the image size)."""
    config = _read_json(path)
    cfg = config.get("preprocess_cfg", {})
    image_size = config.get("model_cfg", {}).get("vision_cfg", {}).get("image_size", 224)
    return cfg, _edge(cfg.get("size", image_size), "size", path)


def open_clip_preprocessing(model_dir: Path) -> Preprocessing:
    """open_clip's own transform of a model folder, from open_clip_config.json (preprocess_cfg and image_size)."""
    path = Path(model_dir) / OPEN_CLIP_CONFIG
    if not path.is_file():
        raise NotFoundError(f"{path} does not exist", "fetch the model first")
    cfg, side = _open_clip_side(path)
    if cfg.get("interpolation", "bicubic") != "bicubic":
        raise DataError(f"{path}: interpolation {cfg['interpolation']!r} is not bicubic", "saetui resizes bicubic only")
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise DataError(f"{path}: resize_mode {mode!r} is not supported", "use a model with shortest or squash resize")
    mean, std = open_clip_normalisation(model_dir)
    return Preprocessing(
        size=side,
        crop=side,
        mean=mean,
        std=std,
        source=f"{OPEN_CLIP_CONFIG} (open_clip transform)",
        reference="open_clip",
        squash=mode == "squash",
    )


def load_preprocessing(model_dir: Path, reference: str = "hf-clip") -> Preprocessing:
    """The reference preprocessing: hf-clip from preprocessor_config.json (else open_clip's config), or open_clip."""
    model_dir = Path(model_dir)
    if reference not in REFERENCES:
        raise DataError(f"unknown preprocessing reference {reference!r}", f"use one of {', '.join(REFERENCES)}")
    if reference == "open_clip":
        return open_clip_preprocessing(model_dir)
    hf_path = model_dir / PREPROCESSOR_CONFIG
    if hf_path.is_file():
        config = _read_json(hf_path)
        _check_hf_steps(config, hf_path)
        size = _edge(config.get("size", 224), "size", hf_path)
        crop = _edge(config.get("crop_size", size), "crop_size", hf_path)
        return Preprocessing(
            size=size,
            crop=crop,
            mean=_triple(config.get("image_mean", list(OPENAI_MEAN)), "image_mean", hf_path),
            std=_triple(config.get("image_std", list(OPENAI_STD)), "image_std", hf_path),
            source=PREPROCESSOR_CONFIG,
        )
    oc_path = model_dir / OPEN_CLIP_CONFIG
    if not oc_path.is_file():
        raise NotFoundError(
            f"{model_dir} has neither {PREPROCESSOR_CONFIG} nor {OPEN_CLIP_CONFIG}", "fetch the model first"
        )
    _, side = _open_clip_side(oc_path)
    mean, std = open_clip_normalisation(model_dir)
    return Preprocessing(
        size=side,
        crop=side,
        mean=mean,
        std=std,
        source=f"{OPEN_CLIP_CONFIG} preprocess_cfg (no {PREPROCESSOR_CONFIG})",
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of image; transparency is composited onto white like transformers' convert_to_rgb."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def resized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after resizing the shortest side to size; the long side is int(size * long / short)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def input_crop(image: Image.Image, prep: Preprocessing) -> Image.Image:
    """The model's input crop: RGB, shortest side to size (PIL bicubic), centre crop at the reference's offsets."""
    rgb = to_rgb(image)
    size, crop = prep.size, prep.crop
    if prep.squash:
        return rgb.resize((crop, crop), resample=Image.Resampling.BICUBIC)
    resized = rgb.resize(resized_shape(rgb.width, rgb.height, size), resample=Image.Resampling.BICUBIC)
    if prep.reference == "open_clip":  # torchvision's CenterCrop
        left = int(round((resized.width - crop) / 2.0))
        top = int(round((resized.height - crop) / 2.0))
    else:
        left = (resized.width - crop) // 2
        top = (resized.height - crop) // 2
    # PIL fills any part of the box outside the image with zeros, as transformers pads a too-small image.
    return resized.crop((left, top, left + crop, top + crop))


def normalise(array: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """float32 (x - mean) / std of uint8 RGB values [..., 3], scaled to [0, 1] with the reference's arithmetic."""
    if prep.reference == "open_clip":
        scaled = array.astype(np.float32) / np.float32(255)  # ToTensor: float32 division
    else:
        scaled = (array.astype(np.float64) * _RESCALE).astype(np.float32)
    mean = np.array(prep.mean, dtype=np.float32)
    std = np.array(prep.std, dtype=np.float32)
    return (scaled - mean) / std


@functools.lru_cache(maxsize=16)
def _level_table(prep: Preprocessing) -> np.ndarray:
    """float32 [3, 256]: every channel's normalised value of every uint8 level (normalise on 0..255)."""
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.ascontiguousarray(normalise(levels, prep).T)


def to_pixels(crop: Image.Image, prep: Preprocessing) -> np.ndarray:
    """float32 (3, H, W) pixels of a crop, looked up per level: each value depends only on its uint8 level and
    channel, and numpy's elementwise float32 arithmetic rounds the same in a table as in a whole image, so this is
    bit-identical to normalise() on the crop at a fifth of the cost."""
    array = np.asarray(to_rgb(crop), dtype=np.uint8)
    table = _level_table(prep)
    out = np.empty((3, *array.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], array[:, :, channel], out=out[channel])
    return out


def preprocess_image(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """float32 (3, crop, crop) model input for one image."""
    return to_pixels(input_crop(image, prep), prep)


def pixels_batch(crops: Sequence[Image.Image], prep: Preprocessing) -> np.ndarray:
    """float32 (B, 3, H, W) model input for a batch of input crops."""
    out = np.empty((len(crops), 3, prep.crop, prep.crop), dtype=np.float32)
    for i, crop in enumerate(crops):
        out[i] = to_pixels(crop, prep)
    return out
