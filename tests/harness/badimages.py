"""A folder of good images next to every kind of bad input issue 3 names, with the outcome each must get."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from harness.sample import SAMPLE

GOOD_COLOUR = SAMPLE / "n01484850" / "n01484850_great_white_shark.JPEG"
GOOD_COLOUR_2 = SAMPLE / "n01494475" / "n01494475_hammerhead.JPEG"
GOOD_GREYSCALE = SAMPLE / "n02692877" / "n02692877_airship.JPEG"

# Files the folder source must ignore (not image extensions); they are not in make_bad_input_folder's mapping.
IGNORED_FILES = ("README.txt", "labels/notes.md")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid-looking, 100-byte PNG whose header claims width x height 8-bit greyscale pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1))  # one row; the rest is missing
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    """An in-memory image encoded as fmt."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient_16bit() -> np.ndarray:
    """A 16 x 64 uint16 horizontal gradient spanning the full 0..65535 range."""
    return np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (16, 1))


def cmyk_image() -> Image.Image:
    """A small CMYK image with distinct inks in each quarter."""
    values = np.zeros((32, 32, 4), np.uint8)
    values[:16, :16] = (255, 0, 0, 0)
    values[:16, 16:] = (0, 200, 40, 0)
    values[16:, :16] = (30, 30, 30, 100)
    values[16:, 16:] = (0, 0, 0, 255)
    return Image.fromarray(values, mode="CMYK")


def rgba_image() -> Image.Image:
    """A 32 x 32 red image whose left half is fully transparent and right half half-transparent."""
    values = np.zeros((32, 32, 4), np.uint8)
    values[..., 0] = 255
    values[:, :16, 3] = 0
    values[:, 16:, 3] = 128
    return Image.fromarray(values, mode="RGBA")


def palette_transparent_image() -> Image.Image:
    """A palette image (blue, green) whose palette index 0 is transparent."""
    image = Image.new("P", (32, 32), 0)
    image.putpalette([0, 0, 255, 0, 255, 0] + [0, 0, 0] * 254)
    image.paste(1, (16, 0, 32, 32))
    image.info["transparency"] = 0
    return image


def _unreadable_outcome(path: Path) -> str | None:
    """The expected outcome of a chmod-000 file: skipped unless this user (root) can read it anyway."""
    try:
        with open(path, "rb"):
            return None
    except PermissionError:
        return "unreadable: permission denied"


def make_bad_input_folder(root: Path) -> dict[str, str | None]:
    """Write the test folder and map each image-extension file in it to its expected outcome.

    Keys are POSIX paths relative to root; a value is None if the file must be indexed, else a substring its
    skip reason must contain.
    """
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("good", "converted", "bad", "labels"):
        (root / folder).mkdir(exist_ok=True)
    colour = GOOD_COLOUR.read_bytes()
    expected: dict[str, str | None] = {}

    def write(name: str, data: bytes, outcome: str | None) -> Path:
        path = root / name
        path.write_bytes(data)
        expected[name] = outcome
        return path

    # Good images, including real ImageNet photos and one directly in the root (no label).
    write("good/great_white_shark.JPEG", colour, None)
    write("good/hammerhead.jpg", GOOD_COLOUR_2.read_bytes(), None)
    write("root_level.png", encoded(Image.open(GOOD_COLOUR).convert("RGB"), "PNG"), None)
    write("good/png_named.jpg", encoded(Image.new("RGB", (40, 30), (10, 200, 30)), "PNG"), None)
    write("good/frame.gif", encoded(Image.new("P", (24, 24), 3), "GIF"), None)

    # Modes that are converted, not skipped.
    write("converted/greyscale_real.JPEG", GOOD_GREYSCALE.read_bytes(), None)
    write("converted/greyscale.png", encoded(Image.new("L", (20, 20), 77), "PNG"), None)
    write("converted/cmyk.jpg", encoded(cmyk_image(), "JPEG", quality=95), None)
    write("converted/rgba.png", encoded(rgba_image(), "PNG"), None)
    write("converted/palette_transparent.png", encoded(palette_transparent_image(), "PNG"), None)
    write("converted/sixteen_bit.png", encoded(Image.fromarray(gradient_16bit()), "PNG"), None)
    write("converted/one_bit.bmp", encoded(Image.new("1", (16, 16), 1), "BMP"), None)

    # Bad bytes.
    write("bad/zero_byte.jpg", b"", "zero-byte file")
    write("bad/truncated.jpg", colour[: len(colour) // 2], "truncated JPEG")
    png = encoded(Image.open(GOOD_COLOUR).convert("RGB"), "PNG")
    write("bad/truncated.png", png[: len(png) // 2], "truncated PNG")
    corrupt = bytearray(colour)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    write("bad/corrupt_middle.jpg", bytes(corrupt), "corrupt JPEG")
    write("bad/corrupt_header.jpg", colour[:2] + b"\x00" * 64 + colour[66:], "not an image")
    write("bad/text.jpg", b"this is a text file, not a photo\nsecond line\n", "not an image (text/plain?)")
    write("bad/bomb.png", bomb_png(), "decompression bomb")

    # Unreadable files: permission bits (root reads them anyway), a FIFO and a symlink loop (fail for all).
    locked = write("bad/unreadable.jpg", colour, None)
    locked.chmod(0)
    expected["bad/unreadable.jpg"] = _unreadable_outcome(locked)
    os.mkfifo(root / "bad" / "fifo.jpg")
    expected["bad/fifo.jpg"] = "not a regular file: FIFO"
    os.symlink("loop_b.jpg", root / "bad" / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "bad" / "loop_b.jpg")
    expected["bad/loop_a.jpg"] = "symlink loop"
    expected["bad/loop_b.jpg"] = "symlink loop"
    os.symlink("does_not_exist.jpg", root / "bad" / "broken_link.jpg")
    expected["bad/broken_link.jpg"] = "broken symlink -> does_not_exist.jpg"
    os.symlink("../good/great_white_shark.JPEG", root / "labels" / "good_link.jpg")
    expected["labels/good_link.jpg"] = None

    (root / IGNORED_FILES[0]).write_text("not an image extension: sources ignore this file\n")
    (root / IGNORED_FILES[1]).write_text("ignored too\n")
    return expected


def copy_imagenet_sample(dest: Path, wnids: int = 3, split: str | None = "train") -> list[Path]:
    """Copy the first `wnids` class folders of the ImageNet sample under dest[/split]; return the files."""
    base = dest / split if split else dest
    copied: list[Path] = []
    for folder in sorted(SAMPLE.iterdir())[:wnids]:
        shutil.copytree(folder, base / folder.name)
        copied.extend(sorted((base / folder.name).iterdir()))
    return copied
