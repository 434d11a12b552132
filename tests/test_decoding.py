"""Decoding every kind of good and bad input: bytes -> RGB with the reference's pixels, or a skip reason."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.badimages import (
    GOOD_COLOUR,
    GOOD_GREYSCALE,
    SAMPLE,
    bomb_png,
    cmyk_image,
    encoded,
    gradient_16bit,
    make_bad_input_folder,
    palette_transparent_image,
    rgba_image,
)
from saetui.ingest import decoding
from saetui.ingest.decoding import SkippedImage, content_hash, decode_rgb, read_bytes, scale_16_to_8, to_rgb


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    """The harness folder with every bad-input kind, built once for this module."""
    root = tmp_path_factory.mktemp("bad-input")
    return root, make_bad_input_folder(root)


def outcome(path: Path) -> str | None:
    """None when the file decodes to an RGB image, else its skip reason."""
    try:
        image = decode_rgb(read_bytes(path))
    except SkippedImage as skipped:
        return skipped.reason
    assert image.mode == "RGB" and image.width > 0 and image.height > 0
    return None


def rgb(data: bytes) -> np.ndarray:
    """Decoded pixels as an H x W x 3 uint8 array."""
    return np.asarray(decode_rgb(data))


def test_every_harness_file_gets_its_expected_outcome(bad_folder: tuple[Path, dict[str, str | None]]) -> None:
    root, expected = bad_folder
    results = {name: outcome(root / name) for name in expected}
    wrong = {
        name: (want, got)
        for name, want in expected.items()
        if (got := results[name]) is None
        and want is not None
        or (got is not None and (want is None or want not in got))
    }
    assert wrong == {}
    assert sum(reason is None for reason in results.values()) >= 12
    assert sum(reason is not None for reason in results.values()) >= 11


def test_real_photo_decodes_to_the_same_pixels_as_pil() -> None:
    data = GOOD_COLOUR.read_bytes()
    assert np.array_equal(rgb(data), np.asarray(Image.open(GOOD_COLOUR).convert("RGB")))


def test_greyscale_is_replicated_into_three_equal_channels() -> None:
    pixels = rgb(GOOD_GREYSCALE.read_bytes())
    grey = np.asarray(Image.open(GOOD_GREYSCALE))
    assert grey.ndim == 2
    for channel in range(3):
        assert np.array_equal(pixels[..., channel], grey)


def test_16bit_gradient_scales_to_the_full_8bit_range() -> None:
    values = gradient_16bit()
    pixels = rgb(encoded(Image.fromarray(values), "PNG"))
    assert Image.open(io.BytesIO(encoded(Image.fromarray(values), "PNG"))).mode == "I;16"
    expected = np.floor(values / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(pixels[..., 0], expected)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert np.all(np.diff(pixels[0, :, 0].astype(int)) >= 0)
    # PIL's plain convert would have clipped: almost everything white.
    assert np.mean(np.asarray(Image.fromarray(values).convert("L")) == 255) > 0.9


def test_8bit_values_stored_at_16_bits_decode_exactly() -> None:
    original = np.arange(256, dtype=np.uint16).reshape(16, 16)
    pixels = rgb(encoded(Image.fromarray(original * 257), "PNG"))
    assert np.array_equal(pixels[..., 1], original.astype(np.uint8))


def test_big_endian_16bit_and_32bit_integer_modes() -> None:
    big = Image.frombytes("I;16B", (3, 1), np.array([0, 257 * 100, 65535], dtype=">u2").tobytes())
    assert to_rgb(big).getpixel((1, 0)) == (100, 100, 100)
    tiff = encoded(Image.fromarray(np.array([[-5, 257 * 7, 70_000]], dtype=np.int32)), "TIFF")
    assert Image.open(io.BytesIO(tiff)).mode == "I"
    assert rgb(tiff)[0, :, 0].tolist() == [0, 7, 255]
    assert scale_16_to_8(np.array([128, 129, 385, 386])).tolist() == [0, 1, 1, 2]


def test_float_mode_keeps_pils_convention() -> None:
    tiff = encoded(Image.fromarray(np.array([[0.0, 100.0, 300.0]], dtype=np.float32)), "TIFF")
    assert Image.open(io.BytesIO(tiff)).mode == "F"
    assert rgb(tiff)[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_converts_like_pil() -> None:
    data = encoded(cmyk_image(), "JPEG", quality=95)
    source = Image.open(io.BytesIO(data))
    assert source.mode == "CMYK"
    pixels = rgb(data)
    assert np.array_equal(pixels, np.asarray(source.convert("RGB")))
    red, green, blue = pixels[4, 4].astype(int)
    assert red < 20 and green > 235 and blue > 235  # full cyan ink
    assert pixels[24, 24].max() < 20  # full black ink


def test_transparency_is_composited_onto_white() -> None:
    pixels = rgb(encoded(rgba_image(), "PNG"))
    assert pixels[5, 5].tolist() == [255, 255, 255]
    red, green, blue = pixels[5, 25].tolist()
    assert red == 255 and 120 <= green <= 135 and green == blue
    palette = rgb(encoded(palette_transparent_image(), "PNG"))
    assert palette[5, 5].tolist() == [255, 255, 255]
    assert palette[5, 25].tolist() == [0, 255, 0]
    grey_alpha = Image.merge("LA", (Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 0)))
    assert to_rgb(grey_alpha).getpixel((0, 0)) == (255, 255, 255)


def test_conversions_equal_the_reference_processors() -> None:
    """RGB conversion must equal transformers' convert_to_rgb, which the reference CLIPImageProcessor applies.

    Importing transformers imports torch (seconds alone; shared with the fidelity tests in a suite run).
    """
    image_transforms = pytest.importorskip("transformers.image_transforms")
    grey_alpha = Image.merge("LA", (Image.new("L", (8, 8), 90), Image.linear_gradient("L").resize((8, 8))))
    cases = {
        "RGBA": encoded(rgba_image(), "PNG"),
        "P+transparency": encoded(palette_transparent_image(), "PNG"),
        "LA": encoded(grey_alpha, "PNG"),
        "CMYK": encoded(cmyk_image(), "JPEG"),
        "L": GOOD_GREYSCALE.read_bytes(),
        "1": encoded(Image.new("1", (8, 8), 1), "BMP"),
        "RGB": GOOD_COLOUR.read_bytes(),
    }
    for name, data in cases.items():
        reference = image_transforms.convert_to_rgb(Image.open(io.BytesIO(data)), return_numpy=True)
        assert np.array_equal(rgb(data), reference), name


def test_ycbcr_and_one_bit_modes_convert() -> None:
    source = Image.open(GOOD_COLOUR).convert("RGB")
    ycbcr = source.convert("YCbCr")
    assert np.array_equal(np.asarray(to_rgb(ycbcr)), np.asarray(ycbcr.convert("RGB")))
    one_bit = rgb(encoded(Image.new("1", (8, 8), 1), "BMP"))
    assert one_bit.shape == (8, 8, 3) and np.all(one_bit == 255)


def test_exif_orientation_is_not_applied_like_the_reference() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encoded(Image.new("RGB", (40, 20), (200, 10, 10)), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    assert decode_rgb(data).size == (40, 20)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert decode_rgb(buffer.getvalue()).getpixel((0, 0)) == (255, 0, 0)


def test_decompression_bomb_is_refused_from_the_header() -> None:
    with pytest.raises(SkippedImage, match=r"decompression bomb: 900,000,000 pixels"):
        decode_rgb(bomb_png(30_000, 30_000))


def test_pixel_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(Image.new("RGB", (100, 100)), "PNG")
    monkeypatch.setattr(decoding, "MAX_PIXELS", 9_999)
    with pytest.raises(SkippedImage, match=r"decompression bomb: 100x100 pixels \(limit 9,999\)"):
        decode_rgb(data)
    monkeypatch.setattr(decoding, "MAX_PIXELS", 10_000)
    assert decode_rgb(data).size == (100, 100)


def test_decompression_bomb_warning_raised_as_error_is_a_skip() -> None:
    """Between PIL's warning and error thresholds PIL warns; with warnings as errors that is a skip."""
    assert Image.MAX_IMAGE_PIXELS is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SkippedImage, match="decompression bomb: 100,000,000 pixels"):
            decode_rgb(bomb_png(10_000, 10_000))


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"just some words\n", "text/plain?"),
        (b"<!DOCTYPE html><html><body>404</body></html>", "text/html?"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "image/svg+xml?"),
        (b"%PDF-1.7\n...", "application/pdf?"),
        (b"PK\x03\x04rest-of-zip", "application/zip?"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "ISO media 'heic'?"),
        (bytes(range(256)) * 4, "unrecognised binary data"),
    ],
)
def test_non_images_say_what_they_look_like(data: bytes, kind: str) -> None:
    with pytest.raises(SkippedImage) as skipped:
        decode_rgb(data)
    assert skipped.value.reason.startswith("not an image (") and kind in skipped.value.reason


