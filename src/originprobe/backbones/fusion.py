"""Backbone variants and fusions, named in backbone specs.

- `NAME@native` (or `NAME@nativeSIZE`): the backbone NAME on un-resampled centre crops of SIZE
  pixels (default: its input size, at least 256) instead of resized images. The weights and the
  normalisation stay; the pixels keep the high frequencies a resize smooths away.
  `NAME@nativeSIZExV` reads V crops (4, 9, 16) on a grid spanning the whole picture and averages
  their features (multi-crop pooling).
- `A+B[+C...]`: several backbones at once. Its layers are the members' layers qualified by the
  member (`efficientnet-lite0@native/stage5`), so layer selection can pick and concatenate layers
  of different members. Every member keeps its own preprocessing and its own namespace in the
  feature store, so a fusion reuses what each member has already extracted, and extraction runs
  member by member (its cost is the sum of theirs).
"""

from __future__ import annotations

import hashlib
import re

import torch
from torch import nn

from ..errors import ConfigError
from .base import Backbone, grid_side

_NATIVE = re.compile(r"^native(\d+)?(?:x(\d+))?$")
SEP = "/"  # member/layer


def split_fusion(name: str) -> list[str]:
    """'a+b' → ['a', 'b']; a name without '+' is one member."""
    parts = [p.strip() for p in name.split("+")]
    if not all(parts):
        raise ConfigError(f"backbone {name!r}: empty member in a fusion")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"backbone {name!r} names a member twice")
    return parts


def split_variant(name: str) -> tuple[str, tuple[int, int] | None]:
    """'x@native' → ('x', (0, 1)); 'x@native320' → ('x', (320, 1)); 'x@native256x4' →
    ('x', (256, 4)); 'x' → ('x', None)."""
    base, sep, mod = name.rpartition("@")
    if not sep or ":" in mod or "/" in mod:
        return name, None
    m = _NATIVE.match(mod)
    if not m:
        raise ConfigError(
            f"backbone {name!r}: unknown variant @{mod} (use @native, @nativeSIZE or "
            "@nativeSIZExVIEWS)"
        )
    size, views = int(m.group(1) or 0), int(m.group(2) or 1)
    if m.group(1) and not 32 <= size <= 4096:
        raise ConfigError(f"backbone {name!r}: native crop size must be 32..4096 pixels")
    if grid_side(views) is None:
        raise ConfigError(f"backbone {name!r}: views must be a square number (4, 9, 16, ...)")
    return base, (size, views)


def as_native(backbone: Backbone, size: int, views: int = 1) -> Backbone:
    """`backbone` reading un-resampled crops (size 0: the default size): the centre one, or
    `views` of them whose features are averaged."""
    backbone.preprocessing = backbone.preprocessing.native(size or None, views)
    backbone.name = (
        f"{backbone.name}@native" + (str(size) if size else "") + (f"x{views}" if views > 1 else "")
    )
    return backbone


class FusedBackbone(Backbone):
    """Several backbones read as one: layer `member/layer` is `layer` of `member`."""

    def __init__(self, members: list[Backbone]):
        super().__init__()
        if len(members) < 2:
            raise ConfigError("a fusion needs at least two backbones")
        self.members = nn.ModuleList(members)
        self.name = "+".join(m.name for m in members)
        self.preprocessing = members[0].preprocessing  # each member applies its own
        self.layer_names = [f"{m.name}{SEP}{l}" for m in members for l in m.layer_names]
        self.feature_dims = {
            f"{m.name}{SEP}{l}": d for m in members for l, d in m.feature_dims.items()
        }
        self.weights_id = hashlib.sha256(
            "|".join(m.weights_id for m in members).encode()
        ).hexdigest()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("a fused backbone runs member by member (see features.extract)")

    def cache_key(self) -> str:
        return hashlib.sha256("|".join(m.cache_key() for m in self.members).encode()).hexdigest()[
            :16
        ]

    def describe(self) -> dict:
        return super().describe() | {"members": [m.describe() for m in self.members]}

    def by_member(self, layers) -> list[tuple[Backbone, list[str]]]:
        """The requested qualified layers grouped by member: [(member, [its layer names])]."""
        want = list(layers)
        unknown = [l for l in want if l not in self.feature_dims]
        if unknown:
            raise ConfigError(f"{self.name} has no layers {unknown}")
        out = []
        for m in self.members:
            mine = [l.rpartition(SEP)[2] for l in want if l.rpartition(SEP)[0] == m.name]
            if mine:
                out.append((m, mine))
        return out
