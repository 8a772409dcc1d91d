"""Selection at scale: candidates are read one at a time, never every layer at once; screening by a
closed-form proxy keeps the quality of the full search; many rows are compared on a subsample
while the model still uses every row."""

from __future__ import annotations

import tracemalloc

import numpy as np

from originprobe import Attributor
from originprobe.heads.selection import lda_proxy

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


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_selection_memory_follows_one_candidate_not_the_number_of_layers(tmp_path, monkeypatch):
    """Candidates are read one at a time from memory-mapped float16 files (a layer search over
    the feature store reads the same way): comparing 16 layers costs the memory of comparing 4,
    and far less than every layer in float32 at once."""
    from originprobe.heads import _logistic

    mm, y = _synthetic(tmp_path)
    monkeypatch.setattr(_logistic, "_MAX_BATCH_ELEMS", 200_000)  # a small solver batch
    before = {k: type(v) for k, v in mm.items()}
    four = {k: mm[k] for k in list(mm)[6:10]}
    fits = {}

    def fit(layers):
        fits[len(layers)] = Attributor(selection={"layer_search": "single"}).fit_features(layers, y)

    peak4, peak16 = _peak(lambda: fit(four)), _peak(lambda: fit(mm))
    all_f32 = N_LAYERS * N * DIM * 4
    assert peak16 < 1.3 * peak4 + 2_000_000, (peak4, peak16)
    assert peak16 < 0.65 * all_f32, peak16 / all_f32
    assert {k: type(v) for k, v in mm.items()} == before  # the files stay memory-mapped
    assert str(fits[16].layer_) in {"layer08", "layer09", "layer10"}
    assert fits[16].head_.n_features_ == DIM


def test_screened_forward_selection_matches_the_full_one(tmp_path, monkeypatch):
    """Above the screening cost, single layers are ranked by the shrinkage-LDA proxy and only the
    best are cross-validated: far fewer fits, and the same quality of choice."""
    from originprobe.model import selection

    mm, y = _synthetic(tmp_path, n=1500, dim=64, seed=2)
    cfg = {"layer_search": "forward", "combine_layers": 2}
    full = Attributor(selection=cfg).fit_features(mm, y)
    monkeypatch.setattr(selection, "SCREEN_COST", 1.0)  # screen whatever the size
    screened = Attributor(selection=cfg).fit_features(mm, y)
    crit = lambda a: a.selection_summary_["estimate"]["criterion"]  # noqa: E731
    assert screened.selection_summary_["fits"] < full.selection_summary_["fits"] / 2
    assert abs(crit(screened) - crit(full)) <= 0.01, (crit(screened), crit(full))
    proxy = screened.selection_.proxy
    assert set(mm) <= set(proxy)
    # the proxy ranks the informative layers first
    ranked = sorted(mm, key=lambda l: -proxy[l])
    assert set(ranked[:3]) <= {f"layer{b:02d}" for b in range(6, 13)}


def test_many_rows_are_compared_on_a_subsample_and_the_model_uses_every_row(tmp_path):
    mm, y = _synthetic(tmp_path, n=3000, dim=32, seed=3)
    att = Attributor(selection={"layer_search": "single", "max_rows": 1000}).fit_features(mm, y)
    assert att.selection_summary_["compared_on_rows"] <= 1010
    assert len(att.classifier_.oof_scores_) == 3000  # the threshold: every row, out of fold
    assert len(att.reference_[1]) == 3000  # the refit: every row


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
