"""Metadata blocks inside image containers, and copies of a file without them.

The pixels of an image never depend on its text, profile or EXIF blocks, so a block that a decoder
refuses (a compressed PNG text or ICC chunk that inflates past Pillow's limits, a JPEG APPn segment
it cannot parse, a WebP metadata chunk) must not hide the pixels from attribution. This module
walks a container's blocks by their headers only (it never inflates anything) and writes a copy
without the metadata blocks:

- PNG: every ancillary chunk but `tRNS` (transparency is pixel data) is metadata; critical chunks
  (IHDR, PLTE, IDAT, IEND) are kept;
- JPEG: APP1 to APP15 segments and comments (COM) are metadata; APP0 (JFIF) is kept;
- WebP: ICCP, EXIF and XMP chunks (and unknown ones) are metadata; the VP8X flags that announce
  them are cleared.

`oversized_png_chunks` finds, from chunk headers alone (seeking, not reading), ancillary PNG
chunks longer than a budget, so that a file carrying a huge metadata chunk is never read whole
into memory by the decoder.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
_MAX_BLOCKS = 100_000  # blocks walked before a container is declared unreadable


def _crc(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start of the chunk, end of the chunk) of every chunk, from their headers."""
    out, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data) and len(out) < _MAX_BLOCKS:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        end = min(pos + 12 + length, len(data))
        out.append((tag, pos, end))
        pos = end
        if tag == b"IEND":
            break
    return out


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every segment before the scan data (SOS starts the scan)."""
    out, pos = [], 2
    while pos + 4 <= len(data) and len(out) < _MAX_BLOCKS:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # SOS: the rest is the scan
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((marker, pos, min(pos + 2 + length, len(data))))
        pos += 2 + length
    return out


def webp_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(fourcc, start, end) of every RIFF chunk of a WebP file."""
    out, pos = [], 12
    while pos + 8 <= len(data) and len(out) < _MAX_BLOCKS:
        tag = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = min(pos + 8 + size + (size & 1), len(data))
        out.append((tag, pos, end))
        pos = end
    return out


def _png_without(data: bytes) -> tuple[bytes, list[str]]:
    kept, dropped = [data[: len(PNG_SIGNATURE)]], []
    for tag, a, b in png_chunks(data):
        if tag in PNG_KEEP:
            kept.append(data[a:b])
        else:
            dropped.append(f"PNG {tag.decode('latin-1')} chunk ({b - a} bytes)")
    return b"".join(kept), dropped


def _jpeg_without(data: bytes) -> tuple[bytes, list[str]]:
    segs = jpeg_segments(data)
    if not segs:
        return data, []
    kept, dropped, pos = [data[:2]], [], 2
    for marker, a, b in segs:
        kept.append(data[pos:a])
        if 0xE1 <= marker <= 0xEF or marker == 0xFE:
            name = "COM" if marker == 0xFE else f"APP{marker - 0xE0}"
            dropped.append(f"JPEG {name} segment ({b - a} bytes)")
        else:
            kept.append(data[a:b])
        pos = b
    kept.append(data[pos:])
    return b"".join(kept), dropped


def _webp_without(data: bytes) -> tuple[bytes, list[str]]:
    keep = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"}
    body, dropped = [], []
    for tag, a, b in webp_chunks(data):
        if tag not in keep:
            dropped.append(f"WebP {tag.decode('latin-1').strip()} chunk ({b - a} bytes)")
            continue
        chunk = data[a:b]
        if tag == b"VP8X" and len(chunk) > 8:  # announce no ICC (0x20), EXIF (0x08), XMP (0x04)
            chunk = chunk[:8] + bytes([chunk[8] & ~0x2C]) + chunk[9:]
        body.append(chunk)
    payload = b"WEBP" + b"".join(body)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload, dropped


def without_metadata(data: bytes, fmt: str) -> tuple[bytes, list[str]]:
    """A copy of the file without its metadata blocks (see the module doc), and what was
    dropped ("PNG zTXt chunk (61181 bytes)", ...); the file unchanged for other formats."""
    strip = {"PNG": _png_without, "JPEG": _jpeg_without, "WEBP": _webp_without}.get(fmt)
    if strip is None:
        return data, []
    try:
        return strip(data)
    except (struct.error, IndexError):
        return data, []


def png_file_chunks(fp: BinaryIO) -> Iterator[tuple[bytes, int, bytes]]:
    """(type, data length, 8-byte header) of every chunk of a PNG file, from the headers alone:
    after each one the file is seeked past the chunk, whatever the caller read of it."""
    fp.seek(len(PNG_SIGNATURE))
    for _ in range(_MAX_BLOCKS):
        head = fp.read(8)
        if len(head) < 8:
            return
        length, tag = struct.unpack(">I", head[:4])[0], head[4:]
        body = fp.tell()
        yield tag, length, head
        if tag == b"IEND":
            return
        fp.seek(body + length + 4)


def oversized_png_chunks(fp: BinaryIO, budget: int) -> list[str]:
    """Ancillary chunks of a PNG file longer than `budget` bytes, from the chunk headers alone
    (the file is seeked through, never read whole); the position of `fp` is restored."""
    start = fp.tell()
    try:
        return [f"PNG {tag.decode('latin-1')} chunk of {length / 2**20:.1f} MB"
                for tag, length, _ in png_file_chunks(fp)
                if tag not in PNG_KEEP and length > budget]  # fmt: skip
    finally:
        fp.seek(start)


def png_file_without_metadata(fp: BinaryIO) -> bytes:
    """A PNG file without its metadata chunks, reading only the chunks it keeps (the others are
    seeked over, never read)."""
    fp.seek(0)
    out = [fp.read(len(PNG_SIGNATURE))]
    for tag, length, head in png_file_chunks(fp):
        if tag in PNG_KEEP:
            out.append(head + fp.read(length + 4))
    return b"".join(out)
