"""Model selection: sweep layers × hyper-parameters, choose on known-class validation data only.

`select_head` receives training and validation features of **known classes only**; it refuses
labels it was not told are known, so unknown-class samples cannot leak into selection. Test data
is never passed here. The criterion is balanced accuracy on validation (ties: smaller index in the
grid, i.e. stronger regularisation first for C), so that a large "real" class does not dominate.

Layer combination (`combine` > 1): starting from the best single layer, greedily concatenate the
layer that raises validation balanced accuracy most, while it rises by at least `min_gain` and at
most `combine` layers are joined ("stage3+stage4+stage5"). Only validation data decides.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .base import Head


class SelectionLeakError(ValueError):
    """Selection was given samples of classes that are not known (or an empty class)."""


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else 0.0


@dataclass
class SweepRow:
    layer: str
    params: dict
    val_balanced_accuracy: float
    val_accuracy: float
    seconds: float


@dataclass
class Selection:
    layer: str
    params: dict
    head: Head
    rows: list[SweepRow] = field(default_factory=list)
    seconds: float = 0.0

    def best_per_layer(self) -> dict[str, SweepRow]:
        best: dict[str, SweepRow] = {}
        for r in self.rows:
            if r.layer not in best or r.val_balanced_accuracy > best[r.layer].val_balanced_accuracy:
                best[r.layer] = r
        return best


def _grid(param_grid: Mapping[str, Sequence]) -> list[dict]:
    keys = list(param_grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(param_grid[k] for k in keys))] or [{}]


def select_head(
    make: Callable[..., Head],
    features: Callable[[str, str], np.ndarray],
    layers: Sequence[str],
    y_train: np.ndarray,
    y_val: np.ndarray,
    known_classes: Sequence[str],
    param_grid: Mapping[str, Sequence] | None = None,
    refit_on_train_val: bool = False,
    combine: int = 1,
    min_gain: float = 0.01,
) -> Selection:
    """Choose (layer, params) by validation balanced accuracy.

    `features(role, layer)` returns the (n, D) features of role "train" or "val".
    `make(**params)` builds an unfitted head. The returned head is fitted on train
    (or train + val when `refit_on_train_val`) with the chosen parameters.
    """
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
    grid = _grid(param_grid if param_grid is not None else make().param_grid)
    t0 = time.perf_counter()
    rows: list[SweepRow] = []
    best_of: dict[str, tuple[tuple[float, int], dict]] = {}  # layer spec -> (key, params)
    order = 0

    def sweep(layer: str) -> None:
        nonlocal order
        Xtr, Xva = features("train", layer), features("val", layer)
        for params in grid:
            t = time.perf_counter()
            head = make(**params).fit(Xtr, y_train)
            pred = head.predict(Xva)
            bacc = balanced_accuracy(y_val, pred)
            rows.append(SweepRow(layer, dict(params), bacc,
                                 float(np.mean(pred == np.asarray(y_val, dtype=object))),
                                 time.perf_counter() - t))
            key = (bacc, -order)
            if layer not in best_of or key > best_of[layer][0]:
                best_of[layer] = (key, dict(params))
            order += 1

    for layer in layers:
        sweep(layer)
    layer = max(best_of, key=lambda spec: best_of[spec][0])
    singles = list(dict.fromkeys(p for l in layers for p in l.split("+")))
    while len(layer.split("+")) < combine:
        parts = layer.split("+")
        candidates = ["+".join(sorted(parts + [extra], key=singles.index))
                      for extra in singles if extra not in parts]
        if not candidates:
            break
        for spec in candidates:
            if spec not in best_of:
                sweep(spec)
        spec = max(candidates, key=lambda sp: best_of[sp][0])
        if best_of[spec][0][0] < best_of[layer][0][0] + min_gain:
            break
        layer = spec
    params = best_of[layer][1]
    Xtr, ytr = features("train", layer), np.asarray(y_train, dtype=object)
    if refit_on_train_val:
        Xtr = np.vstack([Xtr, features("val", layer)])
        ytr = np.concatenate([ytr, np.asarray(y_val, dtype=object)])
    head = make(**params).fit(Xtr, ytr)
    return Selection(layer, params, head, rows, time.perf_counter() - t0)