def test_eps_is_not_handed_to_ghostscript() -> None:
    with pytest.raises(SkippedImage, match="not an image"):
        decode_rgb(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")


def test_damaged_bytes_only_ever_raise_skipped_image() -> None:
    original = GOOD_COLOUR.read_bytes()
    png = encoded(Image.open(GOOD_COLOUR).convert("RGB").resize((64, 48)), "PNG")
    rng = np.random.default_rng(1)
    decoded = skipped = 0
    for source in (original, png):
        for _ in range(25):
            damaged = np.frombuffer(source, dtype=np.uint8).copy()
            positions = rng.integers(0, len(damaged), size=int(rng.integers(1, 40)))
            damaged[positions] = rng.integers(0, 256, size=len(positions), dtype=np.uint8)
            cut = damaged[: int(rng.integers(1, len(damaged) + 1))].tobytes()
            try:
                assert decode_rgb(cut).mode == "RGB"
                decoded += 1
            except SkippedImage as reason:
                assert reason.reason
                skipped += 1
    assert decoded + skipped == 50 and skipped > 0


def test_read_bytes_reasons(tmp_path: Path) -> None:
    with pytest.raises(SkippedImage, match="^missing file$"):
        read_bytes(tmp_path / "nope.jpg")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(SkippedImage, match="not a file: directory"):
        read_bytes(tmp_path / "folder.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SkippedImage, match="zero-byte file"):
        read_bytes(tmp_path / "empty.jpg")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    with pytest.raises(SkippedImage, match=f"broken symlink -> {tmp_path / 'gone.png'}"):
        read_bytes(tmp_path / "dangling.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(SkippedImage, match="not a regular file: FIFO"):
        read_bytes(tmp_path / "pipe.jpg")
    assert read_bytes(GOOD_COLOUR) == GOOD_COLOUR.read_bytes()


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(GOOD_COLOUR.read_bytes())
    monkeypatch.setattr(decoding, "MAX_FILE_BYTES", 1000)
    with pytest.raises(SkippedImage, match="file too large"):
        read_bytes(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod-000 files; the harness marks them indexable")
def test_permission_denied_is_a_skip(tmp_path: Path) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(GOOD_COLOUR.read_bytes())
    path.chmod(0)
    with pytest.raises(SkippedImage, match="unreadable: permission denied"):
        read_bytes(path)


def test_content_hash_is_sha256_hex() -> None:
    data = GOOD_COLOUR.read_bytes()
    assert content_hash(data) == hashlib.sha256(data).hexdigest()
    assert content_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parallel_decoding_matches_serial(bad_folder: tuple[Path, dict[str, str | None]]) -> None:
    root, expected = bad_folder
    paths = [root / name for name in expected] + sorted(SAMPLE.glob("*/*"))[:12]
    serial = [outcome(path) for path in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(outcome, paths))
    assert parallel == serial
