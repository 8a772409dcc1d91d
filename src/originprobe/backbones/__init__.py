"""Stage 2: frozen backbones that turn images into named per-layer features."""
from .base import (Backbone, BackboneSpec, Preprocessing, UnknownBackboneError,
                   WeightsNotFoundError)
from .registry import BACKBONES, DEFAULT_BACKBONE, load_backbone, register, register_prefix

__all__ = [
    "BACKBONES", "Backbone", "BackboneSpec", "DEFAULT_BACKBONE", "Preprocessing",
    "UnknownBackboneError", "WeightsNotFoundError", "load_backbone", "register", "register_prefix",
]
