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
from .model import Attribution, Attributor, BundleError

__all__ = [
    "Attribution",
    "Attributor",
    "BundleError",
    "ConfigError",
    "OriginprobeError",
    "__version__",
]
