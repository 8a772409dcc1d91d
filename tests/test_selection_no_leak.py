"""Unknown-class samples never train or select a head; test samples never select one."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DEMO_KNOWN, DEMO_UNKNOWN
from originprobe.data import Sample, SplitLeakError, hash_samples, load_dataset, make_split
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


def test_no_test_or_unknown_image_reaches_selection_or_the_threshold(
    small_realgen, shared_cache, monkeypatch
):
    """Through the whole preparation and fit of `evaluate`, every head fitted, every
    cross-validation and every score fitted sees known-class training rows only: no row of the
    test split (known or unknown class) is ever among them."""
    from originprobe.heads.base import Head
    from originprobe.heads.linear import LinearHead
    from originprobe.pipeline.config import RunConfig
    from originprobe.pipeline.fitting import fit_prepared
    from originprobe.pipeline.prepare import prepare

    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def spy(original):
        def wrapped(self, X, y, *args, **kw):
            seen.append((np.asarray(X, np.float32), np.asarray(y, dtype=object)))
            return original(self, X, y, *args, **kw)

        return wrapped

    for cls, name in ((Head, "cross_decisions"), (LinearHead, "cross_decisions"),
                      (LinearHead, "fit"), (Head, "fit_grid")):  # fmt: skip
        monkeypatch.setattr(cls, name, spy(getattr(cls, name)))
    cfg = RunConfig(
        data=str(small_realgen), known=DEMO_KNOWN, backbone="efficientnet-lite0",
        layers="stage4,stage5", runtime={"cache": str(shared_cache)}, head="linear",
    )  # fmt: skip
    p = prepare(cfg)
    att = fit_prepared(p)
    assert seen, "no fit was observed"
    test = p.table("test", att.layer_)
    test_rows = {r.tobytes() for r in test.astype(np.float32)}
    for X, y in seen:
        assert set(y.tolist()) <= set(DEMO_KNOWN)
        if X.shape[1] == test.shape[1]:
            assert not any(r.tobytes() in test_rows for r in X)
    # the threshold's scores are out-of-fold scores of the training rows only
    assert len(att.classifier_.oof_scores_) == len(p.table.labels("dev"))
    assert set(p.table.labels("dev")) == set(DEMO_KNOWN)


def test_fitting_refuses_unknown_labels_among_the_training_rows(small_realgen):
    from originprobe.heads.selection import SelectionLeakError
    from originprobe.model import FeatureExtractor, prepare_split

    samples, _ = hash_samples(load_dataset(small_realgen).samples)
    split = make_split(samples, DEMO_KNOWN, seed=0)
    split.train.append(next(s for s in split.test if s.label in DEMO_UNKNOWN))
    with pytest.raises(SelectionLeakError, match="not known"):
        prepare_split(split, FeatureExtractor("efficientnet-lite0"), 0)


def test_threshold_keeps_target_fraction_of_known_validation():
    rng = np.random.default_rng(1)
    s = rng.normal(size=1000)
    t = calibrate_threshold(s, 0.95)
    assert np.mean(s >= t) == pytest.approx(0.95, abs=1e-3)
    assert calibrate_threshold(s, 1.0) == s.min()
