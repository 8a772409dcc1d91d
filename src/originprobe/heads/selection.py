"""Model selection: sweep layers × hyper-parameters, choose on known-class validation data only.

`select_head` receives training and validation features of **known classes only**; it refuses
labels it was not told are known, so unknown-class samples cannot leak into selection. Test data
is never passed here. The criterion is balanced accuracy on validation (ties: the earlier grid
entry, i.e. stronger regularisation first for C), so that a large "real" class does not dominate.

Layer specs are fitted in groups whose training features together stay under `GROUP_ELEMS`
values: each group is one `fit_grid` call (the linear head answers it with one batched solve), and
only that group's features are materialised; `features(role, spec)` is asked for them when the
group is fitted, so a caller that reads layers lazily (memory-mapped store files) never holds
more than one group. Layer combination (`combine` > 1): starting from the best single layer,
greedily concatenate the layer that raises validation balanced accuracy most, while it rises by
at least `min_gain` and at most `combine` layers are joined ("stage3+stage4+stage5"). The selected
head is the one fitted during the sweep (train only); nothing is refitted.

Screening, for sweeps too large to fit every (layer, parameter) pair (many wide layers, many rows
— CLIP ViT-L/14's 24 × 1024 on OSMA): every candidate is first ranked by a closed-form proxy, a
shrinkage LDA with balanced priors (one O(nD²) pass per layer, several shrinkages from one
eigendecomposition), scored by validation balanced accuracy like the real head. Only the
`screen` best single layers get the full parameter sweep; each combination round scores its
candidates (drawn from the best `2·screen` single layers) by the proxy and fully fits the best
one. The criterion of the final choice is unchanged: the head's own validation balanced accuracy.
`screen=None` screens when the sweep would cost more than `SCREEN_COST` (layers × parameters ×
classes × dims × rows); `screen=0` never does.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..features.layers import LayerSpec, base_layers
from .base import Head

FeatureFn = Callable[[str, LayerSpec], np.ndarray]
GROUP_ELEMS = 25_000_000  # training values (rows × dims) fitted together in one group
SCREEN_COST = 2e9  # layers × grid × classes × dims × rows above which selection screens
SCREEN_TOP = 3  # single layers fully swept after screening
SHRINKAGES = (1e-3, 1e-2, 1e-1, 1.0)  # LDA proxy: ridge on the within-class covariance, × mean ev
_CHUNK = 1024  # rows per pass of the proxy's accumulations


class SelectionLeakError(ConfigError):
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
    proxy: dict[LayerSpec, float] = field(default_factory=dict)  # screening scores, if any

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
    return [
        dict(zip(keys, vals)) for vals in itertools.product(*(param_grid[k] for k in keys))
    ] or [{}]


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
        print(
            f"\rselect {self.head}: {what} | {self.done}/{self.total} fits | "
            f"{el:.1f}s elapsed, ETA {eta:.1f}s",
            end="",
            file=sys.stderr,
            flush=True,
        )

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


def lda_proxy(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    classes: Sequence[str],
) -> float:
    """Validation balanced accuracy of the best of a few shrinkage-LDA classifiers (balanced
    priors) on standardised features: a closed-form stand-in for a linear head's sweep."""
    classes = list(classes)
    yi = np.searchsorted(classes, np.asarray(y_train, dtype=object).astype(str))
    n, D = X_train.shape
    K = len(classes)
    s1, s2 = np.zeros(D), np.zeros(D)
    sums = np.zeros((K, D))
    counts = np.bincount(yi, minlength=K).astype(np.float64)
    for s in range(0, n, _CHUNK):
        x = np.asarray(X_train[s : s + _CHUNK], dtype=np.float64)
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        np.add.at(sums, yi[s : s + _CHUNK], x)
    mean = s1 / n
    scale = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    scale[scale < 1e-8] = 1.0
    mu = (sums / np.maximum(counts, 1)[:, None] - mean) / scale  # class means, standardised
    Sw = np.zeros((D, D))
    for s in range(0, n, _CHUNK):
        z = (np.asarray(X_train[s : s + _CHUNK], dtype=np.float64) - mean) / scale
        z -= mu[yi[s : s + _CHUNK]]
        z32 = z.astype(np.float32)
        Sw += z32.T @ z32
    Sw /= max(n - K, 1)
    ev, Q = np.linalg.eigh(Sw)
    ev = np.maximum(ev, 0.0)
    Zv = ((np.asarray(X_val, dtype=np.float64) - mean) / scale) @ Q
    muQ = mu @ Q
    best = 0.0
    for shrink in SHRINKAGES:
        inv = 1.0 / (ev + shrink * max(float(ev.mean()), 1e-12))
        W = muQ * inv  # (K, D) discriminants
        b = -0.5 * np.einsum("kd,kd->k", W, muQ)  # balanced (equal) priors
        pred = np.asarray(classes, dtype=object)[np.argmax(Zv @ W.T + b, axis=1)]
        best = max(best, balanced_accuracy(y_val, pred))
    return best


