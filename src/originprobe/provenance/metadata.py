"""Unsigned metadata that names a generator: PNG text chunks, EXIF, XMP and IPTC, read with Pillow.

Pillow reads the fields (XMP through its `getxmp`, which uses defusedxml); this module only picks
the fields that speak of origin and maps their values with `generators.json`. Each kind of block
is a registered reader (`READERS`: png-text, exif, xmp, iptc), tried in turn; one that fails
loses only its own block. It never decodes pixels. Budget: a PNG whose text chunks before the image data exceed `MAX_TEXT_BYTES`, or a file
over `MAX_FILE_BYTES`, is not opened for metadata at all (a warning says why), so reading costs
at most a bounded number of bytes per file.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

from ..registry import Registry
from .evidence import Claim, cut, name_generator, source_type_says_generated

#: metadata readers by name: (opened image, is it a PNG) → claims
READERS: Registry = Registry("provenance reader")

MAX_TEXT_BYTES = 1 << 20  # PNG text chunks read per file
MAX_FILE_BYTES = 256 << 20  # larger files are not opened for metadata
_MAX_CHUNKS = 10_000  # PNG chunk headers walked before giving up

# PNG text keys written by generator front-ends (lower case); any other key counts only when its
# value names a generator
_PNG_KEYS = {
    "parameters": "AUTOMATIC1111 web UI",
    "prompt": "ComfyUI",
    "workflow": "ComfyUI",
    "software": None,
    "source": None,
    "comment": None,
    "description": None,
    "generator": None,
    "invokeai_metadata": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "dream": "InvokeAI",
    "title": None,
    "author": None,
}
_EXIF = {
    0x0131: "Software",
    0x010F: "Make",
    0x0110: "Model",
    0x010E: "ImageDescription",
    0x013B: "Artist",
}
_EXIF_USER_COMMENT = 0x9286  # AUTOMATIC1111 writes its parameters here in JPEG/WebP
_XMP_KEYS = ("DigitalSourceType", "CreatorTool", "AISystemUsed", "Software", "Credit")
_IPTC = {(2, 65): "OriginatingProgram", (2, 110): "Credit", (2, 115): "Source"}


def _png_text_bytes(f: BinaryIO) -> int | None:
    """Bytes of text chunks before the first IDAT (None: not a PNG). Walks chunk headers only."""
    f.seek(0)
    if f.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    total = 0
    for _ in range(_MAX_CHUNKS):
        head = f.read(8)
        if len(head) < 8:
            break
        length, ctype = struct.unpack(">I4s", head)
        if ctype in (b"IDAT", b"IEND"):
            break
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            total += length
        f.seek(length + 4, io.SEEK_CUR)
    return total


def _claim(
    source: str, value, default_generator: str | None = None, generated: bool | None = None
) -> Claim | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = str(value).strip("\x00").strip()
    if not value:
        return None
    gen = name_generator(value[:100_000]) or default_generator
    if gen is not None and generated is None:
        generated = True
    return Claim(source=source, value=cut(value), generator=gen, generated=generated)


def _png_claims(text: dict) -> list[Claim]:
    out = []
    for key, value in text.items():
        low = str(key).lower()
        if low not in _PNG_KEYS:
            c = _claim(f"png:{key}", value)
            if c is not None and c.generator:
                out.append(c)
            continue
        front_end = _PNG_KEYS[low]
        default = None
        if front_end in ("AUTOMATIC1111 web UI", "InvokeAI"):
            default = "stable-diffusion"
        elif front_end == "ComfyUI":
            default = "stable-diffusion"
            value = _comfy_summary(str(value)) or value
        c = _claim(f"png:{key}", value, default, True if front_end else None)
        if c is not None:
            out.append(c)
    return out


def _comfy_summary(text: str) -> str | None:
    """The checkpoint names of a ComfyUI graph, ahead of the raw JSON (they name the model)."""
    try:
        graph = json.loads(text[:MAX_TEXT_BYTES])
    except (ValueError, RecursionError):
        return None
    names = []
    nodes = graph.values() if isinstance(graph, dict) else []
    for node in nodes:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict):
            names += [str(v) for k, v in inputs.items() if "ckpt" in k or k == "unet_name"]
    return ("checkpoints: " + ", ".join(names) + " | " + text) if names else None


def _exif_claims(exif) -> list[Claim]:
    out = []
    make_model = [str(exif.get(t, "")).strip("\x00 ") for t in (0x010F, 0x0110)]
    for tag, name in _EXIF.items():
        if tag not in exif:
            continue
        value = exif.get(tag)
        if tag in (0x010F, 0x0110):
            continue
        c = _claim(f"exif:{name}", value)
        if c is not None and (name == "Software" or c.generator):
            out.append(c)
    if any(make_model):
        c = _claim("exif:Make/Model", " ".join(v for v in make_model if v))
        if c is not None:
            if c.generator is None:
                c.generated = False  # a camera says it took the picture
            out.append(c)
    try:
        sub = exif.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - a damaged sub-IFD only loses that field
        sub = {}
    comment = sub.get(_EXIF_USER_COMMENT)
    if comment:
        raw = comment
        if isinstance(raw, bytes):
            code, body = raw[:8], raw[8:]
            raw = (
                body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", "replace")
                if code.startswith(b"UNICODE")
                else body.decode("utf-8", "replace")
            )
        c = _claim("exif:UserComment", raw)
        if c is not None and (c.generator or "Steps:" in c.value):
            if c.generator is None:  # AUTOMATIC1111's parameter block
                c.generator, c.generated = "stable-diffusion", True
            out.append(c)
    return out


def _walk_xmp(node, found: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _XMP_KEYS and isinstance(v, (str, dict, list)):
                if isinstance(v, str):
                    found.append((k, v))
                elif isinstance(v, dict) and "text" in v:
                    found.append((k, str(v["text"])))
                else:
                    _walk_xmp(v, found)
                    if isinstance(v, dict):
                        for vv in v.values():
                            if isinstance(vv, str):
                                found.append((k, vv))
            else:
                _walk_xmp(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk_xmp(v, found)


def _xmp_claims(xmp: dict) -> list[Claim]:
    found: list[tuple[str, str]] = []
    _walk_xmp(xmp, found)
    out = []
    for key, value in found:
        if key == "DigitalSourceType":
            c = _claim("xmp:DigitalSourceType", value, generated=source_type_says_generated(value))
        else:
            c = _claim(f"xmp:{key}", value)
            if c is not None and key in ("Credit",) and not c.generator:
                c = None
        if c is not None:
            out.append(c)
    return out


def _png_reader(im, png: bool) -> list[Claim]:
    if not png:  # text chunks before the image data; `im.text` would decode the pixels
        return []
    return _png_claims(
        {k: v for k, v in im.info.items()
         if isinstance(k, str) and isinstance(v, str) and k != "XML:com.adobe.xmp"}
    )  # fmt: skip


def _exif_reader(im, png: bool) -> list[Claim]:
    # a PNG without an eXIf chunk up front: Pillow would decode it to look further
    return _exif_claims(im.getexif()) if not png or "exif" in im.info else []


def _iptc_claims(im) -> list[Claim]:
    from PIL import IptcImagePlugin

    info = IptcImagePlugin.getiptcinfo(im) or {}
    out = []
    for key, name in _IPTC.items():
        if key in info:
            value = info[key]
            value = b", ".join(value) if isinstance(value, list) else value
            c = _claim(f"iptc:{name}", value)
            if c is not None and (name == "OriginatingProgram" or c.generator):
                out.append(c)
    return out


READERS.register("png-text", _png_reader)
READERS.register("exif", _exif_reader)
READERS.register("xmp", lambda im, png: _xmp_claims(im.getxmp()))
READERS.register("iptc", lambda im, png: _iptc_claims(im))


def read_metadata(source: Path | bytes) -> tuple[list[Claim], list[str]]:
    """(claims, warnings) from the file's unsigned metadata. Never raises on a bad file."""
    from PIL import Image

    warn: list[str] = []
    try:
        f: BinaryIO
        if isinstance(source, (bytes, bytearray)):
            size, f = len(source), io.BytesIO(source)
        else:
            size, f = Path(source).stat().st_size, open(source, "rb")
    except OSError as exc:
        return [], [f"metadata not read: {exc.strerror or exc}"]
    with f:
        if size > MAX_FILE_BYTES:
            return [], [
                f"metadata not read: the file is over the {MAX_FILE_BYTES >> 20} MB metadata budget"
            ]
        text_bytes = _png_text_bytes(f)
        if text_bytes is not None and text_bytes > MAX_TEXT_BYTES:
            return [], [
                f"metadata not read: PNG text chunks of {text_bytes / 2**20:.1f} MB "
                f"exceed the {MAX_TEXT_BYTES >> 20} MB budget"
            ]
        f.seek(0)
        claims: list[Claim] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                im = Image.open(f)
                png = im.format == "PNG"
                for name, read in READERS.in_order():
                    try:
                        claims += read(im, png)
                    except Exception as exc:  # noqa: BLE001 - one damaged block loses only itself
                        warn.append(f"{name.upper()} metadata unreadable "
                                    f"({type(exc).__name__}: {str(exc)[:200]})")  # fmt: skip
            warn += [
                f"metadata: {w.message}"
                for w in caught
                if "metadata" in str(w.message).lower() or "xmp" in str(w.message).lower()
            ]
        except Exception as exc:  # noqa: BLE001 - the pixel path reports an unreadable image
            warn.append(f"metadata unreadable ({type(exc).__name__}: {str(exc)[:200]})")
    return claims, warn
