"""Stage 5: open-set scores (fitted objects; higher = more likely known) and reject thresholds."""

from .scores import (
    DECISION_ONLY,
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
    decision_scores_of,
    fit_score,
    score_decisions,
    supported_scores,
)
from .threshold import UNKNOWN, calibrate_threshold, check_target_tpr

__all__ = [
    "DECISION_ONLY",
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
    "decision_scores_of",
    "fit_score",
    "score_decisions",
    "supported_scores",
]
