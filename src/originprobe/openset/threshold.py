"""Reject threshold: calibrated on known-class validation scores only, for a target TPR.

A sample is accepted as known when its score is >= the threshold. With target TPR t, the
threshold keeps (at least) a fraction t of the known validation samples. Unknown samples never
reach this module.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

UNKNOWN = "unknown"


def check_target_tpr(target_tpr) -> float:
    """The one rule on a target TPR: a fraction of known samples to keep, in (0, 1]."""
    try:
        v = float(target_tpr)
    except (TypeError, ValueError):
        raise ConfigError(f"target TPR must be a number in (0, 1], got {target_tpr!r}") from None
    if not 0.0 < v <= 1.0:
        raise ConfigError(f"target TPR must be in (0, 1], got {target_tpr}")
    return v


def calibrate_threshold(known_val_scores: np.ndarray, target_tpr: float = 0.95) -> float:
    s = np.sort(np.asarray(known_val_scores, dtype=np.float64))
    if s.size == 0:
        raise ConfigError("cannot calibrate a threshold without validation scores")
    if not np.all(np.isfinite(s)):
        raise ConfigError("validation scores contain non-finite values")
    target_tpr = check_target_tpr(target_tpr)
    # largest threshold that keeps ceil(t·n) samples
    keep = int(np.ceil(target_tpr * s.size))
    return float(s[s.size - keep])
