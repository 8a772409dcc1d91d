"""The fitted model: `Attributor`, the composition of a `FeatureExtractor` (images → features)
and an `OpenSetClassifier` (features → a known class or unknown), the layer set between them
chosen by cross-validation (`selection`, `crossval`), and its bundle format. Everything after it
(evaluation, reports, the command line, the service) holds one and never re-implements its
decisions."""

from .attributor import Attributor
from .bundle import BundleError
from .crossval import Estimate, SelectionConfig
from .estimator import DEFAULT_TARGET_TPR, Decisions, OpenSetClassifier, check_params
from .evidence import Attribution
from .extractor import FeatureExtractor
from .preparation import Prepared, prepare_split

__all__ = [
    "DEFAULT_TARGET_TPR",
    "Attribution",
    "Attributor",
    "BundleError",
    "Decisions",
    "Estimate",
    "FeatureExtractor",
    "OpenSetClassifier",
    "Prepared",
    "SelectionConfig",
    "check_params",
    "prepare_split",
]
