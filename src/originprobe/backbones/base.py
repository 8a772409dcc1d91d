"""What every backbone is: a frozen network that emits named, pooled features from one forward pass,
and carries the preprocessing its weights were trained with.

Callers never choose a mean, std, size or interpolation: they ask the backbone (`preprocessing`).
A backbone must never download anything; weights come from an installed package, the local hub
cache or a file the user names, and missing weights are an error (`WeightsNotFoundError`), never a
silent fallback to random initialisation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..errors import ConfigError, OriginprobeError

_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class WeightsNotFoundError(OriginprobeError):
    """Weights of a backbone are not on this machine; the message says where to put them."""


class UnknownBackboneError(ConfigError):
    """A backbone name that no registry entry or prefix builds."""


@dataclass(frozen=True)
class Preprocessing:
    """The transform a backbone's weights expect: resize the short side to `resize_size` keeping
    the aspect ratio (or both sides, when `squash`), centre crop `input_size`, scale to [0, 1],
    normalise with `mean`/`std`.

    With `crop="native"` nothing is resampled: the centre `input_size` square is cut from the
    picture at its own resolution (a side shorter than that is filled by mirroring), so the high
    frequencies where generators leave their traces reach the network untouched.

    The resize and the crop are one resampling of the source region that survives the crop
    (Pillow's `resize(box=...)`), so the work per image is bounded by the output size, whatever the
    aspect ratio: a 20000x1 picture costs what a 224x224 one does. Images reach the model as uint8
    (`to_uint8`) and are normalised a batch at a time on the model's device (`normalize`).
    """

    input_size: int
    resize_size: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    squash: bool = False
    crop: str = "resize"  # "resize" (resample, then centre crop) or "native" (no resampling)
    views: int = 1  # native crops only: a g×g grid of crops spread over the whole picture

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}")
        if self.resize_size < self.input_size:
            raise ConfigError("resize_size must be at least input_size")
        if self.crop not in ("resize", "native"):
            raise ConfigError(f"unknown crop mode {self.crop!r} (resize or native)")
        if self.views != 1 and (self.crop != "native" or grid_side(self.views) is None):
            raise ConfigError(
                f"{self.views} views: several views need native crops, and a square number "
                "of them (4, 9, 16)"
            )

    @property
    def draft_size(self) -> int | None:
        """The short side a decoder must keep (JPEG draft mode may decode smaller than the file);
        None: the full resolution (native crops)."""
        return None if self.crop == "native" else self.resize_size

    def native(self, size: int | None = None, views: int = 1) -> "Preprocessing":
        """The same normalisation on un-resampled crops of `size` (default: the input size, at
        least 256) pixels: the centre one, or `views` of them over the whole picture, whose
        features are averaged."""
        size = int(size or max(256, self.input_size))
        return Preprocessing(
            input_size=size,
            resize_size=size,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
            crop="native",
            views=int(views),
        )

    def source_box(self, w: int, h: int) -> tuple[float, float, float, float]:
        """The region of a w×h picture that the resize + centre crop keeps, in its pixels."""
        if self.squash:
            f = self.input_size / self.resize_size
            cw, ch = w * f, h * f
        else:
            side = min(w, h) * self.input_size / self.resize_size
            cw = ch = side
        left, top = (w - cw) / 2.0, (h - ch) / 2.0
        return (left, top, left + cw, top + ch)

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """RGB `PIL.Image` → uint8 tensor (3, input_size, input_size), resized and cropped; with
        several views, (views, 3, input_size, input_size)."""
        img = img.convert("RGB")
        s = self.input_size
        if self.crop == "native":
            if self.views > 1:
                return grid_crops(pixels_of(img), s, self.views)
            return _native_crop(img, s)
        box = self.source_box(*img.size)
        if box != (0.0, 0.0, float(s), float(s)) or img.size != (s, s):
            img = img.resize((s, s), _INTERPOLATIONS[self.interpolation], box=box)
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        return x.view(s, s, 3).permute(2, 0, 1).contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch (B, 3, H, W) → float32, scaled to [0, 1] and normalised (several views
        (B, V, 3, H, W) are flattened to B·V images first)."""
        if x.dim() == 5:
            x = x.flatten(0, 1)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1) * 255.0
        return (x.float() - mean) / std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """RGB `PIL.Image` → normalised float32 tensor (3, input_size, input_size)."""
        return self.normalize(self.to_uint8(img)[None])[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["crop"] == "resize":  # the default is left out: keys of existing caches stay valid
            del d["crop"]
        if d["views"] == 1:
            del d["views"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(
            input_size=int(d["input_size"]),
            resize_size=int(d["resize_size"]),
            interpolation=d["interpolation"],
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            squash=bool(d.get("squash", False)),
            crop=str(d.get("crop", "resize")),
            views=int(d.get("views", 1)),
        )


def _native_crop(img: Image.Image, s: int) -> torch.Tensor:
    """The centre s×s pixels of an RGB picture, unresampled; short sides mirrored out to s."""
    w, h = img.size
    cw, ch = min(w, s), min(h, s)
    left, top = (w - cw) // 2, (h - ch) // 2
    img = img.crop((left, top, left + cw, top + ch))
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(ch, cw, 3)
    if (cw, ch) != (s, s):
        x = _mirror_pad(x, s)
    return x.permute(2, 0, 1).contiguous()


def pixels_of(img: Image.Image) -> torch.Tensor:
    """An RGB picture as a uint8 tensor (3, H, W), unresampled."""
    w, h = img.size
    x = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
    return x.view(h, w, 3).permute(2, 0, 1).contiguous()


def grid_side(views: int) -> int | None:
    g = int(round(views**0.5))
    return g if g * g == views and 1 <= g <= 8 else None


def grid_crops(x: torch.Tensor, s: int, views: int) -> torch.Tensor:
    """`views` (a square number) s×s crops of a uint8 picture (3, H, W) on an even g×g grid from
    corner to corner, so together they span the whole picture; sides shorter than s are mirrored
    out first. → (views, 3, s, s)."""
    g = grid_side(views)
    if g is None:
        raise ConfigError(f"{views} views: need a square number (1, 4, 9, 16 ...)")
    if x.shape[1] < s or x.shape[2] < s:
        hw = _mirror_pad(x.permute(1, 2, 0), max(s, x.shape[1], x.shape[2]))
        x = hw[: max(s, x.shape[1]), : max(s, x.shape[2])].permute(2, 0, 1)
    h, w = x.shape[1], x.shape[2]
    ys = [round(i * (h - s) / max(1, g - 1)) for i in range(g)]
    xs = [round(i * (w - s) / max(1, g - 1)) for i in range(g)]
    return torch.stack([x[:, y : y + s, x0 : x0 + s] for y in ys for x0 in xs]).contiguous()


def _mirror_pad(x: torch.Tensor, s: int) -> torch.Tensor:
    """(h, w, 3) uint8 → (s, s, 3), tiling the picture with mirrored copies of itself."""
    for dim in (0, 1):
        while x.shape[dim] < s:
            x = torch.cat([x, x.flip(dim)], dim=dim)
        x = x.narrow(dim, 0, s)
    return x.contiguous()


#: bumped when decoding or preprocessing changes the pixels a backbone sees (keys the cache)
PIPELINE_VERSION = "box-resize+jpeg-draft-1"


class Backbone(nn.Module):
    """A frozen feature extractor.

    `forward(x)` returns `{layer_name: (B, D) tensor}` for every layer in `layer_names`, all from one
    forward pass. `weights_id` identifies the exact weights (it keys the feature cache).
    """

    name: str
    preprocessing: Preprocessing
    layer_names: list[str]
    feature_dims: dict[str, int]
    weights_id: str
    prefers_channels_last: bool = True  # convolutional networks run faster channels-last
    onnx_friendly: bool = False  # exports to ONNX cleanly (see backbones.onnxrt)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def cache_key(self) -> str:
        """Everything that changes the features of an image: name, weights and preprocessing."""
        blob = json.dumps(
            {
                "name": self.name,
                "weights": self.weights_id,
                "pre": self.preprocessing.to_dict(),
                "pipeline": PIPELINE_VERSION,
                "variant": getattr(self, "feature_variant", ""),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights_id": self.weights_id,
            "preprocessing": self.preprocessing.to_dict(),
            "layers": list(self.layer_names),
            "feature_dims": dict(self.feature_dims),
        }


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: how to build a backbone and where its weights come from."""

    name: str
    source: str  # "package", "timm", "open_clip", "hf"
    description: str
    builder: Callable[..., Backbone]
    weights_hint: str  # where weights come from / where to put them
    weights_available: Callable[[], bool] = field(default=lambda: False)
    layers_hint: str = ""
    dim_hint: str = ""

    def build(self, weights: str | Path | None = None, **kw) -> Backbone:
        return self.builder(weights=weights, **kw)
