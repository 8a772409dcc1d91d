"""Model selection: sweep layers × hyper-parameters, choose on known-class validation data only.

`select_head` receives training and validation features of **known classes only**; it refuses
labels it was not told are known, so unknown-class samples cannot leak into selection. Test data
is never passed here. The criterion is balanced accuracy on validation (ties: the earlier grid
entry, i.e. stronger regularisation first for C), so that a large "real" class does not dominate.

Every (layer, parameters) pair of a round is fitted in one `fit_grid` call, which the linear head
answers with one batched solve. Layer combination (`combine` > 1): starting from the best single
layer, greedily concatenate the layer that raises validation balanced accuracy most, while it
rises by at least `min_gain` and at most `combine` layers are joined ("stage3+stage4+stage5").
The selected head is the one fitted during the sweep (train only); nothing is refitted.
"""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from ..features.layers import LayerSpec, base_layers
from .base import Head

FeatureFn = Callable[[str, LayerSpec], np.ndarray]


class SelectionLeakError(ValueError):
    """Selection was given samples of classes that are not known (or an empty class)."""


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else 0.0


@dataclass
class SweepRow:
    layer: LayerSpec
    params: dict
    val_balanced_accuracy: float
    val_accuracy: float


@dataclass
class Selection:
    layer: LayerSpec
    params: dict
    head: Head
    rows: list[SweepRow] = field(default_factory=list)
    best_heads: dict[LayerSpec, Head] = field(default_factory=dict)  # best params per layer spec
    seconds: float = 0.0
    fits: int = 0

    def best_per_layer(self) -> dict[LayerSpec, SweepRow]:
        best: dict[LayerSpec, SweepRow] = {}
        for r in self.rows:
            if r.layer not in best or r.val_balanced_accuracy > best[r.layer].val_balanced_accuracy:
                best[r.layer] = r
        return best

    @property
    def val_balanced_accuracy(self) -> float:
        return self.best_per_layer()[self.layer].val_balanced_accuracy


def _grid(param_grid: Mapping[str, Sequence]) -> list[dict]:
    keys = list(param_grid)
    return [dict(zip(keys, vals)) for vals in
            itertools.product(*(param_grid[k] for k in keys))] or [{}]


class _Progress:
    """Fits done / total with an ETA, on stderr; silent unless enabled."""

    def __init__(self, enabled: bool, total: int, head: str):
        self.enabled, self.total, self.done, self.head = enabled, total, 0, head
        self.t0 = time.perf_counter()

    def update(self, n: int, what: str) -> None:
        self.done += n
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        eta = el / self.done * max(self.total - self.done, 0) if self.done else 0.0
        print(f"\rselect {self.head}: {what} | {self.done}/{self.total} fits | "
              f"{el:.1f}s elapsed, ETA {eta:.1f}s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


def check_roles(y_train: np.ndarray, y_val: np.ndarray, known_classes: Sequence[str]) -> None:
    known = set(known_classes)
    for role, y in (("train", y_train), ("val", y_val)):
        extra = set(np.asarray(y, dtype=object).tolist()) - known
        if extra:
            raise SelectionLeakError(f"{role} labels {sorted(extra)} are not known classes")
    missing = known - set(np.asarray(y_train, dtype=object).tolist())
    if missing:
        raise SelectionLeakError(f"known classes {sorted(missing)} have no training samples")
    if len(y_val) == 0:
        raise SelectionLeakError("the validation split is empty")


def select_head(
    make: Callable[..., Head],
    features: FeatureFn,
    layers: Sequence[LayerSpec],
    y_train: np.ndarray,
    y_val: np.ndarray,
    known_classes: Sequence[str],
    param_grid: Mapping[str, Sequence] | None = None,
    combine: int = 1,
    min_gain: float = 0.01,
    progress: bool = False,
) -> Selection:
    """Choose (layer, params) by validation balanced accuracy.

    `features(role, layer)` returns the (n, D) features of role "train" or "val".
    `make(**params)` builds an unfitted head.
    """
    check_roles(y_train, y_val, known_classes)
    y_val = np.asarray(y_val, dtype=object)
    prototype = make()
    grid = _grid(param_grid if param_grid is not None else prototype.param_grid)
    singles = base_layers(layers)
    n_combos = sum(max(len(singles) - k, 0) for k in range(1, max(combine, 1)))
    bar = _Progress(progress, (len(layers) + n_combos) * len(grid), prototype.name)
    t0 = time.perf_counter()
    rows: list[SweepRow] = []
    scores: dict[LayerSpec, tuple[tuple[float, int], dict, Head]] = {}

    def sweep(specs: list[LayerSpec]) -> None:
        fitted = prototype.fit_grid([features("train", s) for s in specs], y_train, grid)
        for spec, heads in zip(specs, fitted):
            Xva = features("val", spec)
            for order, (params, head) in enumerate(zip(grid, heads)):
                pred = head.predict(Xva)
                bacc = balanced_accuracy(y_val, pred)
                rows.append(SweepRow(spec, dict(params), bacc, float(np.mean(pred == y_val))))
                key = (bacc, -order)
                if spec not in scores or key > scores[spec][0]:
                    scores[spec] = (key, dict(params), head)
        bar.update(len(specs) * len(grid), ", ".join(map(str, specs[:3]))
                   + (" ..." if len(specs) > 3 else ""))

    try:
        sweep(list(layers))
        layer = max(layers, key=lambda spec: scores[spec][0])
        while len(layer) < combine:
            candidates = [layer.with_layer(extra, singles) for extra in singles
                          if extra not in layer.parts]
            if not candidates:
                break
            new = [c for c in candidates if c not in scores]
            if new:
                sweep(new)
            best = max(candidates, key=lambda sp: scores[sp][0])
            if scores[best][0][0] < scores[layer][0][0] + min_gain:
                break
            layer = best
    finally:
        bar.close()
    _, params, head = scores[layer]
    return Selection(layer, params, head, rows, {s: v[2] for s, v in scores.items()},
                     time.perf_counter() - t0, len(rows))
