"""Cross-validation on known classes: the one place where every choice of a model is estimated.

Every choice (the layer set, C or another head parameter, the members of a fusion, the head and
the open-set score) is made on the training data of the known classes alone, by two estimates
that need no unknown image:

- **closed set**: balanced accuracy of out-of-fold predictions over stratified, seeded k folds
  (`folds`, default 5), so that a large "real" class does not dominate;
- **open set, leave one known generator out** (`withheld_splits`): each known generator in turn
  is withheld from a fold's training rows and plays the unknown on that fold's test rows; "real"
  (`real_classes`) is never withheld. Over the withheld generators this estimates AUROC, OSCR and
  the share of an unseen generator's images rejected at the model's own threshold
  (`Estimate.rejected`), without any unknown image.

The **criterion** that chooses is their mean, `(balanced_accuracy + auroc) / 2`; with fewer than
three known classes no generator can be withheld and the criterion is the balanced accuracy
alone. Candidates whose criterion is within `SelectionConfig.tie` of the best are ties, and the
first of them wins: candidates are listed from the simplest (fewest layers, strongest
regularisation, the head's own score) to the most complex.

Out-of-fold scores at the chosen parameters set the reject threshold (`Scored.oof_scores`): no row
both trains a head and sets the threshold that head is judged by.

This module never sees test or unknown-class data: its callers pass known-class training rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone

from ..errors import ConfigError
from ..heads import Head
from ..heads.base import place_columns
from ..heads.selection import balanced_accuracy
from ..metrics import auroc, oscr
from ..openset import (
    DECISION_ONLY,
    SCORES,
    calibrate_threshold,
    fit_score,
    score_decisions,
)
from ..options import option

Split = tuple[np.ndarray, np.ndarray]
LAYER_SEARCHES = ("auto", "all", "members", "forward", "single")
OPERATING_TPRS = (0.95, 0.90, 0.85, 0.80)  # target TPRs whose rejection is also estimated
MAX_WITHHELD_SPLITS = 40  # (generator, fold) problems per candidate; beyond, fewer folds each


@dataclass(frozen=True)
class SelectionConfig:
    """How a model is chosen from known-class training data (see the module doc).

    Parameters
    ----------
    folds : int
        Stratified cross-validation folds (≥ 2).
    layer_search : str
        ``auto``: when concatenating every layer is affordable, the subsets of a small fusion's
        members (or every layer concatenated), else forward selection (see `model.selection`);
        ``all``: every layer concatenated; ``members``: every subset of a fusion's members;
        ``forward``: forward selection of layers by the criterion, up to `combine_layers`;
        ``single``: the best single layer.
    combine_layers : int
        Most layers forward selection concatenates.
    real_classes : tuple of str
        Known classes that are never withheld as stand-in unknowns.
    max_rows : int
        Rows the candidates are compared on (a stratified, seeded subsample above it); the
        chosen model's threshold and refit always use every row.
    logo_params : int
        Parameter values (the best by cross-validated balanced accuracy) that also get the
        leave-one-generator-out estimate.
    tie : float
        Criterion differences below it are ties (the simpler candidate wins).
    """

    folds: int = option(5, "cross-validation folds for every choice", "selection", metavar="K")
    layer_search: str = option(
        "auto",
        "layers: auto (members of a small fusion, or all, while affordable; else forward), all, "
        "members, forward, single",
        "selection",
        choices=LAYER_SEARCHES,
    )
    combine_layers: int = option(
        3, "forward layer search: concatenate up to N layers", "selection", metavar="N"
    )
    real_classes: tuple[str, ...] = option(
        ("real",), "known classes never withheld as stand-in unknowns (default: real)",
        "selection", str, metavar="A,B",
    )  # fmt: skip
    max_rows: int = 6000
    logo_params: int = 1
    tie: float = 0.002
    concat_dims: int = 8192

    def __post_init__(self) -> None:
        if isinstance(self.real_classes, str):
            names = tuple(x.strip() for x in self.real_classes.split(",") if x.strip())
            object.__setattr__(self, "real_classes", names)
        else:
            object.__setattr__(self, "real_classes", tuple(self.real_classes))
        for name, lowest in (("folds", 2), ("combine_layers", 1), ("max_rows", 10),
                             ("logo_params", 1), ("concat_dims", 1)):  # fmt: skip
            if int(getattr(self, name)) < lowest:
                raise ConfigError(f"selection {name} must be ≥ {lowest}, got {getattr(self, name)}")
        if self.layer_search not in LAYER_SEARCHES:
            raise ConfigError(
                f"layer search {self.layer_search!r}: use one of {', '.join(LAYER_SEARCHES)}"
            )

    @classmethod
    def of(cls, value: "SelectionConfig | Mapping[str, Any] | None") -> "SelectionConfig":
        if value is None:
            return cls()
        if isinstance(value, SelectionConfig):
            return value
        if isinstance(value, Mapping):
            names = set(cls.__dataclass_fields__)
            bad = sorted(set(value) - names)
            if bad:
                raise ConfigError(f"selection has no setting(s) {bad}; it has {sorted(names)}")
            return cls(**dict(value))
        raise ConfigError(f"selection must be a SelectionConfig or a mapping, not {value!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["real_classes"] = list(self.real_classes)
        return d


@dataclass
class Estimate:
    """Known-only figures of one candidate (see the module doc)."""

    balanced_accuracy: float
    auroc: float | None = None
    oscr: float | None = None
    rejected: float | None = None  # share of a withheld generator's images below the threshold
    withheld: dict[str, dict[str, float]] = field(default_factory=dict)
    rejected_at: dict[str, float] = field(default_factory=dict)  # the same at other target TPRs

    @property
    def criterion(self) -> float:
        if self.auroc is None:
            return self.balanced_accuracy
        return 0.5 * (self.balanced_accuracy + self.auroc)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["criterion"] = self.criterion
        return {k: _rounded(v) for k, v in d.items()}


def _rounded(v):
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    return v


@dataclass
class Scored:
    """One (head parameters, score) candidate on one feature matrix, cross-validated."""

    params: dict
    score: str
    estimate: Estimate
    oof_scores: np.ndarray  # (n,) out-of-fold open-set scores of every row
    refit: Head | None = None  # the head at `params` fitted on every row, when already made


def folds(y: np.ndarray, k: int, seed: int) -> list[Split]:
    """Stratified, seeded k folds: each class's rows, shuffled, are dealt round the folds (a
    class with fewer rows than folds is in fewer folds' test parts). Every row is in exactly one
    test part. → [(train rows, test rows)]."""
    y = np.asarray(y, dtype=object)
    k = int(k)
    if len(y) < k:
        raise ConfigError(f"{len(y)} training images cannot make {k} cross-validation folds")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    start = 0
    for label in sorted(set(y.tolist())):
        rows = np.flatnonzero(y == label)
        fold_of[rows[rng.permutation(len(rows))]] = (start + np.arange(len(rows))) % k
        start += len(rows)  # the next class starts where this one stopped: folds stay even
    everything = np.arange(len(y))
    return [(everything[fold_of != f], everything[fold_of == f]) for f in range(k)]


def withheld_generators(y: np.ndarray, real_classes: Sequence[str]) -> list[str]:
    """The known classes that may play the unknown: every one but the real classes, when at
    least two classes stay to train on."""
    classes = sorted(set(np.asarray(y, dtype=object).tolist()))
    if len(classes) < 3:
        return []
    return [c for c in classes if c not in set(real_classes)]


def withheld_splits(
    y: np.ndarray, fold_splits: Sequence[Split], generators: Sequence[str]
) -> list[tuple[str, Split]]:
    """(generator, (the fold's training rows without it, the fold's test rows)) for every
    withheld generator and fold: the generator is absent from training and present in test.
    With more than `MAX_WITHHELD_SPLITS` pairs, each generator is withheld in as many folds as
    fit (at least one), the folds taken in turn."""
    y = np.asarray(y, dtype=object)
    k = len(fold_splits)
    per = max(1, min(k, MAX_WITHHELD_SPLITS // max(len(generators), 1)))
    out = []
    for i, g in enumerate(generators):
        for f in ((i * per + j) % k for j in range(per)):
            train, test = fold_splits[f]
            out.append((g, (train[y[train] != g], test)))
    return out


def open_set_estimate(
    y: np.ndarray, per_generator: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    target_tpr: float,
) -> dict:  # fmt: skip
    """AUROC, OSCR and share rejected at the target-TPR threshold, averaged over withheld
    generators; `per_generator[g]` = (rows, their scores, their predicted classes) from models
    that never trained on g."""
    out: dict[str, dict[str, float]] = {}
    at: dict[str, list[float]] = {f"{t:.2f}": [] for t in OPERATING_TPRS}
    for g, (rows, scores, pred) in per_generator.items():
        known = np.asarray(y[rows] != g)
        if not known.any() or known.all():
            continue
        thr = calibrate_threshold(scores[known], target_tpr)
        out[g] = {
            "auroc": auroc(list(scores), list(known)),
            "oscr": oscr(scores, known, pred == y[rows]),
            "rejected": float(np.mean(scores[~known] < thr)),
        }
        for t in OPERATING_TPRS:
            at[f"{t:.2f}"].append(
                float(np.mean(scores[~known] < calibrate_threshold(scores[known], t)))
            )
    if not out:
        return {}
    mean = {m: float(np.mean([v[m] for v in out.values()])) for m in ("auroc", "oscr", "rejected")}
    return {**mean, "withheld": out, "rejected_at": {t: float(np.mean(v)) for t, v in at.items()}}


class CrossValidation:
    """The folds of one set of known-class rows and the estimates of candidates on them."""

    def __init__(self, y: np.ndarray, config: SelectionConfig, seed: int, target_tpr: float):
        self.y = np.asarray([str(v) for v in y], dtype=object)
        self.classes = np.array(sorted(set(self.y.tolist())), dtype=object)
        self.config, self.target_tpr = config, float(target_tpr)
        self.folds = folds(self.y, min(config.folds, len(self.y)), seed)
        self.generators = withheld_generators(self.y, config.real_classes)
        self.logo = withheld_splits(self.y, self.folds, self.generators)
        self.fits = 0

    def evaluate(
        self, prototype: Head, X, grid: Sequence[dict], scores: Sequence[str], logo: bool = True
    ) -> list[Scored]:
        """Every (params of `grid`, score) on features X: cross-validated balanced accuracy for
        every params, the leave-one-generator-out estimate for the `logo_params` best (without
        `logo`: none, only the out-of-fold scores), and the heads at those params refitted on
        every row. Listed in grid order, then score order (the order ties are broken in)."""
        X = np.asarray(X, dtype=np.float32) if not isinstance(X, np.ndarray) else X
        cache: dict = {}
        decisions, _ = prototype.cross_decisions(X, self.y, self.folds, grid, cache=cache)
        self.fits += len(grid) * len(self.folds)
        oof = [self._assemble(row, self.folds) for row in decisions]
        bacc = [balanced_accuracy(self.y, self.classes[d.argmax(1)]) for d in oof]
        order = sorted(range(len(grid)), key=lambda i: (-round(bacc[i], 6), i))
        top = sorted(order[: self.config.logo_params])
        withheld = self.logo if logo else []
        splits = [s for _, s in withheld]
        logo_d, heads = prototype.cross_decisions(
            X, self.y, splits, [grid[i] for i in top], True, cache
        )
        self.fits += len(top) * (len(splits) + 1)
        out = []
        for j, i in enumerate(top):
            per_g = self._by_generator(withheld, logo_d[j])
            for name in scores:
                if SCORES.get(name).needs <= DECISION_ONLY:
                    oof_s = score_decisions(name, prototype, oof[i])
                    logo_s = {g: (r, score_decisions(name, prototype, d), p)
                              for g, (r, d, p) in per_g.items()}  # fmt: skip
                else:
                    oof_s, logo_s = self._feature_score(prototype, X, grid[i], name, withheld)
                est = Estimate(bacc[i], **open_set_estimate(self.y, logo_s, self.target_tpr))
                out.append(Scored(dict(grid[i]), name, est, oof_s, heads[j]))
        return out

    def _assemble(self, row: Sequence[np.ndarray], splits: Sequence[Split]) -> np.ndarray:
        out = np.full((len(self.y), len(self.classes)), -np.inf)
        for d, (_, test) in zip(row, splits):
            out[test] = d
        return out

    def _by_generator(self, withheld: Sequence, row: Sequence[np.ndarray]) -> dict:
        """{generator: (rows, decisions, predicted classes)} from the withheld splits' decisions."""
        parts: dict[str, list] = {}
        for (g, (_, test)), d in zip(withheld, row):
            parts.setdefault(g, []).append((test, d))
        out = {}
        for g, items in parts.items():
            rows = np.concatenate([t for t, _ in items])
            d = np.vstack([x for _, x in items])
            out[g] = (rows, d, self.classes[d.argmax(1)])
        return out

    def _feature_score(self, prototype: Head, X, params: dict, name: str, withheld: Sequence):
        """Out-of-fold and withheld-generator scores of a score that is fitted on training
        features (knn, mahalanobis, vim): a head and the score fitted per split."""

        def run(splits: Sequence[Split]) -> list[tuple[np.ndarray, np.ndarray]]:
            res = []
            for train, test in splits:
                head = clone(prototype).set_params(**params).fit(X[train], self.y[train])
                sc = fit_score(name, X[train], self.y[train], head)
                d = head.decision_function(X[test])
                pred = place_columns(d, head.classes_, self.classes).argmax(1)
                res.append((sc.score(X[test], d), self.classes[pred]))
                self.fits += 1
            return res

        oof = np.empty(len(self.y))
        for (_, test), (s, _) in zip(self.folds, run(self.folds)):
            oof[test] = s
        per_g: dict[str, list] = {}
        for (g, (_, test)), (s, p) in zip(withheld, run([s for _, s in withheld])):
            per_g.setdefault(g, []).append((test, s, p))
        logo = {
            g: tuple(np.concatenate([x[i] for x in items]) for i in range(3))
            for g, items in per_g.items()
        }
        return oof, logo


def best(candidates: Sequence[Scored], tie: float) -> Scored:
    """The candidate with the highest criterion; within `tie` of it, the first listed."""
    if not candidates:
        raise ConfigError("no candidate to choose from")
    top = max(c.estimate.criterion for c in candidates)
    return next(c for c in candidates if c.estimate.criterion >= top - tie)
