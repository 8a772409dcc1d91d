"""Image perturbations applied after decoding and before a backbone's preprocessing.

Used for JPEG-aligned evaluation (every image, of every class and role, recompressed at the same
quality, so that file format cannot give the answer) and for robustness curves (test images
perturbed at graded intensities). The kinds are registered in `PERTURBATIONS` (jpeg, blur,
downscale, crop), each with its rule on levels, its default graded levels and its help. A
`Perturbation` is a picklable callable PIL → PIL with a stable `key` that names it in the feature
cache; it is deterministic: the same image and parameters always give the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageFilter

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class PerturbationKind:
    """One kind of perturbation: how it changes an image at a level, and which levels exist."""

    name: str
    apply: Callable[[Image.Image, float], Image.Image]
    valid: Callable[[float], bool]
    rule: str  # what `valid` accepts, for the error message
    levels: tuple[float, ...]  # graded intensities of `evaluate --robustness` (mild → strong)
    help: str


PERTURBATIONS: Registry[PerturbationKind] = Registry("perturbation")


def _jpeg(img: Image.Image, quality: float) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _downscale(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return img.resize(size, Image.Resampling.BICUBIC)


def _crop(img: Image.Image, keep: float) -> Image.Image:
    """Centre crop keeping `keep` of each side (the backbone resizes afterwards)."""
    w, h = img.size
    cw, ch = max(1, round(w * keep)), max(1, round(h * keep))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


for _kind in (
    PerturbationKind("jpeg", _jpeg, lambda q: 1 <= q <= 100, "a JPEG quality in 1..100",
                     (95, 85, 75, 60, 40), "recompress as JPEG at quality Q"),
    PerturbationKind("blur", lambda img, s: img.filter(ImageFilter.GaussianBlur(radius=s))
                     if s else img, lambda s: s >= 0, "a sigma ≥ 0", (0.5, 1.0, 2.0, 3.0),
                     "Gaussian blur of sigma S"),
    PerturbationKind("downscale", _downscale, lambda f: 0 < f <= 1, "a factor in (0, 1]",
                     (0.75, 0.5, 0.35, 0.25), "bicubic downscale by factor F"),
    PerturbationKind("crop", _crop, lambda f: 0 < f <= 1, "a fraction in (0, 1]",
                     (0.9, 0.75, 0.6, 0.5), "centre crop keeping F of each side"),
):  # fmt: skip
    PERTURBATIONS.register(_kind.name, _kind)

#: graded intensities used by `evaluate --robustness` (mild → strong)
DEFAULT_LEVELS: dict[str, list[float]] = {n: list(k.levels) for n, k in PERTURBATIONS.items()}


@dataclass(frozen=True)
class Perturbation:
    kind: str
    level: float

    def __post_init__(self) -> None:
        k = PERTURBATIONS.get(self.kind)
        if not k.valid(self.level):
            raise ConfigError(f"{self.kind} level must be {k.rule}, got {self.level:g}")

    @classmethod
    def parse(cls, text: "str | Perturbation") -> "Perturbation":
        """ "jpeg=90" → Perturbation("jpeg", 90.0)."""
        if isinstance(text, Perturbation):
            return text
        kind, sep, level = str(text).partition("=")
        try:
            return cls(kind.strip(), float(level))
        except ValueError:
            raise ConfigError(f"perturbation {text!r}: write KIND=LEVEL, e.g. jpeg=90") from None

    @property
    def key(self) -> str:
        return f"{self.kind}{self.level:g}"

    def __str__(self) -> str:
        return f"{self.kind}={self.level:g}"

    def __call__(self, img: Image.Image) -> Image.Image:
        return PERTURBATIONS.get(self.kind).apply(img.convert("RGB"), self.level)


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
        PERTURBATIONS.get(kind)  # an unknown kind is an error listing the known ones
        try:
            vals = [float(v) for v in levels.split(",") if v.strip()] or DEFAULT_LEVELS[kind]
        except ValueError:
            raise ConfigError(f"perturbation levels {levels!r} in {spec!r}: give numbers") from None
        for v in vals:
            Perturbation(kind, v)  # validates
        out[kind] = vals
    return out
