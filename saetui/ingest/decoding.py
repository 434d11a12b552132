"""Robust image decoding: file bytes to a fully loaded RGB PIL image, or a SkippedImage with a short reason.

Pixel semantics follow the reference pipeline (HF ``CLIPImageProcessor`` fed ``PIL.Image.open(path)``), so the
codes saetui stores equal the reference's:

- no EXIF orientation is applied (the reference does not transpose either);
- the first frame of animated GIF/WebP/TIFF files is used (what ``PIL.Image.open`` exposes);
- images with transparency (an alpha band, or a ``transparency`` entry such as a palette PNG's tRNS chunk)
  are composited onto a white background, exactly like ``transformers.image_transforms.convert_to_rgb``;
  every other mode goes through PIL's ``convert("RGB")`` (greyscale replicated, CMYK/YCbCr/1-bit by PIL);
- one deliberate difference: 16-bit greyscale (``I;16*``) and 32-bit integer (``I``) images are scaled to
  8 bits by ``round(value / 257)`` (values of ``I`` clipped to 0..65535 first) instead of PIL's ``convert``,
  which clips every value above 255 to white. ``/257`` is the exact inverse of the usual 8-to-16-bit
  expansion ``v * 257``, so an 8-bit image stored at 16 bits decodes to its original pixels. Float (``F``)
  images keep PIL's convention (values are 0..255 intensities, clipped).

Everything here is a pure function of its input: safe to call from many threads or processes at once, and no
PIL global (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``, warning filters) is changed.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import re
import stat

import numpy as np
from PIL import Image, UnidentifiedImageError

from saetui.models.preprocess import to_rgb as reference_rgb

# Images with more pixels than this are refused from their header, before any pixel is decoded
# (PIL's own hard limit: twice its default MAX_IMAGE_PIXELS).
MAX_PIXELS = 178_956_970

# Files larger than this are refused before they are read into memory.
MAX_FILE_BYTES = 1 << 30

# Raster formats decoded; vector/document formats PIL could open (EPS runs Ghostscript) are refused.
DECODED_FORMATS = (
    "JPEG",
    "MPO",
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "DIB",
    "TIFF",
    "PPM",
    "TGA",
    "ICO",
    "JPEG2000",
    "AVIF",
)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})

_MAGIC = (
    (b"%PDF", "application/pdf?"),
    (b"PK\x03\x04", "application/zip?"),
    (b"\x1f\x8b", "application/gzip?"),
    (b"GIF8", "GIF with a broken header?"),
    (b"\x89PNG", "PNG with a broken header?"),
    (b"\xff\xd8", "JPEG with a broken header?"),
    (b"RIFF", "RIFF container (corrupt WebP?)"),
    (b"%!PS", "application/postscript? (not decoded)"),
)


class SkippedImage(Exception):
    """An input that cannot be indexed; ``reason`` is the short text recorded in the ``skipped`` table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def content_hash(data: bytes) -> str:
    """The sha256 of the file bytes, as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read one image file whole, raising SkippedImage for missing, unreadable, special or empty files."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise SkippedImage(f"broken symlink -> {os.readlink(path)}") from None
        raise SkippedImage("missing file") from None
    except OSError as exc:
        raise SkippedImage(_os_reason(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise SkippedImage("not a file: directory")
    if not stat.S_ISREG(info.st_mode):
        raise SkippedImage(f"not a regular file: {_file_kind(info.st_mode)}")
    if info.st_size == 0:
        raise SkippedImage("zero-byte file")
    if info.st_size > MAX_FILE_BYTES:
        raise SkippedImage(f"file too large: {info.st_size:,} bytes (limit {MAX_FILE_BYTES:,})")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SkippedImage(_os_reason(exc)) from None
    if not data:
        raise SkippedImage("zero-byte file")
    return data


def decode_rgb(data: bytes) -> Image.Image:
    """Decode image bytes into a fully loaded mode-"RGB" image, raising SkippedImage when they cannot be."""
    if not data:
        raise SkippedImage("zero-byte file")
    try:
        image = Image.open(io.BytesIO(data), formats=_decoded_formats())
    except UnidentifiedImageError:
        raise SkippedImage(f"not an image ({_sniff(data)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SkippedImage(_bomb_reason(str(exc))) from None
    except Exception as exc:  # any decoder failure on bad bytes is a skip, never a crash
        raise SkippedImage(f"corrupt image header: {_short(exc)}") from None
    kind = image.format or "image"
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise SkippedImage(f"decompression bomb: {width}x{height} pixels (limit {MAX_PIXELS:,})")
    if width == 0 or height == 0:
        raise SkippedImage(f"empty {kind}: {width}x{height} pixels")
    try:
        image.load()
        return to_rgb(image)
    except SkippedImage:
        raise
    except Exception as exc:  # truncated or corrupt pixel data of any format
        message = _short(exc)
        if "truncated" in message or isinstance(exc, EOFError):
            raise SkippedImage(f"truncated {kind}: {message}") from None
        raise SkippedImage(f"corrupt {kind}: {message}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a loaded image of any mode to RGB the way the reference does (see the module docstring)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(scale_16_to_8(np.asarray(image)), mode="L").convert("RGB")
    try:
        return reference_rgb(image)
    except ValueError as exc:
        raise SkippedImage(f"unsupported image mode {image.mode}: {_short(exc)}") from None


def scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit intensities (0..65535, clipped) to 8 bits by round(v / 257), so v * 257 maps back to v."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)


@functools.cache
def _decoded_formats() -> tuple[str, ...]:
    """The DECODED_FORMATS this Pillow build has plugins for (PIL's open rejects unknown names)."""
    Image.init()
    return tuple(name for name in DECODED_FORMATS if name in Image.OPEN)


def _bomb_reason(message: str) -> str:
    """A skip reason from PIL's decompression-bomb error, keeping its pixel count."""
    found = re.search(r"\((\d+) pixels\)", message)
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return f"decompression bomb: {pixels} (limit {MAX_PIXELS:,})"


def _sniff(data: bytes) -> str:
    """A guess at what non-image bytes are, for the skip reason."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:1024].lstrip()
    if head[:5].lower() in (b"<?xml", b"<svg ") and b"<svg" in head.lower():
        return "image/svg+xml? (vector images are not decoded)"
    if head[:1] == b"<":
        return "text/html?"
    if head[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace")
        return f"ISO media '{brand}'? (HEIC/video are not decoded)"
    try:
        text = data[:1024].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 1020:
            return "unrecognised binary data"
        text = data[: exc.start].decode("utf-8")
    if all(ch.isprintable() or ch in "\t\r\n\f" for ch in text):
        return "text/plain?"
    return "unrecognised binary data"


def _os_reason(exc: OSError) -> str:
    """A skip reason for an OS error met while opening or reading a file."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "unreadable: permission denied"
    if exc.errno == errno.ELOOP:
        return "unreadable: symlink loop"
    return f"unreadable: {exc.strerror or exc}"


def _file_kind(mode: int) -> str:
    """The name of a non-regular file type."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _short(exc: BaseException) -> str:
    """An exception as one short line: its message, else its class name."""
    text = " ".join(str(exc).split())
    return (text[:160] + "...") if len(text) > 160 else (text or type(exc).__name__)
