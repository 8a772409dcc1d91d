"""Decoding image files into RGB pictures the backbones can read.

Forensic collections are messy, so decoding never raises anything but `ImageDecodeError`, whose
message names the file and the reason. The rules:

- A file is an image by its content, never by its name: the first bytes are sniffed and only the
  formats below are opened (never EPS, WMF or other formats that run external programs). A file
  that is not an image is rejected after reading its first bytes, not the whole file.
- Only regular files are read: FIFOs, devices and sockets are refused without opening them.
- One pixel limit, `max_pixels()` (default 100 megapixels; `ORIGINPROBE_MAX_PIXELS` or
  `set_max_pixels`), is checked against the declared size before any pixel is decoded, and is also
  the limit Pillow enforces, so the two cannot disagree.
- A JPEG whose entropy-coded data is damaged but still decodes partly is decoded and flagged
  (`warning`), because libjpeg otherwise fills the damaged blocks silently.
- Metadata never hides the pixels: when the decoder refuses a file because of a metadata block (a
  PNG text or ICC chunk that inflates past Pillow's limits, a JPEG APPn segment it cannot parse, a
  WebP metadata chunk), the pixels are decoded from a copy without the metadata blocks
  (`data.containers`) and the file is flagged with a warning naming what was dropped and why.
  PNG metadata chunks over `METADATA_BUDGET` are left out before decoding, without being read.
  Nothing is ever inflated past Pillow's limits; pixel bombs and damaged pixel data are refused as
  before.
- EXIF orientation is applied; multi-frame files are read at their first frame; 16/32-bit
  greyscale is scaled to 8 bits; CMYK, palette, LA and greyscale become RGB; transparency is
  composited on black.
- `draft_size`: a JPEG larger than needed is decoded at a reduced DCT scale (libjpeg's draft mode)
  whose short side is still at least that size, which saves most of the decoding time of large
  photos. The backbone's preprocessing asks for it, and its cache key records it.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import ConfigError, OriginprobeError
from .containers import oversized_png_chunks, png_file_without_metadata, without_metadata

DEFAULT_MAX_PIXELS = 100_000_000
_max_pixels = int(os.environ.get("ORIGINPROBE_MAX_PIXELS", DEFAULT_MAX_PIXELS))
SNIFF_BYTES = 32
METADATA_BUDGET = 4 << 20  # bytes of one PNG metadata chunk; larger ones are left out unread
DROPPED = "metadata dropped to read the pixels"  # how such a warning starts
_STRIPPABLE = ("PNG", "JPEG", "WEBP")

try:  # HEIC/HEIF through the Pillow plugin, when it is installed
    import pillow_heif  # type: ignore

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


def max_pixels() -> int:
    return _max_pixels


def set_max_pixels(n: int) -> None:
    """The one pixel limit: refused here before decoding, and Pillow's own bomb limit."""
    global _max_pixels
    if n < 1:
        raise ConfigError(f"the pixel limit must be positive, got {n}")
    _max_pixels = int(n)
    Image.MAX_IMAGE_PIXELS = _max_pixels


set_max_pixels(_max_pixels)


class ImageDecodeError(OriginprobeError):
    """An image file that cannot be used; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str, pixels: bool = False):
        self.path = str(path)
        self.reason = reason
        self.pixels = pixels  # refused for its pixels (a bomb): no copy without metadata helps
        super().__init__(f"{self.path}: {reason}")


@dataclass
class DecodedImage:
    image: Image.Image
    warning: str | None = None


def sniff_format(head: bytes) -> str | None:
    """The Pillow format name for these first bytes, or None when they are not an image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return "PPM"
    if head[:4] == b"qoif":
        return "QOI"
    return None


def describe_non_image(head: bytes) -> str:
    if not head:
        return "empty file (0 bytes)"
    text = head[:16]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        return f"not an image (content starts with text {text.decode('ascii')!r})"
    return f"not a recognised image format (content starts with {text[:8].hex(' ')})"


def open_regular(path: str | Path):
    """Open a regular file for reading; anything else is an ImageDecodeError, never opened."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if p.is_symlink():
            raise ImageDecodeError(path, "broken symbolic link") from None
        raise ImageDecodeError(path, "file not found") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageDecodeError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise ImageDecodeError(path, f"is {kind}, not an image file; refused without reading")
    if st.st_size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        return open(p, "rb")
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr8 = ((arr - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def _jpeg_damage(data: bytes) -> str | None:
    """What libjpeg-turbo reports about damaged entropy-coded data, or None when it is clean."""
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - the check needs simplejpeg
        return None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True, min_height=1, min_width=1)
    except ValueError as exc:
        msg = str(exc)
        if "Unsupported color conversion" in msg or "colorspace" in msg.lower():
            return None
        return f"damaged JPEG data, decoded partly ({msg})"
    return None


def decode_image(
    source, path: str | Path = "<bytes>", draft_size: int | None = None
) -> DecodedImage:
    """Decode encoded image bytes (or an open binary file) into an RGB `PIL.Image`; metadata
    that the decoder refuses is dropped, with a warning (see the module doc)."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        head = fp.read(SNIFF_BYTES)
        fp.seek(0)
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    fmt = sniff_format(head)
    if fmt is None:
        raise ImageDecodeError(path, describe_non_image(head))
    if fmt == "PNG":
        big = oversized_png_chunks(fp, METADATA_BUDGET)
        if big:
            out = _decode(io.BytesIO(png_file_without_metadata(fp)), fmt, path, draft_size)
            why = f"over the {METADATA_BUDGET >> 20} MB budget for a metadata chunk"
            return _warned(out, f"{DROPPED}: {', '.join(big)}, {why}")
    try:
        return _decode(fp, fmt, path, draft_size)
    except ImageDecodeError as exc:
        if exc.pixels or fmt not in _STRIPPABLE:
            raise
        fp.seek(0)
        stripped, dropped = without_metadata(fp.read(), fmt)
        if not dropped:
            raise
        try:
            out = _decode(io.BytesIO(stripped), fmt, path, draft_size)
        except ImageDecodeError as again:
            raise (again if again.pixels else exc) from None  # a bomb is a bomb
        return _warned(out, f"{DROPPED}: {', '.join(dropped)} (the decoder refused the file: "
                       f"{exc.reason})")  # fmt: skip


