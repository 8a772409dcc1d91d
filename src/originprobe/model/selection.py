"""Which features a model reads: the layer set and the fusion members, chosen by cross-validation.

`search_layers` compares candidate layer specs of the backbone's features on known-class rows,
each with its head parameters and score cross-validated (`model.crossval`), and returns the one
with the best criterion (cross-validated balanced accuracy and the leave-one-generator-out
AUROC). Which candidates (`SelectionConfig.layer_search`):

- ``all``: every layer concatenated, under the head's own regularisation (C chosen by
  cross-validation): one candidate;
- ``members``: for a fusion `A+B+...`, every non-empty subset of its members, each with all its
  layers concatenated (so the members are chosen too);
- ``forward``: forward selection: the best single layer, then the layer whose concatenation
  raises the criterion most, while it rises and at most `combine_layers` are joined; with many
  wide layers on many rows (CLIP ViT-L/14 on OSMA) the single layers are first ranked by a
  closed-form shrinkage-LDA proxy on one fold and only the best `SCREEN_TOP` are cross-validated;
- ``single``: the best single layer;
- ``auto`` (default): when the concatenation of every layer is affordable (at most
  `concat_dims` wide, or at most `CONCAT_VALUES` values over the rows), ``members`` for a
  fusion of at most `MEMBER_SUBSETS_UP_TO` members and ``all`` otherwise; else ``forward``.
An explicit layer list ("stage4+stage5,stage3") is compared as given.

Candidates are listed simplest first (fewer members, then fewer layers) so that ties go to the
simpler one. Above `max_rows` known rows, candidates are compared on a stratified, seeded
subsample; the chosen one is then cross-validated on every row for its threshold and refitted on
every row by `OpenSetClassifier.fit_cross_validated`.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data.splits import stratified_subsample
from ..features.layers import LayerRows, LayerSpec, base_layers
from ..heads.selection import lda_proxy
from .crossval import CrossValidation, Scored, SelectionConfig, best
from .estimator import OpenSetClassifier

SCREEN_TOP = 3  # single layers cross-validated after proxy screening
MEMBER_SUBSETS_UP_TO = 3  # auto compares the member subsets of fusions this small (7 at most)
CONCAT_VALUES = 5e7  # rows × dims of a concatenation auto still tries (D > n: the Gram basis)
FORWARD_GAIN = 0.005  # criterion gain a layer must bring to be added by forward selection
SCREEN_COST = 2e9  # layers × classes × dims × rows above which forward selection screens

Mapper = Callable[[Callable, list], Iterable]


@dataclass
class LayerChoice:
    """The chosen layer spec with its cross-validated candidate, and every candidate tried."""

    layer: LayerSpec
    chosen: Scored
    rows: list[dict] = field(default_factory=list)  # layer, params, score, estimate per candidate
    candidates: dict[LayerSpec, list[Scored]] = field(default_factory=dict)
    seconds: float = 0.0
    fits: int = 0
    subsampled: int | None = None  # rows compared on, when fewer than every row
    proxy: dict[str, float] = field(default_factory=dict)

    def summary(self, clf: OpenSetClassifier, cfg: SelectionConfig, engine: str) -> dict:
        """What model.json and results keep of the choice: the layer, parameters and score, how
        they were chosen, and the known-only estimate."""
        return {
            "layer": str(self.layer),
            "params": clf.params_,
            "score": clf.score_name_,
            "criterion": "mean of cross-validated balanced accuracy and leave-one-known-"
            "generator-out AUROC",
            "folds": cfg.folds,
            "layer_search": cfg.layer_search,
            "estimate": clf.estimate_.to_dict(),
            "compared_on_rows": self.subsampled,
            "fits": self.fits + clf.fits_,
            "seconds": round(self.seconds, 3),
            "engine": engine,
        }


def members_of(layers: Sequence[str]) -> list[str]:
    """The fusion members of layer names "MEMBER/LAYER" (one unnamed member otherwise)."""
    return list(dict.fromkeys(l.split("/", 1)[0] if "/" in l else "" for l in layers))


def concatenations(layers: Sequence[str]) -> list[LayerSpec]:
    """Every layer concatenated; for a fusion, one candidate per non-empty subset of members,
    fewest members first."""
    members = members_of(layers)
    if len(members) == 1:
        return [LayerSpec(tuple(layers))]
    out = []
    for k in range(1, len(members) + 1):
        for subset in itertools.combinations(members, k):
            out.append(LayerSpec(tuple(l for l in layers if l.split("/", 1)[0] in subset)))
    return out


def _evaluate(task: tuple) -> tuple[list[Scored], int]:
    """One candidate layer spec cross-validated, and the fits it took (a Ray task reads its
    features where it runs)."""
    clf, features, spec, index, cv = task
    X = LayerRows(features, index).concat(spec)
    prototype, grid, scores = clf.candidates()
    cv.fits = 0
    out = cv.evaluate(prototype, X, grid, scores)
    return out, cv.fits


class LayerSearch:
    """Candidates → their cross-validated figures → the best (see the module doc)."""

    def __init__(
        self,
        clf: OpenSetClassifier,
        features: Mapping[str, np.ndarray],
        y: np.ndarray,
        config: SelectionConfig,
        progress: bool = False,
        mapper: Mapper | None = None,
    ):
        self.clf, self.features, self.config = clf, features, config
        self.y = np.asarray([str(v) for v in y], dtype=object)
        self.index = stratified_subsample(self.y, config.max_rows, clf.seed)
        y_cmp = self.y if self.index is None else self.y[self.index]
        self.cv = CrossValidation(y_cmp, config, clf.seed, clf.target_tpr)
        self.progress, self.mapper = progress, mapper
        self.scored: dict[LayerSpec, list[Scored]] = {}
        self.fits = 0
        self.t0 = time.perf_counter()

    def run(self, specs: Sequence[LayerSpec], widths: Mapping[str, int]) -> LayerChoice:
        singles = base_layers(specs)
        explicit = any(len(s) > 1 for s in specs) or len(specs) < len(singles)
        mode = self.config.layer_search
        if mode == "auto":
            dims = sum(widths.get(l, 0) for l in singles)
            narrow = dims <= self.config.concat_dims or dims * len(self.y) <= CONCAT_VALUES
            few = len(members_of(singles)) <= MEMBER_SUBSETS_UP_TO
            mode = "forward" if not narrow else "members" if few else "all"
        proxy: dict[str, float] = {}
        if explicit or len(specs) == 1:
            self.score_all(list(specs))
        elif mode == "all":
            self.score_all([LayerSpec(tuple(singles))])
        elif mode == "members":
            self.score_all(concatenations(singles))
        elif mode == "single":
            self.score_all([LayerSpec((l,)) for l in singles])
        else:
            proxy = self.forward(singles, widths)
        layer, chosen = self.best(getattr(self, "kept", None))
        rows = [
            {"layer": str(spec), "params": c.params, "score": c.score, **c.estimate.to_dict()}
            for spec, cands in self.scored.items()
            for c in cands
        ]
        if self.progress:
            print(file=sys.stderr, flush=True)
        return LayerChoice(layer, chosen, rows, dict(self.scored), time.perf_counter() - self.t0,
                           self.fits, None if self.index is None else len(self.index),
                           proxy)  # fmt: skip

    def best(self, only: LayerSpec | None = None) -> tuple[LayerSpec, Scored]:
        """The best candidate (of layer spec `only`, when given: forward selection's)."""
        flat = [(spec, c) for spec, cands in self.scored.items() for c in cands
                if only is None or spec == only]  # fmt: skip
        winner = best([c for _, c in flat], self.config.tie)
        return next(spec for spec, c in flat if c is winner), winner

    def score_all(self, specs: list[LayerSpec]) -> None:
        new = [s for s in dict.fromkeys(specs) if s not in self.scored]
        tasks = [(self.clf, self.features, s, self.index, self.cv) for s in new]
        done = map(_evaluate, tasks) if self.mapper is None else self.mapper(_evaluate, tasks)
        for spec, (result, fits) in zip(new, done):
            self.scored[spec] = result
            self.fits += fits
            if self.progress:
                top = max(c.estimate.criterion for c in result)
                print(f"\rselect: {spec} criterion {top:.3f} | {len(self.scored)} candidates | "
                      f"{time.perf_counter() - self.t0:.1f}s", end="", file=sys.stderr,
                      flush=True)  # fmt: skip

    def forward(self, singles: list[str], widths: Mapping[str, int]) -> dict[str, float]:
        proxy: dict[str, float] = {}
        pool = list(singles)
        n = len(self.cv.y)
        K = len(self.cv.classes)
        cost = sum(widths.get(l, 1) for l in singles) * K * n
        if cost > SCREEN_COST and len(singles) > SCREEN_TOP:
            proxy = self._proxy(singles)
            pool = sorted(singles, key=lambda l: -proxy[l])[: 2 * SCREEN_TOP]
            self.score_all([LayerSpec((l,)) for l in pool[:SCREEN_TOP]])
        else:
            self.score_all([LayerSpec((l,)) for l in singles])
        layer = self.best()[0]
        while len(layer) < self.config.combine_layers:
            candidates = [layer.with_layer(l, singles) for l in pool if l not in layer.parts]
            if not candidates:
                break
            if proxy:
                candidates = [max(candidates, key=lambda c: self._proxy_spec(c, proxy))]
            self.score_all(candidates)
            top = max(candidates, key=self._criterion)
            if self._criterion(top) < self._criterion(layer) + FORWARD_GAIN:
                break
            layer = top
        self.kept = layer
        return proxy

    def _criterion(self, spec: LayerSpec) -> float:
        return max(c.estimate.criterion for c in self.scored[spec])

    def _proxy(self, singles: list[str]) -> dict[str, float]:
        train, test = self.cv.folds[0]
        out = {}
        for l in singles:
            X = LayerRows(self.features, self.index)[l]
            out[l] = lda_proxy(X[train], self.cv.y[train], X[test], self.cv.y[test],
                               list(self.cv.classes))  # fmt: skip
        return out

    def _proxy_spec(self, spec: LayerSpec, cache: dict[str, float]) -> float:
        key = str(spec)
        if key not in cache:
            train, test = self.cv.folds[0]
            X = LayerRows(self.features, self.index).concat(spec)
            cache[key] = lda_proxy(X[train], self.cv.y[train], X[test], self.cv.y[test],
                                   list(self.cv.classes))  # fmt: skip
        return cache[key]
