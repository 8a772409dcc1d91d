"""Every head follows the estimator contract, saves without pickle, separates known from unknown,
agrees with scikit-learn where an equivalent exists, and can enrol a new class."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestCentroid, NearestNeighbors

from originprobe.heads import HEADS, head_factory
from originprobe.heads.gaussian import GaussianHead
from originprobe.heads.knn import KNNHead
from originprobe.heads.ncm import NCMHead
from originprobe.openset import ALL_SCORES, UnsupportedScoreError, known_score

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


@pytest.mark.parametrize("name", sorted(HEADS))
def test_contract_round_trip_and_open_set_separation(name, data):
    Xtr, ytr, Xte, yte, Xu, _ = data
    head = head_factory(name, seed=0)().fit(Xtr, ytr)
    assert list(head.classes_) == sorted(CLASSES)
    d = head.decision_function(Xte)
    assert d.shape == (len(Xte), 3)
    p = head.predict_proba(Xte)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    pred = head.predict(Xte)
    assert np.array_equal(pred, head.classes_[d.argmax(1)])
    assert np.mean(pred == yte) > 0.9
    assert set(head.supported_scores) <= set(ALL_SCORES)
    assert head.default_score in head.supported_scores
    for score in head.supported_scores:
        s = np.r_[known_score(head, Xte, score), known_score(head, Xu, score)]
        auc = roc_auc_score(np.r_[np.ones(len(Xte)), np.zeros(len(Xu))], s)
        assert auc > 0.9, (name, score, auc)
    unsupported = [s for s in ALL_SCORES if s not in head.supported_scores]
    for s in unsupported:
        with pytest.raises(UnsupportedScoreError, match=name):
            known_score(head, Xte, s)
    tensors, params = head.get_state()
    assert all(isinstance(v, np.ndarray) for v in tensors.values())
    import json
    params = json.loads(json.dumps(params))  # must be plain JSON
    again = HEADS[name].from_state(tensors, params)
    assert np.array_equal(again.decision_function(Xte), head.decision_function(Xte))
    with pytest.raises(ValueError):
        head.decision_function(Xte[:, :5])


@pytest.mark.parametrize("name", sorted(HEADS))
def test_enrolment_recognises_new_class_and_keeps_old(name, data):
    Xtr, ytr, Xte, yte, Xu, mus = data
    head = head_factory(name, seed=0)().fit(Xtr, ytr)
    acc_before = np.mean(head.predict(Xte) == yte)
    rng = np.random.default_rng(9)
    Xnew = rng.normal(mus[3], 1.0, (10, Xtr.shape[1])).astype(np.float32)
    if name == "linear":
        head.add_class(Xnew, "gen-new", X_train=Xtr, y_train=ytr)
    else:
        head.add_class(Xnew, "gen-new")
    assert "gen-new" in set(head.classes_)
    assert np.mean(head.predict(Xu) == "gen-new") >= 0.8
    assert np.mean(head.predict(Xte) == yte) >= acc_before - 0.02
    with pytest.raises(ValueError, match="already known"):
        head.add_class(Xnew, "gen-new")


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


def test_ncm_predictions_match_sklearn_nearest_centroid(data):
    Xtr, ytr, Xte, *_ = data
    head = NCMHead(centre=True).fit(Xtr, ytr)
    Z = lambda X: (X - Xtr.mean(0)) / np.linalg.norm(X - Xtr.mean(0), axis=1, keepdims=True)
    sk = NearestCentroid(metric="euclidean").fit(Z(Xtr), ytr)
    # on the unit sphere, nearest (normalised) mean by cosine = nearest by Euclidean distance
    # when centroids have equal norms; compare on well-separated data
    assert np.mean(head.predict(Xte) == sk.predict(Z(Xte))) > 0.98


def test_reference_head_is_deterministic_and_rejects_by_distance(data):
    Xtr, ytr, Xte, yte, Xu, _ = data
    a = HEADS["reference"](seed=3).fit(Xtr, ytr)
    b = HEADS["reference"](seed=3).fit(Xtr, ytr)
    assert np.array_equal(a.decision_function(Xte), b.decision_function(Xte))
    assert a.distances(Xu).min(1).mean() > a.distances(Xte).min(1).mean()
