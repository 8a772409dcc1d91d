"""Stage 5: open-set scores (higher = more likely known) and reject thresholds."""
from .scores import (ALL_SCORES, LOGIT_SCORES, UnsupportedScoreError, check_supported, energy,
                     known_score, logit_score, maxlogit, msp, scores_from_decision)
from .threshold import UNKNOWN, apply_threshold, calibrate_threshold

__all__ = ["ALL_SCORES", "LOGIT_SCORES", "UNKNOWN", "UnsupportedScoreError", "apply_threshold",
           "calibrate_threshold", "check_supported", "energy", "known_score", "logit_score",
           "maxlogit", "msp", "scores_from_decision"]
