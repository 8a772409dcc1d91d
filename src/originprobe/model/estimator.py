"""`OpenSetClassifier`: head + open-set score + reject threshold on feature rows, as one
scikit-learn estimator.

    clf = OpenSetClassifier(head="linear", open_set_score="auto").fit(X, y)  # known classes
    clf.predict(X_new)             # a known class, or "unknown" below the threshold
    clf.decision_function(X_new)   # the open-set score: higher = more likely known
    clf.predict_proba(X_new)       # the head's posterior over the known classes

`fit` chooses what is not fixed (the head's parameters, such as C, and with
``open_set_score="auto"`` the score) by cross-validation on the rows given (`model.crossval`: stratified folds and leave one
known generator out), sets the reject threshold at `target_tpr` of the out-of-fold scores of
every row, and refits the head on every row. It follows the estimator contract: `__init__`
stores, `fit` validates and learns, learned state ends in `_`; `clone`, `Pipeline` and
`GridSearchCV` work with it (its `score(X, y)` is the accuracy of `predict`, "unknown" counting
as wrong on known-class rows).

This is the one place where the decision "which known class, or unknown" is made (`decide`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..data.splits import per_class_subset
from ..errors import ConfigError
from ..heads import HEADS, Head, head_factory
from ..openset import (
    UNKNOWN,
    OpenSetScore,
    calibrate_threshold,
    check_supported,
    check_target_tpr,
    decision_scores_of,
    fit_score,
)
from .crossval import CrossValidation, Scored, SelectionConfig, best

REFERENCE_PER_CLASS = 2000  # training rows per class a model keeps (scores, enrolment)
DEFAULT_TARGET_TPR = 0.85  # share of known images kept; see the README's threshold study


@dataclass
class Decisions:
    """Vectorised decisions for n feature rows (what evaluation reads)."""

    classes: list[str]
    closest: np.ndarray  # (n,) object: best known class
    label: np.ndarray  # (n,) object: closest, or "unknown" below the threshold
    score: np.ndarray  # (n,) float
    proba: np.ndarray  # (n, K) the head's posterior
    threshold: float


def check_params(
    head: str = "linear",
    score: str | None = "auto",
    target_tpr: float = DEFAULT_TARGET_TPR,
    head_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[str]:
    """Every rule on an open-set classifier's parameters, in one place; returns the score
    candidates (one name, or every decision-only score the head supports for ``auto``)."""
    head_cls = HEADS.get(head)
    check_target_tpr(target_tpr)
    if int(seed) < 0:
        raise ConfigError(f"seed must be ≥ 0, got {seed}")
    if head_params:
        bad = set(head_params) - set(head_cls().get_params())
        if bad:
            raise ConfigError(f"head {head!r} has no parameter(s) {sorted(bad)}")
    if score in (None, "auto"):
        return decision_scores_of(head_cls)
    check_supported(head_cls, score)
    return [score]


class OpenSetClassifier(ClassifierMixin, BaseEstimator):
    """Open-set classification of feature rows (see the module doc).

    Parameters
    ----------
    head : str
        A registered head (`originprobe.heads.HEADS`): ``linear``, ``knn``, ``gaussian``,
        ``ncm``, ``reference``.
    open_set_score : str
        An open-set score the head supports, or ``auto``: the decision-only score with the best
        leave-one-generator-out estimate. (Not `score`: that is the estimator's accuracy.)
    target_tpr : float
        Share of known images the reject threshold keeps, measured on out-of-fold scores.
    head_params : mapping or None
        Head parameters to fix; the others of the head's grid are chosen by cross-validation.
    selection : SelectionConfig or mapping or None
        Folds, real classes and tie rule of the cross-validation.
    seed : int
        Seeds the folds and the head.

    Attributes
    ----------
    head_ : Head
        The head refitted on every row at the chosen parameters.
    score_ : OpenSetScore
        The fitted open-set score (higher = more likely known).
    threshold_ : float
        Scores below it are "unknown".
    classes_ : ndarray of str
        The known classes.
    estimate_ : Estimate
        The chosen candidate's known-only cross-validated figures.
    oof_scores_ : ndarray
        Out-of-fold open-set scores of every training row (the threshold's).
    cv_results_ : list of Scored
        Every candidate tried.
    """

    def __init__(
        self,
        head: str = "linear",
        open_set_score: str = "auto",
        target_tpr: float = DEFAULT_TARGET_TPR,
        head_params: Mapping[str, Any] | None = None,
        selection: SelectionConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
    ):
        self.head = head
        self.open_set_score = open_set_score
        self.target_tpr = target_tpr
        self.head_params = head_params
        self.selection = selection
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y) -> "OpenSetClassifier":
        """Choose, calibrate and refit on known-class rows X (n, D) with labels y."""
        X, y = _rows(X), np.asarray([str(v) for v in y], dtype=object)
        if len(X) != len(y):
            raise ConfigError(f"{len(X)} feature rows but {len(y)} labels")
        cv = CrossValidation(y, SelectionConfig.of(self.selection), self.seed, self.target_tpr)
        return self.fit_cross_validated(X, y, cv)

    def candidates(self) -> tuple[Head, list[dict], list[str]]:
        """(the head prototype, the parameter grid left to choose, the score candidates)."""
        scores = check_params(
            self.head, self.open_set_score, self.target_tpr, self.head_params, self.seed
        )
        fixed = dict(self.head_params or {})
        prototype = head_factory(self.head, self.seed)(**fixed)
        grid_spec = {k: v for k, v in prototype.param_grid.items() if k not in fixed}
        keys = list(grid_spec)
        grid = [dict(zip(keys, vals)) for vals in _product([grid_spec[k] for k in keys])]
        return prototype, grid, scores

    def fit_cross_validated(
        self, X: np.ndarray, y: np.ndarray, cv: CrossValidation, chosen: Scored | None = None
    ) -> "OpenSetClassifier":
        """`fit` on folds already made (`cv`); `chosen`: a candidate already cross-validated on
        these rows (a layer search's winner), whose out-of-fold scores and refit are reused."""
        prototype, grid, scores = self.candidates()
        before = cv.fits
        if chosen is None:
            self.cv_results_ = cv.evaluate(prototype, X, grid, scores)
            chosen = best(self.cv_results_, cv.config.tie)
        elif chosen.refit is None or len(chosen.oof_scores) != len(y):  # chosen on fewer rows
            again = cv.evaluate(prototype, X, [chosen.params], [chosen.score], logo=False)[0]
            chosen = Scored(chosen.params, chosen.score, chosen.estimate, again.oof_scores,
                            again.refit)  # fmt: skip
        self.fits_ = cv.fits - before
        assert chosen.refit is not None
        self._set_fitted(chosen.refit, chosen.score, X, y)
        self.params_, self.estimate_ = dict(chosen.params), chosen.estimate
        self.oof_scores_ = chosen.oof_scores  # every training row's, from a head without it
        self.threshold_ = calibrate_threshold(self.oof_scores_, float(self.target_tpr))
        return self

    def _set_fitted(self, head: Head, score: str, X: np.ndarray, y: np.ndarray) -> None:
        keep = per_class_subset(y, REFERENCE_PER_CLASS, np.random.default_rng(self.seed))
        self.head_ = head
        self.classes_ = np.asarray(head.classes_, dtype=object)
        self.reference_ = (np.ascontiguousarray(X[keep], np.float32), y[keep])
        self.score_name_ = score
        self.score_: OpenSetScore = fit_score(score, *self.reference_, head)

    @classmethod
    def from_parts(
        cls,
        head: Head,
        score: str,
        threshold: float,
        reference: tuple[np.ndarray, np.ndarray],
        **params: Any,
    ) -> "OpenSetClassifier":
        """A fitted classifier from saved parts (a bundle): the head, the score refitted on the
        reference rows, the threshold as saved."""
        clf = cls(head=head.name, open_set_score=score, **params)
        clf.head_, clf.classes_ = head, np.asarray(head.classes_, dtype=object)
        clf.reference_, clf.score_name_ = reference, score
        clf.score_ = fit_score(score, *reference, head)
        clf.threshold_ = float(threshold)
        return clf

    def enrolled(self, label: str, X_new: np.ndarray) -> "OpenSetClassifier":
        """A copy that also knows `label`, from its feature rows `X_new` and the reference rows:
        the head updated (`Head.add_class`), the score refitted, and the threshold at
        `target_tpr` of the earlier classes' out-of-fold scores (folds over the reference rows
        and the new ones, each fold's head made as enrolment makes it)."""
        import copy

        self._check_fitted()
        X_ref, y_ref = self.reference_
        X_new = _rows(X_new)
        head = self.head_.add_class(X_new, label, X_ref, y_ref)
        X = np.vstack([X_ref, X_new])
        y = np.concatenate([y_ref, np.array([label] * len(X_new), dtype=object)])
        cv = CrossValidation(y, SelectionConfig.of(self.selection), self.seed, self.target_tpr)
        oof = cv.evaluate(head.enrolment_prototype(), X, [{}], [self.score_name_], logo=False)
        other = copy.copy(self)
        other._set_fitted(head, self.score_name_, X, y)
        earlier = y != label
        other.threshold_ = calibrate_threshold(oof[0].oof_scores[earlier], float(self.target_tpr))
        return other

    # ------------------------------------------------------------------ deciding
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise RuntimeError("this classifier is not fitted: call fit(X, y) first")

    def decide(self, X) -> Decisions:
        """Closest class, label ("unknown" below the threshold), score and posterior per row."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        decision = self.head_.decision_function(X)
        proba = self.head_.proba_from_decision(decision)
        score = np.asarray(self.score_.score(X, decision), dtype=np.float64)
        closest = self.classes_[np.argmax(decision, axis=1)]
        label = closest.copy()
        label[score < self.threshold_] = UNKNOWN
        return Decisions(
            [str(c) for c in self.classes_], closest, label, score, proba, float(self.threshold_)
        )

    def predict(self, X) -> np.ndarray:
        return self.decide(X).label

    def decision_function(self, X) -> np.ndarray:
        """The open-set score of each row: higher = more likely a known class."""
        return self.decide(X).score

    def predict_proba(self, X) -> np.ndarray:
        return self.decide(X).proba

    def with_threshold(self, threshold: float) -> "OpenSetClassifier":
        """A copy that rejects below `threshold` instead of the calibrated one."""
        import copy

        self._check_fitted()
        other = copy.copy(self)
        other.threshold_ = float(threshold)
        return other


def _rows(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ConfigError(f"features must be (n, D), got shape {X.shape}")
    return X


def _product(values: Sequence[Sequence]) -> list[tuple]:
    import itertools

    return list(itertools.product(*values)) or [()]
