"""Every head is a scikit-learn estimator, saves without pickle, separates known from unknown with
every score it supports, agrees with scikit-learn where an equivalent exists, and enrols a class.
The open-set scores agree with direct computations of their published formulas."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import NearestCentroid, NearestNeighbors

from originprobe.heads import HEADS, HeadStateError, head_factory
from originprobe.heads.base import Head
from originprobe.heads.gaussian import GaussianHead
from originprobe.heads.knn import KNNHead
from originprobe.heads.linear import LinearHead
from originprobe.heads.ncm import NCMHead
from originprobe.openset import SCORES, UnsupportedScoreError, fit_score, supported_scores

CLASSES = np.array(["real", "gen-a", "gen-b"], dtype=object)


def blobs(seed: int, n: int = 80, d: int = 24, n_classes: int = 4, radius: float = 8.0):
    """Gaussian blobs on random directions; the last blob is the unknown class."""
    rng = np.random.default_rng(seed)
    mus = rng.normal(size=(n_classes, d))
    mus = radius * mus / np.linalg.norm(mus, axis=1, keepdims=True)
    X = [rng.normal(mus[i], 1.0, (n, d)).astype(np.float32) for i in range(n_classes)]
    return X, mus


@pytest.fixture(scope="module")
def data():
    Xtr, mus = blobs(0)
    rng = np.random.default_rng(1)
    Xte = [rng.normal(m, 1.0, (60, len(m))).astype(np.float32) for m in mus]
    y_tr = np.repeat(CLASSES, 80)
    y_te = np.repeat(CLASSES, 60)
    return np.vstack(Xtr[:3]), y_tr, np.vstack(Xte[:3]), y_te, Xte[3], mus


@pytest.mark.parametrize("name", HEADS.names())
def test_contract_round_trip_and_open_set_separation(name, data):
    Xtr, ytr, Xte, yte, Xu, _ = data
    head = head_factory(name, seed=0)().fit(Xtr, ytr)
    assert list(head.classes_) == sorted(CLASSES)
    d = head.decision_function(Xte)
    assert d.shape == (len(Xte), 3)
    p = head.predict_proba(Xte)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert np.allclose(p, head.proba_from_decision(d))
    pred = head.predict(Xte)
    assert np.array_equal(pred, head.classes_[d.argmax(1)])
    assert head.score(Xte, yte) > 0.9
    assert set(supported_scores(head)) <= set(SCORES.names())
    assert head.default_score in supported_scores(head)
    for score in supported_scores(head):
        sc = fit_score(score, Xtr, ytr, head)
        s = np.r_[sc.score(Xte), sc.score(Xu)]
        auc = roc_auc_score(np.r_[np.ones(len(Xte)), np.zeros(len(Xu))], s)
        # the reference head's posterior is a softmax of squared distances: far from every
        # reference point its top probability saturates, so msp only beats chance there
        assert auc > (0.55 if (name, score) == ("reference", "msp") else 0.9), (name, score, auc)
        # given the decision matrix, a score reads the same numbers
        assert np.allclose(sc.score(Xte, head.decision_function(Xte)), sc.score(Xte))
    for s in set(SCORES.names()) - set(supported_scores(head)):
        with pytest.raises(UnsupportedScoreError, match=name):
            fit_score(s, Xtr, ytr, head)
    tensors, params = head.get_state()
    assert all(isinstance(v, np.ndarray) for v in tensors.values())
    params = json.loads(json.dumps(params))  # must be plain JSON
    again = HEADS.get(name).from_state(tensors, params)
    assert np.array_equal(again.decision_function(Xte), head.decision_function(Xte))
    with pytest.raises(ValueError):
        head.decision_function(Xte[:, :5])
    # saved state that does not fit together is refused
    short = dict(params, classes=params["classes"][:2])
    with pytest.raises(HeadStateError):
        HEADS.get(name).from_state(tensors, short)
    any_array = next(iter(head.state_arrays)).rstrip("_")
    with pytest.raises(HeadStateError, match="missing"):
        HEADS.get(name).from_state({k: v for k, v in tensors.items() if k != any_array}, params)


@pytest.mark.parametrize("name", HEADS.names())
def test_sklearn_clone_and_cross_validation(name, data):
    Xtr, ytr, *_ = data
    head = head_factory(name, seed=0)()
    params = head.get_params(deep=True)
    twin = clone(head)
    assert twin.get_params() == params and twin is not head
    key = next(iter(params))
    assert head.set_params(**{key: params[key]}) is head
    with pytest.raises(ValueError):
        head.set_params(not_a_parameter=1)
    scores = cross_val_score(clone(head), Xtr, ytr, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85, scores


@pytest.mark.parametrize("name", HEADS.names())
def test_enrolment_recognises_new_class_and_keeps_old(name, data):
    Xtr, ytr, Xte, yte, Xu, mus = data
    head = head_factory(name, seed=0)().fit(Xtr, ytr)
    acc_before = np.mean(head.predict(Xte) == yte)
    rng = np.random.default_rng(9)
    Xnew = rng.normal(mus[3], 1.0, (10, Xtr.shape[1])).astype(np.float32)
    head.add_class(Xnew, "gen-new", Xtr, ytr)
    assert "gen-new" in set(head.classes_)
    assert np.mean(head.predict(Xu) == "gen-new") >= 0.8
    assert np.mean(head.predict(Xte) == yte) >= acc_before - 0.02
    with pytest.raises(ValueError, match="already known"):
        head.add_class(Xnew, "gen-new", Xtr, ytr)


def test_linear_head_reaches_sklearns_optimum(data):
    """Same objective as LogisticRegression (balanced weights, unpenalised intercept): the
    batched solver's coefficients match scikit-learn's lbfgs run to tight tolerance."""
    Xtr, ytr, Xte, *_ = data
    Cs = [0.01, 1.0, 100.0]
    heads = LinearHead(tol=1e-10).fit_grid([Xtr], ytr, [{"C": C} for C in Cs])[0]
    Z = (Xtr - Xtr.mean(0)) / Xtr.std(0)
    for C, h in zip(Cs, heads):
        sk = LogisticRegression(C=C, tol=1e-12, max_iter=20000, class_weight="balanced").fit(Z, ytr)
        order = [list(sk.classes_).index(c) for c in h.classes_]
        assert np.allclose(h.coef_, sk.coef_[order], atol=2e-3 * max(1, np.abs(sk.coef_).max()))
        assert np.array_equal(h.predict(Xte), sk.predict((Xte - Xtr.mean(0)) / Xtr.std(0)))
        assert h.converged_


def test_fit_grid_equals_separate_fits(data):
    Xtr, ytr, Xte, *_ = data
    grid = [{"C": c} for c in (0.01, 0.1, 1.0)]
    batched = LinearHead().fit_grid([Xtr, Xtr[:, :10]], ytr, grid)
    for X, row in zip([Xtr, Xtr[:, :10]], batched):
        for params, h in zip(grid, row):
            alone = LinearHead(**params).fit(X, ytr)
            assert np.allclose(h.decision_function(X), alone.decision_function(X), atol=1e-4)


def test_knn_matches_sklearn_cosine_neighbours(data):
    Xtr, ytr, Xte, *_ = data
    head = KNNHead(k=3).fit(Xtr, ytr)
    Ztr, Zte = Xtr - Xtr.mean(0), Xte - Xtr.mean(0)
    for ci, c in enumerate(head.classes_):
        nn = NearestNeighbors(n_neighbors=3, metric="cosine").fit(Ztr[ytr == c])
        dist, _ = nn.kneighbors(Zte)
        assert np.allclose(head.decision_function(Xte)[:, ci], 1.0 - dist[:, -1], atol=1e-5)


def test_gaussian_mahalanobis_matches_direct_computation(data):
    Xtr, ytr, Xte, *_ = data
    head = GaussianHead(shrinkage=0.3).fit(Xtr, ytr)
    Z = lambda X: (X - Xtr.mean(0)) / np.linalg.norm(X - Xtr.mean(0), axis=1, keepdims=True)
    Ztr, Zte = Z(Xtr).astype(np.float64), Z(Xte).astype(np.float64)
    means = np.stack([Ztr[ytr == c].mean(0) for c in head.classes_])
    R = Ztr - means[np.searchsorted(head.classes_, ytr)]
    emp = R.T @ R / len(R)
    cov = 0.7 * emp + 0.3 * np.trace(emp) / emp.shape[0] * np.eye(emp.shape[0])
    P = np.linalg.inv(cov)
    direct = np.stack([np.einsum("ij,jk,ik->i", Zte - m, P, Zte - m) for m in means], 1)
    assert np.allclose(head.mahalanobis_sq(Xte), direct, rtol=1e-3, atol=1e-3)
    # the fitted Mahalanobis score of a Gaussian head is minus half the nearest distance
    sc = fit_score("mahalanobis", Xtr, ytr, head)
    assert np.allclose(sc.score(Xte), -0.5 * direct.min(1), rtol=1e-3, atol=1e-3)


def test_ncm_predictions_match_sklearn_nearest_centroid(data):
    Xtr, ytr, Xte, *_ = data
    head = NCMHead(centre=True).fit(Xtr, ytr)
    Z = lambda X: (X - Xtr.mean(0)) / np.linalg.norm(X - Xtr.mean(0), axis=1, keepdims=True)
    sk = NearestCentroid(metric="euclidean").fit(Z(Xtr), ytr)
    assert np.mean(head.predict(Xte) == sk.predict(Z(Xte))) > 0.98


def test_reference_head_is_deterministic_and_rejects_by_distance(data):
    Xtr, ytr, Xte, yte, Xu, _ = data
    a = HEADS.get("reference")(seed=3).fit(Xtr, ytr)
    b = HEADS.get("reference")(seed=3).fit(Xtr, ytr)
    assert np.array_equal(a.decision_function(Xte), b.decision_function(Xte))
    assert a.distances(Xu).min(1).mean() > a.distances(Xte).min(1).mean()
    sc = fit_score("reference", Xtr, ytr, a)
    assert np.allclose(sc.score(Xte), -a.distances(Xte).min(1), atol=1e-5)


@pytest.mark.parametrize("name", HEADS.names())
def test_msp_is_the_top_probability(name, data):
    Xtr, ytr, Xte, *_ = data
    head = head_factory(name, seed=0)().fit(Xtr, ytr)
    assert np.allclose(
        fit_score("msp", Xtr, ytr, head).score(Xte), head.predict_proba(Xte).max(1), atol=1e-7
    )


def test_deep_knn_is_the_kth_neighbour_distance_on_the_unit_sphere(data):
    Xtr, ytr, Xte, *_ = data
    head = LinearHead().fit(Xtr, ytr)
    sc = fit_score("knn", Xtr, ytr, head)
    unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)
    nn = NearestNeighbors(n_neighbors=sc.k).fit(unit(Xtr))
    dist, _ = nn.kneighbors(unit(Xte))
    assert np.allclose(sc.score(Xte), -dist[:, -1], atol=1e-4)


def test_vim_matches_its_formula_with_sklearn_pca(data):
    """ViM: energy minus α times the norm of the part of x - o off the principal subspace."""
    Xtr, ytr, Xte, *_ = data
    head = LinearHead().fit(Xtr, ytr)
    sc = fit_score("vim", Xtr, ytr, head)
    W, b = (a.astype(np.float64) for a in head.linear_map())
    # the origin: the minimum-norm point where every logit is equal (softmax is shift-invariant)
    o = np.linalg.lstsq(W - W.mean(0), -(b - b.mean()), rcond=1e-6)[0]
    D = Xtr.shape[1]
    d = D // 2
    pca = PCA(n_components=d, svd_solver="full").fit(np.vstack([Xtr - o, -(Xtr - o)]))
    resid = lambda X: np.linalg.norm((X - o) - pca.inverse_transform(pca.transform(X - o)), axis=1)
    logits = Xtr @ W.T + b
    alpha = logits.max(1).mean() / resid(Xtr).mean()
    from scipy.special import logsumexp

    expected = logsumexp(Xte @ W.T + b, axis=1) - alpha * resid(Xte)
    assert np.allclose(sc.score(Xte), expected, rtol=1e-3, atol=1e-3)


def test_vim_needs_a_linear_head(data):
    Xtr, ytr, *_ = data
    with pytest.raises(UnsupportedScoreError):
        fit_score("vim", Xtr, ytr, NCMHead().fit(Xtr, ytr))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_score("vim", Xtr, ytr, LinearHead().fit(Xtr, ytr))


def test_each_score_needs_what_its_head_provides():
    """Which (head, score) pairs work follows from what each score needs and each head provides:
    the linear head gives logits and a linear map (energy, ViM); only distance heads give the
    reference score; every head gives a posterior (msp)."""
    assert set(supported_scores(LinearHead)) == {"msp", "maxlogit", "energy", "vim", "knn",
                                                 "mahalanobis"}  # fmt: skip
    assert "reference" in supported_scores(NCMHead) and "energy" not in supported_scores(NCMHead)
    for name in HEADS.names():
        assert "msp" in supported_scores(HEADS.get(name))
        assert supported_scores(HEADS.get(name))[0] == HEADS.get(name).default_score


def test_linear_cross_decisions_equal_separate_fits(data):
    """The batched cross-validation (every C and fold on one shared basis, generators withheld
    from folds) gives the decisions of heads fitted one by one on the same rows, and a class
    with no training row in a fold gets −inf."""
    Xtr, ytr, *_ = data
    Z = ((Xtr - Xtr.mean(0)) / Xtr.std(0)).astype(np.float32)  # the shared standardisation
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ytr))
    splits = [(order[:160], order[160:]), (order[80:], order[:80])]
    splits.append((np.flatnonzero(ytr != "gen-b"), np.arange(len(ytr))))  # gen-b withheld
    grid = [{"C": 0.1}, {"C": 10.0}]
    head = LinearHead(tol=1e-9, standardize=False)
    fast, refit = head.cross_decisions(Z, ytr, splits, grid, refit=True)
    # the batched path scales each split's C by (all rows / its rows); one by one, the same
    slow = [
        [Head.cross_decisions(head, Z, ytr, [sp], [{"C": g["C"] * len(ytr) / len(sp[0])}])[0][0][0]
         for sp in splits]
        for g in grid
    ]  # fmt: skip
    refit2 = Head.cross_decisions(head, Z, ytr, [], grid, refit=True)[1]
    for row_fast, row_slow in zip(fast, slow):
        for a, b in zip(row_fast, row_slow):
            assert np.array_equal(np.isfinite(a), np.isfinite(b))
            assert np.allclose(a[np.isfinite(b)], b[np.isfinite(b)], atol=1e-3)
    assert np.isneginf(fast[0][2][:, list(head._labels(ytr)[0]).index("gen-b")]).all()
    for a, b in zip(refit, refit2):
        assert np.allclose(a.decision_function(Z), b.decision_function(Z), atol=1e-3)


def test_batched_solver_matches_sklearn_on_row_subsets_and_wide_features():
    """Row subsets, a withheld class and more dimensions than rows (the Gram-matrix basis):
    each problem reaches scikit-learn's optimum on its own rows."""
    from originprobe.heads._logistic import (
        Basis,
        Problem,
        Stopping,
        _weights,
        balanced_weights,
        objective,
        solve,
    )

    rng = np.random.default_rng(0)
    for n, D in ((300, 40), (200, 500)):
        y = rng.integers(0, 4, n)
        X = rng.normal(size=(n, D)) + 0.5 * rng.normal(size=(4, D))[y]
        basis = Basis(X, _weights(y, 4, None, True)[0])
        rows = np.flatnonzero(y != 2)[:150]
        problems = [Problem(0.1), Problem(10.0), Problem(0.1, rows)]
        for (v, fit), p in zip(solve(basis, y, 4, problems, True, Stopping(1e-8)), problems):
            r = np.arange(n) if p.rows is None else p.rows
            sk = LogisticRegression(C=p.C, tol=1e-10, max_iter=5000,
                                    class_weight="balanced").fit(X[r], y[r])  # fmt: skip
            coef, icpt = basis.to_features(v)
            yy = np.searchsorted(np.flatnonzero(fit.present), y[r])
            sw = balanced_weights(yy, int(fit.present.sum()))
            ours = objective(X[r], yy, sw, p.C, coef[fit.present], icpt[fit.present])
            theirs = objective(X[r], yy, sw, p.C, sk.coef_, sk.intercept_)
            assert ours <= theirs + 1e-6, (n, D, p.C)
            assert list(fit.present) == [True, True, p.rows is None, True]
