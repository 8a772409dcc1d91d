"""Unknown-class samples never train or select a head; test samples never select one."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DEMO_KNOWN, DEMO_UNKNOWN
from originprobe.data import Sample, SplitLeakError, hash_samples, load_dataset, make_split
from originprobe.features import LayerSpec
from originprobe.heads import LinearHead
from originprobe.heads.selection import SelectionLeakError, balanced_accuracy, select_head
from originprobe.openset import calibrate_threshold


@pytest.fixture(scope="module")
def realgen_samples(realgen):
    samples, problems = hash_samples(load_dataset(realgen).samples)
    assert not problems
    return samples


def test_split_puts_unknown_classes_in_test_only(realgen_samples):
    split = make_split(realgen_samples, DEMO_KNOWN, seed=1)
    assert set(split.unknown_classes) == set(DEMO_UNKNOWN)
    for role in (split.train, split.val):
        assert {s.label for s in role} == set(DEMO_KNOWN)
    test_labels = {s.label for s in split.test}
    assert set(DEMO_UNKNOWN) <= test_labels
    hashes = [{s.sha256 for s in r} for r in (split.train, split.val, split.test)]
    assert (
        not (hashes[0] & hashes[1]) and not (hashes[0] & hashes[2]) and not (hashes[1] & hashes[2])
    )
    # stratified: each known class keeps roughly its share in validation
    for c in DEMO_KNOWN:
        n = sum(s.label == c for s in realgen_samples)
        assert abs(sum(s.label == c for s in split.val) - 0.2 * n) <= 1


def test_split_is_seeded(realgen_samples):
    a = make_split(realgen_samples, DEMO_KNOWN, seed=3)
    b = make_split(realgen_samples, DEMO_KNOWN, seed=3)
    c = make_split(realgen_samples, DEMO_KNOWN, seed=4)
    assert [s.sha256 for s in a.val] == [s.sha256 for s in b.val]
    assert [s.sha256 for s in a.val] != [s.sha256 for s in c.val]


def test_with_separate_test_data_an_image_is_never_in_both(realgen_samples):
    split = make_split(realgen_samples, DEMO_KNOWN, test_samples=realgen_samples, seed=0)
    used = {s.sha256 for s in split.train + split.val}
    assert used.isdisjoint({s.sha256 for s in split.test})


def test_split_check_refuses_leaks(realgen_samples):
    split = make_split(realgen_samples, DEMO_KNOWN, seed=0)
    unknown_sample = next(s for s in split.test if s.label in DEMO_UNKNOWN)
    split.train.append(unknown_sample)
    with pytest.raises(SplitLeakError, match="non-known"):
        split.check()
    split = make_split(realgen_samples, DEMO_KNOWN, seed=0)
    split.val.append(split.test[0])
    with pytest.raises(SplitLeakError, match="both"):
        split.check()
    dup = Sample(path=split.train[0].path, label=split.train[0].label, sha256=split.train[0].sha256)
    split = make_split(realgen_samples, DEMO_KNOWN, seed=0)
    split.test.append(dup)
    with pytest.raises(SplitLeakError):
        split.check()


def _blobs(rng, labels, n=30, d=8):
    X = np.vstack([rng.normal(i * 3.0, 1.0, (n, d)) for i, _ in enumerate(labels)])
    return X, np.repeat(np.array(labels, dtype=object), n)


def test_selection_refuses_unknown_labels_and_uses_validation_only():
    rng = np.random.default_rng(0)
    known = ["real", "a", "b"]
    Xtr, ytr = _blobs(rng, known)
    Xva, yva = _blobs(rng, known)
    L = LayerSpec.parse("L")
    feats = {("train", L): Xtr, ("val", L): Xva}
    with pytest.raises(SelectionLeakError, match="not known"):
        select_head(
            LinearHead,
            lambda r, l: feats[(r, l)],
            [L],
            ytr,
            np.r_[yva, np.array(["unknown-gen"], object)],
            known,
        )
    with pytest.raises(SelectionLeakError, match="not known"):
        select_head(
            LinearHead,
            lambda r, l: feats[(r, l)],
            [L],
            np.r_[ytr[:-1], np.array(["unknown-gen"], object)],
            yva,
            known,
        )
    roles = []

    def spy(role, layer):
        roles.append(role)
        return feats[(role, layer)]

    sel = select_head(LinearHead, spy, [L], ytr, yva, known, {"C": [0.01, 1.0]})
    assert set(roles) == {"train", "val"}
    assert balanced_accuracy(yva, sel.head.predict(Xva)) == max(
        r.val_balanced_accuracy for r in sel.rows
    )


def test_threshold_keeps_target_fraction_of_known_validation():
    rng = np.random.default_rng(1)
    s = rng.normal(size=1000)
    t = calibrate_threshold(s, 0.95)
    assert np.mean(s >= t) == pytest.approx(0.95, abs=1e-3)
    assert calibrate_threshold(s, 1.0) == s.min()


def test_layers_are_combined_only_while_validation_improves():
    """Layer "a" tells classes {0,1} from {2,3}, layer "b" tells 0 from 1 and 2 from 3, layer
    "noise" tells nothing: validation alone must pick "a+b" and leave "noise" out."""
    rng = np.random.default_rng(0)
    n = 1200
    y = rng.integers(0, 4, n)
    a = np.c_[(y >= 2) * 3.0 + rng.normal(size=n), rng.normal(size=n)]
    b = np.c_[(y % 2) * 3.0 + rng.normal(size=n), rng.normal(size=n)]
    layers = {"a": a, "b": b, "noise": rng.normal(size=(n, 2))}
    labels = np.array([f"c{i}" for i in y], dtype=object)
    tr, va = np.arange(n) < 800, np.arange(n) >= 800

    def features(role, spec):
        X = np.hstack([layers[p] for p in spec.parts])
        return X[tr] if role == "train" else X[va]

    known = sorted(set(labels))
    grid = {"C": [1.0]}
    specs = [LayerSpec.parse(l) for l in ("noise", "a", "b")]
    single = select_head(
        LinearHead, features, specs, labels[tr], labels[va], known, param_grid=grid, combine=1
    )
    assert str(single.layer) in ("a", "b")
    combined = select_head(
        LinearHead, features, specs, labels[tr], labels[va], known, param_grid=grid, combine=3
    )
    assert str(combined.layer) == "a+b"  # canonical order of the given layers, noise not added
    best = combined.best_per_layer()
    assert (
        best[LayerSpec.parse("a+b")].val_balanced_accuracy
        > 0.85
        > best[single.layer].val_balanced_accuracy
    )
    assert "noise+a+b" in {str(r.layer) for r in combined.rows}  # tried, and rejected
    assert combined.head.coef_.shape[1] == 4
