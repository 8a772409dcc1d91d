"""Selection at scale: layers are read one group at a time, never all at once in float64; screening
by a closed-form proxy keeps the choice of the full sweep."""

from __future__ import annotations

import tracemalloc
import weakref

import numpy as np
import pytest

from originprobe import Attributor
from originprobe.features import LayerSpec
from originprobe.heads import LinearHead, selection
from originprobe.heads.selection import lda_proxy, select_head

N_LAYERS, N, DIM, K = 16, 6000, 128, 6


def _synthetic(tmp_path, n=N, dim=DIM, seed=0):
    """float16 .npy files, one per layer, memory-mapped; class signal peaks at layer 9."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    rng.shuffle(y)
    codes = rng.standard_normal((K, 8))
    mm = {}
    for b in range(N_LAYERS):
        proj = rng.standard_normal((8, dim)) / np.sqrt(8)
        strength = 0.1 + 0.6 * np.exp(-(((b - 9) / 3.0) ** 2))
        X = rng.standard_normal((n, dim)) + strength * codes[y] @ proj
        np.save(tmp_path / f"layer{b:02d}.npy", X.astype(np.float16))
        mm[f"layer{b:02d}"] = np.load(tmp_path / f"layer{b:02d}.npy", mmap_mode="r")
    return mm, np.array([f"c{c}" for c in y], dtype=object)


class _Watch:
    """A feature source that records the most bytes of handed-out features alive at once."""

    def __init__(self, mm, split):
        self.mm, self.split, self.alive, self.peak = mm, split, 0, 0

    def _release(self, nbytes):
        self.alive -= nbytes

    def __call__(self, role, spec):
        rows = slice(0, self.split) if role == "train" else slice(self.split, None)
        X = np.hstack([np.asarray(self.mm[p][rows], np.float32) for p in spec.parts])
        self.alive += X.nbytes
        self.peak = max(self.peak, self.alive)
        weakref.finalize(X, self._release, X.nbytes)
        return X


@pytest.mark.parametrize("screen", [0, 3])
def test_selection_holds_one_layer_group_at_a_time(tmp_path, monkeypatch, screen):
    mm, y = _synthetic(tmp_path)
    split = int(0.8 * N)
    layer_f32 = N * DIM * 4  # one layer, all rows, float32
    all_f64 = N_LAYERS * split * DIM * 8  # every training layer in float64 at once
    monkeypatch.setattr(selection, "GROUP_ELEMS", 2 * split * DIM)  # groups of 2 layers
    watch = _Watch(mm, split)
    specs = [LayerSpec((l,)) for l in mm]
    tracemalloc.start()
    try:
        sel = select_head(
            LinearHead,
            watch,
            specs,
            y[:split],
            y[split:],
            sorted(set(y)),
            param_grid={"C": [0.01, 0.1, 1.0]},
            combine=2,
            screen=screen,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # features handed out and still referenced: at most one group of 2 layers (train + val)
    assert watch.peak <= 2 * layer_f32 + 1024, watch.peak / layer_f32
    # everything selection allocated at its peak: the group's float32 features, one float64
    # copy of the group (the solver's basis) and row-chunk temporaries; every layer in float64
    # would be 8 groups here
    group_f64 = 2 * split * DIM * 8
    assert peak < 2.5 * group_f64 and all_f64 == 8 * group_f64, peak / group_f64
    assert sel.layer.parts[0] in {"layer08", "layer09", "layer10"}


def test_fit_features_reads_memory_mapped_float16_layers_lazily(tmp_path, monkeypatch):
    from originprobe.heads import _logistic

    mm, y = _synthetic(tmp_path)
    # budgets of a big problem, scaled down: one layer per group, a small solver batch
    monkeypatch.setattr(selection, "GROUP_ELEMS", N * DIM)
    monkeypatch.setattr(_logistic, "_MAX_BATCH_ELEMS", 200_000)
    before = {k: type(v) for k, v in mm.items()}
    tracemalloc.start()
    try:
        att = Attributor(combine_layers=1).fit_features(mm, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    all_f32 = N_LAYERS * N * DIM * 4
    assert peak < all_f32 / 3, peak / all_f32  # never every layer converted at once
    assert {k: type(v) for k, v in mm.items()} == before
    assert str(att.layer_) in {"layer08", "layer09", "layer10"}
    assert att.head_.n_features_ == DIM


def test_screened_selection_matches_the_full_sweep(tmp_path):
    mm, y = _synthetic(tmp_path, n=1500, dim=64, seed=2)
    split = 1200
    feats = _Watch(mm, split)
    specs = [LayerSpec((l,)) for l in mm]
    grid = {"C": [float(c) for c in np.logspace(-4, 2, 7)]}
    full = select_head(
        LinearHead, feats, specs, y[:split], y[split:], sorted(set(y)), param_grid=grid, screen=0
    )
    screened = select_head(
        LinearHead, feats, specs, y[:split], y[split:], sorted(set(y)), param_grid=grid, screen=3
    )
    assert screened.fits < full.fits / 4
    assert abs(screened.val_balanced_accuracy - full.val_balanced_accuracy) <= 0.005
    assert set(screened.proxy) == set(specs)
    # the proxy ranks the informative layers first
    ranked = sorted(screened.proxy, key=lambda s: -screened.proxy[s])
    assert {s.parts[0] for s in ranked[:3]} <= {f"layer{b:02d}" for b in range(6, 13)}


def test_the_proxy_is_a_balanced_accuracy_of_shrinkage_lda():
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 300 + ["b"] * 60, dtype=object)
    X = rng.standard_normal((360, 20)) + (y == "b")[:, None] * 1.5
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import balanced_accuracy_score

    ours = lda_proxy(X[::2], y[::2], X[1::2], y[1::2], ["a", "b"])
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.01, priors=[0.5, 0.5]).fit(
        X[::2], y[::2]
    )
    ref = balanced_accuracy_score(y[1::2].astype(str), lda.predict(X[1::2]).astype(str))
    assert ours >= ref - 0.02 and ours > 0.85
