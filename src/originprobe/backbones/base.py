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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch import nn

_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class WeightsNotFoundError(Exception):
    """Weights of a backbone are not on this machine; the message says where to put them."""


class UnknownBackboneError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Preprocessing:
    """The transform a backbone's weights expect: resize (short side, keeping aspect ratio, unless
    `squash`), centre crop to `input_size`, scale to [0, 1], normalise with `mean`/`std`."""

    input_size: int
    resize_size: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    squash: bool = False

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")
        if self.resize_size < self.input_size:
            raise ValueError("resize_size must be at least input_size")

    def resize(self, img: Image.Image) -> Image.Image:
        method = _INTERPOLATIONS[self.interpolation]
        if self.squash:
            return img.resize((self.resize_size, self.resize_size), method)
        w, h = img.size
        scale = self.resize_size / min(w, h)
        nw, nh = max(self.resize_size, round(w * scale)), max(self.resize_size, round(h * scale))
        if (nw, nh) == (w, h):
            return img
        return img.resize((nw, nh), method)

    def crop(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        s = self.input_size
        left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
        return img.crop((left, top, left + s, top + s))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """RGB `PIL.Image` → normalised float32 tensor (3, input_size, input_size)."""
        img = self.crop(self.resize(img.convert("RGB")))
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        x = x.view(img.size[1], img.size[0], 3).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(input_size=int(d["input_size"]), resize_size=int(d["resize_size"]),
                   interpolation=d["interpolation"], mean=tuple(d["mean"]), std=tuple(d["std"]),
                   squash=bool(d.get("squash", False)))

    @classmethod
    def from_crop_pct(cls, input_size: int, crop_pct: float, **kw) -> "Preprocessing":
        import math
        return cls(input_size=input_size, resize_size=int(math.floor(input_size / crop_pct)), **kw)


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

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def cache_key(self) -> str:
        """Everything that changes the features of an image: name, weights and preprocessing."""
        blob = json.dumps({"name": self.name, "weights": self.weights_id,
                           "pre": self.preprocessing.to_dict(),
                           "variant": getattr(self, "feature_variant", "")}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {"name": self.name, "weights_id": self.weights_id,
                "preprocessing": self.preprocessing.to_dict(), "layers": list(self.layer_names),
                "feature_dims": dict(self.feature_dims)}


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


def file_digest(path: str | Path, limit: int | None = None) -> str:
    """sha256 of a weights file (hex); `limit` bytes only when given (for quick identities)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = limit
        while True:
            block = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
                if remaining <= 0:
                    break
    return h.hexdigest()


def state_dict_digest(sd: dict[str, torch.Tensor]) -> str:
    """Identity of in-memory weights: sha256 over names, shapes and values."""
    h = hashlib.sha256()
    for k, v in sd.items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
