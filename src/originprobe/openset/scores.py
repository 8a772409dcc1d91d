"""Open-set scores: how much a sample looks like one of the known classes.

Convention, for every score in originprobe: **higher = more likely known**. Distances are negated
and energies are sign-flipped so that one evaluation path (AUROC, OSCR, thresholds) serves all.

Every head's `decision_function(X)` returns an (n, K) matrix of per-class evidence: logits for the
linear head, negative distances (or log-likelihoods) for distance heads. Logit scores (msp,
maxlogit, energy) are computed from that matrix; distance scores (knn, mahalanobis, reference) are
its row maximum, i.e. minus the distance to the nearest known class. Each head declares the scores
it supports in `supported_scores`; any other pair is an `UnsupportedScoreError`.
This module never fits anything and never sees unknown-class labels.
"""
from __future__ import annotations

import numpy as np


LOGIT_SCORES = ("msp", "maxlogit", "energy")
ALL_SCORES = ("msp", "maxlogit", "energy", "knn", "mahalanobis", "reference")


class UnsupportedScoreError(ValueError):
    """A head was asked for a score it cannot produce."""


from ..heads.base import logsumexp, softmax


def msp(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability (Hendrycks & Gimpel)."""
    return softmax(logits).max(axis=1)


def maxlogit(logits: np.ndarray) -> np.ndarray:
    """Largest logit (Hendrycks et al., 2022)."""
    return logits.max(axis=1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T·logsumexp(logits/T) (Liu et al., 2020): higher = known."""
    return temperature * logsumexp(logits / temperature)


def logit_score(name: str, logits: np.ndarray) -> np.ndarray:
    if name == "msp":
        return msp(logits)
    if name == "maxlogit":
        return maxlogit(logits)
    if name == "energy":
        return energy(logits)
    raise UnsupportedScoreError(f"{name!r} is not a logit score; logit scores: {LOGIT_SCORES}")


def check_supported(head, name: str) -> None:
    if name not in ALL_SCORES:
        raise UnsupportedScoreError(f"unknown score {name!r}; scores: {', '.join(ALL_SCORES)}")
    if name not in head.supported_scores:
        raise UnsupportedScoreError(
            f"head {head.name!r} does not support score {name!r}; it supports "
            f"{', '.join(head.supported_scores)}")


def scores_from_decision(name: str, decision: np.ndarray) -> np.ndarray:
    """The open-set score `name` from a head's decision matrix (higher = known)."""
    if name in LOGIT_SCORES:
        return logit_score(name, decision)
    return decision.max(axis=1)


def known_score(head, X: np.ndarray, name: str) -> np.ndarray:
    """Score of every row of X under a fitted head (higher = more likely known)."""
    check_supported(head, name)
    return scores_from_decision(name, head.decision_function(X))
