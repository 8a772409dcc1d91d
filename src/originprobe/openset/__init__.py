"""Stage 5: open-set scores (fitted objects; higher = more likely known) and reject thresholds."""

from .scores import (
    MSP,
    SCORES,
    DeepKNN,
    Energy,
    Mahalanobis,
    MaxLogit,
    OpenSetScore,
    ReferenceDistance,
    UnsupportedScoreError,
    ViM,
    check_supported,
    fit_score,
)
from .threshold import UNKNOWN, calibrate_threshold, check_target_tpr

__all__ = [
    "SCORES",
    "DeepKNN",
    "Energy",
    "MSP",
    "Mahalanobis",
    "MaxLogit",
    "OpenSetScore",
    "ReferenceDistance",
    "UNKNOWN",
    "UnsupportedScoreError",
    "ViM",
    "calibrate_threshold",
    "check_supported",
    "check_target_tpr",
    "fit_score",
]
