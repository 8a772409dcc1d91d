"""Selection by cross-validation on known data: stratified, seeded folds; generators withheld in
turn (never "real") to estimate open-set figures; the threshold from out-of-fold scores only; the
refit on every training row; and a case where one validation split chooses wrong and
cross-validation chooses right."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from originprobe.features import LayerSpec
from originprobe.heads import LinearHead
from originprobe.heads.base import Head
from originprobe.model import Attributor, OpenSetClassifier, SelectionConfig
from originprobe.model.crossval import (
    CrossValidation,
    folds,
    withheld_generators,
    withheld_splits,
)
from originprobe.model.selection import LayerSearch, concatenations
from originprobe.openset import calibrate_threshold


def blobs(seed: int, sizes: dict[str, int], d: int = 12, spread: float = 3.0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i, (c, n) in enumerate(sizes.items()):
        mu = np.zeros(d)
        mu[i % d] = spread
        X.append(rng.normal(mu, 1.0, (n, d)))
        y += [c] * n
    return np.vstack(X).astype(np.float32), np.array(y, dtype=object)


SIZES = {"real": 90, "gen-a": 40, "gen-b": 30, "gen-c": 12}


def test_folds_are_stratified_and_seeded():
    _, y = blobs(0, SIZES)
    a, b, c = folds(y, 5, 0), folds(y, 5, 0), folds(y, 5, 1)
    assert all(np.array_equal(x[1], z[1]) for x, z in zip(a, b))
    assert any(not np.array_equal(x[1], z[1]) for x, z in zip(a, c))
    tests = np.concatenate([t for _, t in a])
    assert np.array_equal(np.sort(tests), np.arange(len(y)))  # each row tested exactly once
    for train, test in a:
        assert not set(train) & set(test)
        for cls, n in SIZES.items():  # each class spread evenly over the folds
            assert abs(np.sum(y[test] == cls) - n / 5) <= 1


def test_withheld_generators_never_include_real_and_leave_training_rows_out():
    _, y = blobs(0, SIZES)
    gens = withheld_generators(y, ("real",))
    assert gens == ["gen-a", "gen-b", "gen-c"]
    splits = withheld_splits(y, folds(y, 5, 0), gens)
    assert {g for g, _ in splits} == set(gens) and len(splits) == 15
    for g, (train, test) in splits:
        assert g not in set(y[train]) and "real" in set(y[train])
        assert g in set(y[test])
    assert withheld_generators(y[y != "gen-b"], ("real",)) == ["gen-a", "gen-c"]  # three classes
    two = y[np.isin(y, ["real", "gen-a"])]
    assert withheld_generators(two, ("real",)) == []  # one class left to train: no estimate


def test_threshold_comes_from_out_of_fold_scores_only():
    """Every row's score that sets the threshold comes from a head fitted without that row: the
    out-of-fold scores equal those of heads fitted fold by fold, and the threshold keeps
    target_tpr of them."""
    X, y = blobs(1, SIZES)
    clf = OpenSetClassifier(open_set_score="maxlogit", head_params={"C": 0.1}, target_tpr=0.9).fit(
        X, y
    )
    cv = CrossValidation(y, SelectionConfig(), 0, 0.9)
    chosen = clf.cv_results_[0]
    Z = (X - X.mean(0)) / X.std(0)  # the folds share the standardisation of every row
    expected = np.empty(len(y))
    for train, test in cv.folds:
        # each fold's C scaled to the refit's penalty per row (see LinearHead.cross_decisions)
        C = 0.1 * len(y) / len(train)
        head = LinearHead(C=C, standardize=False).fit(Z[train], y[train])
        expected[test] = head.decision_function(Z[test]).max(1)
    assert np.allclose(chosen.oof_scores, expected, atol=5e-3)  # solver tolerance
    assert clf.threshold_ == calibrate_threshold(chosen.oof_scores, 0.9)
    # the in-sample scores of the refitted head are higher: a threshold set on them would
    # reject far more known images than target_tpr says
    in_sample = clf.head_.decision_function(X).max(1)
    assert np.mean(in_sample >= clf.threshold_) > 0.9


def test_the_refit_uses_every_training_row():
    X, y = blobs(2, SIZES)
    clf = OpenSetClassifier(open_set_score="msp").fit(X, y)
    alone = LinearHead(C=clf.params_["C"]).fit(X, y)
    assert np.allclose(clf.head_.decision_function(X), alone.decision_function(X), atol=1e-3)
    assert len(clf.reference_[1]) == len(y)


def test_the_same_seed_gives_the_same_choice_and_scikit_learn_tools_work():
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = blobs(3, SIZES)
    a = OpenSetClassifier(seed=4).fit(X, y)
    b = clone(a).fit(X, y)
    assert (a.params_, a.score_name_, a.threshold_) == (b.params_, b.score_name_, b.threshold_)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", OpenSetClassifier(open_set_score="msp"))])
    grid = GridSearchCV(pipe, {"clf__head_params": [{"C": 0.01}, {"C": 1.0}]}, cv=3).fit(X, y)
    assert grid.best_estimator_.predict(X[:5]).shape == (5,)
    labels = a.predict(X)
    assert set(labels) <= set(SIZES) | {"unknown"}
    # on classes that overlap, new images of the known classes are kept at about target_tpr
    Xo, yo = blobs(9, SIZES, spread=1.5)
    fresh, _ = blobs(30, SIZES, spread=1.5)
    kept = np.mean(OpenSetClassifier().fit(Xo, yo).predict(fresh) != "unknown")
    assert kept == pytest.approx(0.85, abs=0.08)


def test_the_estimate_withholds_each_generator_from_its_own_models():
    """The per-generator estimate of a withheld generator is what heads trained without it
    measure: recomputed here from heads fitted fold by fold on the other classes."""
    X, y = blobs(5, SIZES, spread=2.0)
    clf = OpenSetClassifier(open_set_score="maxlogit", head_params={"C": 1.0}).fit(X, y)
    est = clf.estimate_
    assert set(est.withheld) == {"gen-a", "gen-b", "gen-c"}
    cv = CrossValidation(y, SelectionConfig(), 0, clf.target_tpr)
    Z = (X - X.mean(0)) / X.std(0)
    scores = np.empty(len(y))
    for g, (train, test) in cv.logo:
        if g != "gen-b":
            continue
        head = LinearHead(C=len(y) / len(train), standardize=False).fit(Z[train], y[train])
        scores[test] = head.decision_function(Z[test]).max(1)
    auroc = roc_auc_score(y != "gen-b", scores)
    assert est.withheld["gen-b"]["auroc"] == pytest.approx(auroc, abs=0.01)
    assert est.auroc == pytest.approx(np.mean([v["auroc"] for v in est.withheld.values()]))


def _two_layers(seed: int, n: int = 150):
    """Layer "good" carries the class signal at strength 1.0, layer "lucky" at 0.8: "good" is
    the better layer in expectation, but on small data either can look better on one split."""
    rng = np.random.default_rng(seed)
    y = np.array(["real", "gen-a", "gen-b"] * (n // 3), dtype=object)
    code = np.searchsorted(["gen-a", "gen-b", "real"], y)
    good = (np.eye(3)[code] * 1.0 + rng.normal(size=(n, 3))).astype(np.float32)
    lucky = (np.eye(3)[code] * 0.8 + rng.normal(size=(n, 3))).astype(np.float32)
    return y, {"good": good, "lucky": lucky}


def _single_split_choice(y, feats) -> str:
    """The old rule: fit on a stratified 75%, choose by balanced accuracy on the other 25%."""
    from originprobe.data.splits import stratified_indices
    from originprobe.heads.selection import balanced_accuracy

    tr, va = stratified_indices(y, (0.75, 0.25), 0)
    acc = {}
    for name, F in feats.items():
        acc[name] = balanced_accuracy(y[va], LinearHead(C=1.0).fit(F[tr], y[tr]).predict(F[va]))
    return max(acc, key=acc.get)


def _cv_choice(y, feats) -> str:
    cfg = SelectionConfig(layer_search="single")
    search = LayerSearch(OpenSetClassifier(head_params={"C": 1.0}), feats, y, cfg)
    return str(search.run([LayerSpec((k,)) for k in feats], {k: 3 for k in feats}).layer)


def test_cross_validation_chooses_right_where_one_validation_split_chooses_wrong():
    y, feats = _two_layers(32)
    assert _single_split_choice(y, feats) == "lucky"  # one 25% split is fooled ...
    assert _cv_choice(y, feats) == "good"  # ... five folds over every row are not
    # and over 40 draws of such data, cross-validation finds the better layer far more often
    right = [(_single_split_choice(*_two_layers(s)) == "good", _cv_choice(*_two_layers(s)) ==
              "good") for s in range(40)]  # fmt: skip
    single, cv = (sum(r[i] for r in right) for i in (0, 1))
    assert cv >= 35 and cv >= single + 6, (single, cv)


def test_fusion_members_are_candidates_simplest_first():
    layers = ["a/s1", "a/s2", "b/s1"]
    got = [str(s) for s in concatenations(layers)]
    assert got == ["a/s1+a/s2", "b/s1", "a/s1+a/s2+b/s1"]
    assert [str(s) for s in concatenations(["s1", "s2"])] == ["s1+s2"]


def test_attributor_fit_features_chooses_layers_and_reports_its_estimate():
    X, y = blobs(7, SIZES)
    rng = np.random.default_rng(0)
    layers = {"good": X, "noise": rng.normal(size=(len(X), 6)).astype(np.float32)}
    att = Attributor(selection={"layer_search": "single"}).fit_features(layers, y)
    assert str(att.layer_) == "good"
    est = att.selection_summary_["estimate"]
    assert 0.5 < est["balanced_accuracy"] <= 1 and 0 <= est["rejected"] <= 1
    both = Attributor(selection={"layer_search": "all"}).fit_features(layers, y)
    assert str(both.layer_) == "good+noise"


def test_a_generic_head_cross_validates_too():
    X, y = blobs(8, SIZES)
    clf = OpenSetClassifier(head="ncm").fit(X, y)
    assert clf.score_name_ in ("msp", "reference") and clf.estimate_.auroc is not None
    assert {r.score for r in clf.cv_results_} == {"msp", "reference"}
    assert isinstance(clf.head_, Head)


def test_forward_selection_combines_layers_only_while_the_criterion_rises():
    """Layer "a" tells {real, gen-a} from {gen-b, gen-c}, layer "b" real from gen-a and gen-b
    from gen-c, layer "noise" tells nothing: forward selection must reach "a+b" and leave
    "noise" out."""
    rng = np.random.default_rng(0)
    n = 600
    y = np.array(["real", "gen-a", "gen-b", "gen-c"], dtype=object)[rng.integers(0, 4, n)]
    code = np.searchsorted(["gen-a", "gen-b", "gen-c", "real"], y)
    a = np.c_[np.isin(code, [1, 2]) * 3.0 + rng.normal(size=n), rng.normal(size=n)]
    b = np.c_[np.isin(code, [0, 2]) * 3.0 + rng.normal(size=n), rng.normal(size=n)]
    feats = {k: v.astype(np.float32) for k, v in
             {"noise": rng.normal(size=(n, 2)), "a": a, "b": b}.items()}  # fmt: skip
    cfg = SelectionConfig(layer_search="forward", combine_layers=3)
    search = LayerSearch(OpenSetClassifier(head_params={"C": 1.0}), feats, y, cfg)
    choice = search.run([LayerSpec((k,)) for k in feats], {k: 2 for k in feats})
    assert str(choice.layer) == "a+b"
    tried = {r["layer"] for r in choice.rows}
    assert "noise+a+b" in tried  # tried, and not kept
    single = LayerSearch(OpenSetClassifier(head_params={"C": 1.0}), feats, y,
                         SelectionConfig(layer_search="single"))  # fmt: skip
    assert str(single.run([LayerSpec((k,)) for k in feats], {k: 2 for k in feats}).layer) in "ab"


def test_auto_compares_a_small_fusions_members_and_concatenates_a_larger_one():
    X, y = blobs(11, SIZES)
    rng = np.random.default_rng(1)
    noise = lambda d: rng.normal(size=(len(y), d)).astype(np.float32)  # noqa: E731
    two = {"a/s1": X[:, :6], "a/s2": X[:, 6:], "b/s1": noise(4)}
    att = Attributor().fit_features(two, y)
    assert {r["layer"] for r in att.selection_.rows} == {"a/s1+a/s2", "b/s1", "a/s1+a/s2+b/s1"}
    assert str(att.layer_) == "a/s1+a/s2"  # the member that carries the classes
    four = {f"{m}/s": X if m == "a" else noise(4) for m in "abcd"}
    att = Attributor().fit_features(four, y)
    assert [r["layer"] for r in att.selection_.rows][:1] == ["a/s+b/s+c/s+d/s"]
    assert {r["layer"] for r in att.selection_.rows} == {"a/s+b/s+c/s+d/s"}