def fit_group(
    prototype: Head,
    grid: list[dict],
    features: FeatureFn,
    group: list[LayerSpec],
    y_train: np.ndarray,
    y_val: np.ndarray,
) -> list[tuple[LayerSpec, list[tuple[dict, Head, float, float]]]]:
    """Fit one layer group over the grid and score it on validation: per spec, one
    (params, fitted head, balanced accuracy, accuracy) per grid entry. Reads only this group's
    features, so it can run wherever they can be read."""
    fitted = prototype.fit_grid([features("train", s) for s in group], y_train, grid)
    out = []
    for spec, heads in zip(group, fitted):
        Xva = features("val", spec)
        results = []
        for params, head in zip(grid, heads):
            pred = head.predict(Xva)
            results.append((dict(params), head, balanced_accuracy(y_val, pred),
                            float(np.mean(pred == y_val))))  # fmt: skip
        out.append((spec, results))
    return out


def _groups(
    specs: Sequence[LayerSpec], width: Callable[[LayerSpec], int], n_rows: int, budget: int
) -> list[list[LayerSpec]]:
    """Consecutive specs whose training values together stay under `budget` (≥ 1 per group)."""
    out: list[list[LayerSpec]] = []
    size = 0
    for spec in specs:
        w = width(spec) * n_rows
        if out and size + w <= budget:
            out[-1].append(spec)
            size += w
        else:
            out.append([spec])
            size = w
    return out


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
    screen: int | None = None,
    widths: Mapping[str, int] | None = None,
    map_groups: Callable[[Callable, list], Iterable] | None = None,
) -> Selection:
    """Choose (layer, params) by validation balanced accuracy.

    `features(role, layer)` returns the (n, D) features of role "train" or "val".
    `make(**params)` builds an unfitted head. `widths` (layer → dims) lets groups be planned
    without reading features; `screen`: see the module doc. `map_groups(fit_group, tasks)`
    runs the groups elsewhere (Ray tasks), in order; `features` must then be picklable and
    read its layers where the task runs (a feature store on a shared filesystem).
    """
    check_roles(y_train, y_val, known_classes)
    y_val = np.asarray(y_val, dtype=object)
    classes = sorted(set(np.asarray(y_train, dtype=object).astype(str).tolist()))
    prototype = make()
    grid = _grid(param_grid if param_grid is not None else prototype.param_grid)
    singles = base_layers(layers)
    dims: dict[str, int] = dict(widths or {})

    def width(spec: LayerSpec) -> int:
        for part in spec.parts:
            if part not in dims:
                dims[part] = int(np.shape(features("val", LayerSpec((part,))))[1])
        return sum(dims[p] for p in spec.parts)

    n = len(y_train)
    if screen is None:
        cost = len(layers) * len(grid) * len(classes) * float(np.mean([width(s) for s in layers]))
        screen = SCREEN_TOP if cost * n > SCREEN_COST and len(layers) > SCREEN_TOP else 0
    screening = screen > 0
    n_combos = sum(max(len(singles) - k, 0) for k in range(1, max(combine, 1)))
    total = (
        (min(screen, len(layers)) + (combine - 1)) if screening else len(layers) + n_combos
    ) * len(grid)
    bar = _Progress(progress, total, prototype.name)
    t0 = time.perf_counter()
    rows: list[SweepRow] = []
    scores: dict[LayerSpec, tuple[tuple[float, int], dict, Head]] = {}
    proxy: dict[LayerSpec, float] = {}

    def sweep(specs: list[LayerSpec]) -> None:
        groups = _groups(specs, width, n, GROUP_ELEMS)
        tasks = [(prototype, grid, features, group, y_train, y_val) for group in groups]
        done = map(lambda t: fit_group(*t), tasks) if map_groups is None else map_groups(
            fit_group, tasks)  # fmt: skip
        for group, fitted in zip(groups, done):
            for spec, results in fitted:
                for order, (params, head, bacc, acc) in enumerate(results):
                    rows.append(SweepRow(spec, params, bacc, acc))
                    key = (bacc, -order)
                    if spec not in scores or key > scores[spec][0]:
                        scores[spec] = (key, dict(params), head)
            bar.update(
                len(group) * len(grid),
                ", ".join(map(str, group[:3])) + (" ..." if len(group) > 3 else ""),
            )

    def rank_by_proxy(specs: list[LayerSpec]) -> list[LayerSpec]:
        for spec in specs:
            if spec not in proxy:
                proxy[spec] = lda_proxy(
                    features("train", spec), y_train, features("val", spec), y_val, classes
                )
        return sorted(specs, key=lambda sp: -proxy[sp])

    try:
        if screening:
            ranked = rank_by_proxy(list(layers))
            sweep(ranked[:screen])
            pool = [s for s in ranked[: 2 * screen] if len(s) == 1]
        else:
            sweep(list(layers))
            pool = [LayerSpec((l,)) for l in singles]
        layer = max(scores, key=lambda spec: scores[spec][0])
        while len(layer) < combine:
            candidates = [
                layer.with_layer(extra, singles)
                for sp in pool
                for extra in sp.parts
                if extra not in layer.parts
            ]
            candidates = list(dict.fromkeys(candidates))
            if not candidates:
                break
            if screening:
                candidates = rank_by_proxy(candidates)[:1]
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
    return Selection(
        layer,
        params,
        head,
        rows,
        {s: v[2] for s, v in scores.items()},
        time.perf_counter() - t0,
        len(rows),
        proxy,
    )
