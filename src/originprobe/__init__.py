"""originprobe: open-set synthetic image origin attribution.

Pipeline, one folder per stage, data flowing one way:
data → backbones → features (cached) → heads → openset (scores, threshold) → metrics →
discovery (rejected images grouped) → model (the fitted `Attributor`) → report. `pipeline` runs evaluations and studies on top of them; `cli`
and `serve` expose them.

    from originprobe import Attributor
    att = Attributor().fit("path/to/labelled/images", known=["real", "gen-a", "gen-b"])
    att.predict(["image.png"])
"""

from importlib import import_module

from ._version import __version__
from .errors import ConfigError, OriginprobeError

#: public names → the module that defines them, imported on first use, so that a light part
#: (`originprobe.discovery`, `originprobe.metrics`) does not load PyTorch
_LAZY = {
    "Attribution": "model",
    "Attributor": "model",
    "BundleError": "model",
    "FeatureExtractor": "model",
    "OpenSetClassifier": "model",
    "SelectionConfig": "model",
    "Runtime": "runtime",
    "TrainConfig": "training",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Attribution",
    "Attributor",
    "BundleError",
    "ConfigError",
    "FeatureExtractor",
    "OpenSetClassifier",
    "OriginprobeError",
    "Runtime",
    "SelectionConfig",
    "TrainConfig",
    "__version__",
]
