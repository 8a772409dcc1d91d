"""Stage 2: frozen backbones that turn images into named per-layer features.

The family modules are imported here so that they register their entries; each imports its own
heavy library (timm, open_clip, transformers) only when a backbone of it is built.
"""

from . import efficientnet, forensic, hf, learned, openclip, vit  # noqa: F401  (registration)
from .base import (
    Backbone,
    BackboneSpec,
    Preprocessing,
    UnknownBackboneError,
    WeightsNotFoundError,
)
from .registry import (
    BACKBONES,
    DEFAULT_BACKBONE,
    PREFIXES,
    load_backbone,
    register,
    register_prefix,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "DEFAULT_BACKBONE",
    "PREFIXES",
    "Preprocessing",
    "UnknownBackboneError",
    "WeightsNotFoundError",
    "load_backbone",
    "register",
    "register_prefix",
]