def _warned(out: DecodedImage, warning: str) -> DecodedImage:
    out.warning = warning if out.warning is None else f"{warning}; {out.warning}"
    return out


def _decode(fp, fmt: str, path: str | Path, draft_size: int | None) -> DecodedImage:
    try:
        warning = None
        if fmt == "JPEG":
            data = fp.read()
            # entropy damage only: a malformed metadata segment is not damage to the pixels
            warning = _jpeg_damage(without_metadata(data, "JPEG")[0])
            fp = io.BytesIO(data)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=[fmt])
            w, h = img.size
            if w * h > _max_pixels:
                raise ImageDecodeError(
                    path,
                    f"decompression bomb: {w}x{h} pixels exceeds the limit of "
                    f"{_max_pixels} (ORIGINPROBE_MAX_PIXELS or --max-pixels)",
                    pixels=True,
                )
            if w < 1 or h < 1:
                raise ImageDecodeError(path, f"image has no pixels ({w}x{h})", pixels=True)
            if fmt == "JPEG" and draft_size and min(w, h) >= 2 * draft_size:
                img.draft("RGB", (draft_size, draft_size))
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return DecodedImage(to_rgb(img), warning)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            path,
            f"decompression bomb: {exc} (the limit is {_max_pixels} "
            "pixels: ORIGINPROBE_MAX_PIXELS or --max-pixels)",
            pixels=True,
        ) from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(path, "not a recognised image format") from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        IndexError,
        TypeError,
        KeyError,
        ZeroDivisionError,
        struct.error,
    ) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise ImageDecodeError(path, f"truncated or corrupt image data ({msg})") from None
        raise ImageDecodeError(path, f"corrupt image data ({msg})") from None
    except MemoryError:
        raise ImageDecodeError(path, "image too large to decode in memory", pixels=True) from None


def image_size(data: bytes, name: str = "<bytes>") -> tuple[int, int, str | None]:
    """(width, height, warning) from a file's header, as `decode_image` would read it (metadata
    the decoder refuses is dropped first); every failure is an `ImageDecodeError`."""
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise ImageDecodeError(name, describe_non_image(data[:SNIFF_BYTES]))
    warning = None
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            w, h = img.size
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"decompression bomb: {exc}", pixels=True) from None
    except Exception as exc:  # noqa: BLE001 - any header failure: try without the metadata
        stripped, dropped = without_metadata(data, fmt)
        if not dropped:
            raise ImageDecodeError(name, f"corrupt image data ({type(exc).__name__}: {exc})") \
                from None  # fmt: skip
        try:
            with Image.open(io.BytesIO(stripped), formats=[fmt]) as img:
                w, h = img.size
        except Exception:  # noqa: BLE001
            raise ImageDecodeError(name, f"corrupt image data ({type(exc).__name__}: {exc})") \
                from None  # fmt: skip
        warning = f"{DROPPED}: {', '.join(dropped)}"
    if w * h > _max_pixels:
        raise ImageDecodeError(
            name, f"decompression bomb: {w}x{h} pixels exceeds the limit of {_max_pixels}",
            pixels=True,
        )  # fmt: skip
    return w, h, warning


def read_image(path: str | Path, draft_size: int | None = None) -> DecodedImage:
    """Read and decode one file; every failure is an `ImageDecodeError` naming the file."""
    with open_regular(path) as f:
        return decode_image(f, path, draft_size)


def load_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    return read_image(path, draft_size).image


def image_from_array(arr: np.ndarray, name: str = "<array>") -> Image.Image:
    """An RGB image from an (H, W), (H, W, 3) or (H, W, 4) array: uint8, or float in [0, 1]."""
    a = np.asarray(arr)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ImageDecodeError(name, f"array of shape {a.shape} is not an image (H, W[, 1|3|4])")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageDecodeError(name, f"image has no pixels ({a.shape})")
    if a.shape[0] * a.shape[1] > _max_pixels:
        raise ImageDecodeError(
            name, f"{a.shape[1]}x{a.shape[0]} pixels exceeds the limit of {_max_pixels}"
        )
    if a.dtype != np.uint8:
        if (
            not np.issubdtype(a.dtype, np.floating)
            or not np.all(np.isfinite(a))
            or a.min() < 0
            or a.max() > 1
        ):
            raise ImageDecodeError(
                name, f"array of dtype {a.dtype}: give uint8, or floats in [0, 1]"
            )
        a = np.round(a * 255.0).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return to_rgb(Image.fromarray(a))
