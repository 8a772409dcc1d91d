"""Small feature transforms shared by the distance heads (fitted state saved as tensors)."""

from __future__ import annotations

import numpy as np


def l2_normalize(X: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(n, 1e-12)


def centred_unit(X: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Subtract the training mean (when given), then project onto the unit sphere."""
    X = np.asarray(X, dtype=np.float32)
    return l2_normalize(X - mean if mean is not None else X)
