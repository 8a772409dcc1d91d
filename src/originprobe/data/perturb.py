"""Image perturbations applied after decoding and before a backbone's preprocessing.

Used for JPEG-aligned evaluation (every image, of every class and role, recompressed at the same
quality, so that file format cannot give the answer) and for robustness curves (test images
perturbed at graded intensities). A perturbation is a picklable callable PIL → PIL (it runs in
DataLoader workers) with a stable `key` that names it in the feature cache. Perturbations are
deterministic: the same image and parameters always give the same pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageFilter

from ..errors import ConfigError

PERTURBATIONS = ("jpeg", "blur", "downscale", "crop")
#: graded intensities used by `evaluate --robustness` (mild → strong)
DEFAULT_LEVELS: dict[str, list[float]] = {
    "jpeg": [95, 85, 75, 60, 40],
    "blur": [0.5, 1.0, 2.0, 3.0],
    "downscale": [0.75, 0.5, 0.35, 0.25],
    "crop": [0.9, 0.75, 0.6, 0.5],
}


@dataclass(frozen=True)
class Perturbation:
    kind: str
    level: float

    def __post_init__(self) -> None:
        if self.kind not in PERTURBATIONS:
            raise ConfigError(f"unknown perturbation {self.kind!r}; known: {PERTURBATIONS}")
        if self.kind == "jpeg" and not 1 <= self.level <= 100:
            raise ConfigError(f"JPEG quality must be in 1..100, got {self.level}")
        if self.kind in ("downscale", "crop") and not 0 < self.level <= 1:
            raise ConfigError(f"{self.kind} factor must be in (0, 1], got {self.level}")
        if self.kind == "blur" and self.level < 0:
            raise ConfigError(f"blur sigma must be ≥ 0, got {self.level}")

    @property
    def key(self) -> str:
        return f"{self.kind}{self.level:g}"

    def __call__(self, img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        if self.kind == "jpeg":
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(self.level))
            buf.seek(0)
            with Image.open(buf) as out:
                return out.convert("RGB")
        if self.kind == "blur":
            return img.filter(ImageFilter.GaussianBlur(radius=self.level)) if self.level else img
        if self.kind == "downscale":
            w, h = img.size
            return img.resize(
                (max(1, round(w * self.level)), max(1, round(h * self.level))),
                Image.Resampling.BICUBIC,
            )
        # crop: centre crop keeping `level` of each side (the backbone resizes afterwards)
        w, h = img.size
        cw, ch = max(1, round(w * self.level)), max(1, round(h * self.level))
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))


def jpeg_align(quality: int) -> Perturbation:
    return Perturbation("jpeg", float(quality))


def parse_levels(spec: str | None) -> dict[str, list[float]]:
    """ "jpeg=90,70;blur=1,2" → {"jpeg": [90, 70], "blur": [1, 2]}; None → the defaults."""
    if not spec or spec == "default":
        return dict(DEFAULT_LEVELS)
    out: dict[str, list[float]] = {}
    for part in spec.split(";"):
        kind, _, levels = part.partition("=")
        kind = kind.strip()
        if kind not in PERTURBATIONS:
            raise ConfigError(f"unknown perturbation {kind!r} in {spec!r}; known: {PERTURBATIONS}")
        vals = [float(v) for v in levels.split(",") if v.strip()] or DEFAULT_LEVELS[kind]
        for v in vals:
            Perturbation(kind, v)  # validates
        out[kind] = vals
    return out
