"""Decoding image files into RGB pictures the backbones can read.

Forensic collections are messy, so decoding never raises anything but `ImageDecodeError`, whose
message names the file and the reason. It must never alter the pixel grid beyond what is stated here:

- EXIF orientation is applied (the picture is seen the way a viewer shows it), consistently for
  every image, in training and at prediction time.
- Multi-frame files (GIF, WebP, APNG, TIFF) are read at their first frame.
- 16-bit and 32-bit greyscale are scaled down to 8 bits (not clipped); CMYK, palette, LA and
  greyscale images are converted to RGB; transparency is dropped by compositing on black.
- Pictures above `MAX_PIXELS` are refused as decompression bombs before any pixel is decoded.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# About 16k x 16k: far above any generator's output, far below what would exhaust memory.
MAX_PIXELS = 256 * 1024 * 1024
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif"}
)


class ImageDecodeError(Exception):
    """An image file that cannot be used; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_bytes(path: str | Path) -> bytes:
    """Read a whole file, turning OS failures into `ImageDecodeError`."""
    p = Path(path)
    try:
        if p.is_symlink() and not p.exists():
            raise ImageDecodeError(path, "broken symbolic link")
        data = p.read_bytes()
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(path, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    return data


def _to_rgb(img: Image.Image) -> Image.Image:
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


def decode_image(data: bytes, path: str | Path = "<bytes>") -> Image.Image:
    """Decode encoded image bytes into an RGB `PIL.Image`, or raise `ImageDecodeError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageDecodeError(
                    path, f"decompression bomb: {w}x{h} pixels exceeds the limit of {MAX_PIXELS}"
                )
            if w < 1 or h < 1:
                raise ImageDecodeError(path, f"image has no pixels ({w}x{h})")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(path, f"decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise ImageDecodeError(path, f"truncated or corrupt image data ({msg})") from None
        raise ImageDecodeError(path, f"corrupt image data ({msg})") from None
    except MemoryError:
        raise ImageDecodeError(path, "image too large to decode in memory") from None


def load_image(path: str | Path) -> Image.Image:
    """Read and decode one file; every failure is an `ImageDecodeError` naming the file."""
    return decode_image(read_bytes(path), path)
