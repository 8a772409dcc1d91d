"""originprobe: open-set synthetic image origin attribution.

Pipeline, one folder per stage, data flowing one way:
data → backbones → features (cached) → heads → openset (scores, threshold) → model (the fitted
`Attributor`) → metrics → report. `pipeline` runs evaluations and studies on top of them; `cli`
and `serve` expose them.

    from originprobe import Attributor
    att = Attributor().fit("path/to/labelled/images", known=["real", "gen-a", "gen-b"])
    att.predict(["image.png"])
"""

from ._version import __version__
from .errors import ConfigError, OriginprobeError
from .model import (
    Attribution,
    Attributor,
    BundleError,
    FeatureExtractor,
    OpenSetClassifier,
    SelectionConfig,
)
from .runtime import Runtime
from .training import TrainConfig

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
