"""Provenance evidence: what an image file says about its own origin, beside the pixel verdict.

Two sources, each read by a well-kept library: C2PA content credentials (`c2pa-python`, the
optional extra `originprobe[provenance]`), and unsigned metadata — PNG text chunks, EXIF, XMP and
IPTC — read with Pillow. Known values are mapped to generator names by `generators.json` (data,
not code); the raw value is always kept. This stage reads files only: it never sees the pixel
model, and the pixel verdict is never changed by it (`compare` only sets agreement flags).

    reader = EvidenceReader(trust_anchors="trust.pem")
    ev = reader.read("image.jpg")            # Evidence, never raises on a bad file
    compare(ev, label="dalle-mini", classes=model.classes_)
"""

from __future__ import annotations

from pathlib import Path

from ..data.images import SNIFF_BYTES, sniff_format
from ..errors import ConfigError
from . import content_credentials
from .evidence import C2paRecord, Claim, Evidence, compare
from .metadata import read_metadata

_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
    "BMP": "image/bmp",
}


class EvidenceReader:
    """Reads one `Evidence` per file. `trust_anchors`: a PEM bundle of C2PA trust anchors."""

    def __init__(self, trust_anchors: str | Path | None = None):
        self.trust_anchors = trust_anchors
        self.c2pa_available = content_credentials.available()
        if trust_anchors and not self.c2pa_available:
            raise ConfigError(f"--c2pa-trust {trust_anchors}: {content_credentials.INSTALL_HINT}")
        self._credentials = (
            content_credentials.CredentialReader(trust_anchors) if self.c2pa_available else None
        )

    @property
    def note(self) -> str | None:
        """What this reader cannot see (shown once per run), or None."""
        return None if self.c2pa_available else content_credentials.INSTALL_HINT

    def read(self, source: str | Path | bytes) -> Evidence:
        ev = Evidence()
        if not isinstance(source, (bytes, bytearray)):
            source = Path(source)
        try:
            if isinstance(source, Path):
                with open(source, "rb") as f:
                    head = f.read(SNIFF_BYTES)
            else:
                head = bytes(source[:SNIFF_BYTES])
        except OSError as exc:
            ev.warnings.append(f"metadata not read: {exc.strerror or exc}")
            return ev
        fmt = sniff_format(head)
        if self._credentials is not None:
            record, claims, warns = self._credentials.read(source, _MIME.get(fmt or ""))
            ev.c2pa, ev.claims, ev.warnings = record, claims, warns
        claims, warns = read_metadata(source)
        ev.claims += claims
        ev.warnings += warns
        return ev


__all__ = ["C2paRecord", "Claim", "Evidence", "EvidenceReader", "compare"]
