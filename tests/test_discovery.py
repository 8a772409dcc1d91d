"""Discovery: clustering the rejected images (`discovery`), `originprobe discover`, `enroll --from`,
the API, the service endpoint and `evaluate --discover`, on realgen and on rows built here."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from conftest import small_model
from originprobe import Attributor
from originprobe.cli import main
from originprobe.discovery import (
    NOISE,
    DiscoverySpace,
    discovery_metrics,
    find_clusters,
    purity,
)
from originprobe.errors import ConfigError
from originprobe.model.discovery import discover_images

KNOWN = ["real", "dalle-mini", "latent-diffusion"]
NEW = ["pixray-vqgan", "disco-diffusion", "stable-diffusion-v1"]


def _blobs(n_per=(60, 40, 30), noise=20, dims=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 12, (len(n_per), dims))
    X = np.vstack([rng.normal(c, 1.0, (n, dims)) for c, n in zip(centres, n_per)]
                  + [rng.uniform(-40, 40, (noise, dims))])  # fmt: skip
    y = np.concatenate([[f"g{i}"] * n for i, n in enumerate(n_per)] + [["noise"] * noise])
    return X, y


# ---------------------------------------------------------------- clustering, on rows built here
def test_separated_groups_come_out_as_clusters_largest_first_and_noise_stays_out():
    X, y = _blobs()
    labels = find_clusters(X, min_cluster_size=8, seed=0)
    blob = y != "noise"
    assert purity(y[blob], labels[blob]) == 1.0
    sizes = [int((labels == k).sum()) for k in range(labels.max() + 1)]
    assert sizes == sorted(sizes, reverse=True) and labels.max() + 1 >= 3
    assert (labels[~blob] == NOISE).mean() > 0.8  # scattered rows are left as noise
    for g in ("g0", "g1", "g2"):  # each group is the majority of some cluster
        assert any((y[labels == k] == g).mean() > 0.9 for k in range(labels.max() + 1))


def test_metrics_match_sklearn_and_a_hand_count():
    true = np.array(["a", "a", "a", "b", "b", "c", "c", "c"], dtype=object)
    labels = np.array([0, 0, 1, 1, 1, NOISE, 2, 2])
    m = discovery_metrics(true, labels, unseen=["b", "c", "d"])
    kept = labels != NOISE
    assert m["purity"] == pytest.approx(6 / 7)  # clusters: {a,a}, {a,b,b}, {c,c}
    assert m["ari"] == pytest.approx(adjusted_rand_score(true[kept], labels[kept]))
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(true[kept], labels[kept]))
    assert m["clustered"] == pytest.approx(7 / 8)
    assert m["found"] == ["b", "c"] and m["generators_found"] == 2
    assert m["unseen_generators"] == 3


def test_same_seed_same_clusters_and_fewer_rows_than_a_cluster_are_noise():
    X, _ = _blobs(seed=3)
    a = find_clusters(X, 8, seed=5, max_rows=100)
    b = find_clusters(X, 8, seed=5, max_rows=100)
    assert np.array_equal(a, b)
    assert (find_clusters(X[:5], 8) == NOISE).all()
    assert find_clusters(X[:0], 8).shape == (0,)
    with pytest.raises(ConfigError, match="min_cluster_size"):
        find_clusters(X, 1)


def test_beyond_the_sample_rows_join_their_nearest_clustered_neighbour():
    X, y = _blobs(n_per=(400, 300, 200), noise=50)
    sampled = find_clusters(X, 8, seed=0, max_rows=300)  # 300 clustered, 650 joined after
    blob = y != "noise"
    assert purity(y[blob], sampled[blob]) > 0.98
    assert (sampled[blob] != NOISE).mean() > 0.6  # most joined a cluster
    assert (sampled[~blob] == NOISE).mean() > 0.8  # scattered rows did not
    assert discovery_metrics(y[blob], sampled[blob], ["g0", "g1", "g2"])["generators_found"] == 3


def test_space_is_the_principal_projection_of_the_standardised_known_rows():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 40)).astype(np.float32)
    y = np.array(["a", "b", "c"] * 30, dtype=object)
    X[y == "b"] += 3
    space = DiscoverySpace.fit(X, y, seed=0)
    E = space.project(X)
    assert E.shape == (90, 32)
    Z = (X - X.mean(0)) / (X.std(0) + 1e-6)
    ref = PCA(32, svd_solver="full").fit_transform(Z)  # independent: same up to each sign
    assert np.allclose(np.abs(E), np.abs(ref), atol=1e-3)
    near, dist = space.nearest_class(space.class_centres)
    assert near == ["a", "b", "c"] and np.allclose(dist, 0, atol=1e-4)
    with pytest.raises(ConfigError, match="40-d"):
        space.project(X[:, :10])


# ---------------------------------------------------------------- on realgen
@pytest.fixture(scope="module")
def model_dir(realgen, shared_cache, tmp_path_factory) -> Path:
    return small_model(realgen, shared_cache, tmp_path_factory, 40, KNOWN)


@pytest.fixture(scope="module")
def new_images(realgen, tmp_path_factory) -> Path:
    """25 images of each of three generators the model never saw, in one flat folder."""
    d = tmp_path_factory.mktemp("new-generators")
    for g in NEW:
        for p in sorted((realgen / g).iterdir())[:25]:
            (d / f"{g}__{p.name}").write_bytes(p.read_bytes())
    return d


def test_discover_writes_clusters_page_and_csv_that_agree(model_dir, new_images, tmp_path, capsys):
    out = tmp_path / "found"
    rc = main(["discover", str(model_dir), str(new_images), "--out", str(out),
               "--min-cluster-size", "4", "--quiet"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "clusters.json").read_text())
    assert doc["format"] == "originprobe-clusters" and doc["rejected"] > 0
    assert doc["clusters"], printed
    rows = list(csv.DictReader(open(out / "clusters.csv", encoding="utf-8")))
    assert len(rows) == doc["rejected"]
    for c in doc["clusters"]:
        members = [r for r in rows if int(r["cluster"]) == c["cluster"]]
        assert len(members) == c["size"] >= 4
        assert all(int(r["cluster_size"]) == c["size"] for r in members)
        assert c["nearest_class"] in KNOWN and "files name" in c["claims_text"] or \
            "none of" in c["claims_text"]  # fmt: skip
        assert f"cluster {c['cluster']}:" in printed
    noise = [r for r in rows if r["cluster"] == "-1"]
    assert all(r["distance_to_centre"] == "" for r in noise)
    page = (out / "clusters.html").read_text()
    assert page.count("<section>") == len(doc["clusters"]) and "data:image/jpeg" in page
    if noise:
        assert f"Not grouped ({len(noise)})" in page
    # the same seed gives the same clusters
    again = tmp_path / "again"
    main(["discover", str(model_dir), str(new_images), "--out", str(again),
          "--min-cluster-size", "4", "--quiet"])  # fmt: skip
    assert json.loads((again / "clusters.json").read_text())["clusters"] == doc["clusters"]


def test_enrolling_a_cluster_names_its_images_and_keeps_the_other_classes(
    model_dir, new_images, tmp_path, realgen
):
    found = tmp_path / "found"
    main(["discover", str(model_dir), str(new_images), "--out", str(found),
          "--min-cluster-size", "4", "--quiet"])  # fmt: skip
    doc = json.loads((found / "clusters.json").read_text())
    members = [m["source"] for m in doc["clusters"][0]["members"]]
    probe = {c: sorted((realgen / c).iterdir())[100:130] for c in KNOWN}

    def accuracy(att):  # closed-set, on known images the model never saw
        return np.mean([a.closest == c for c, ps in probe.items() for a in att.predict(ps)])

    before = accuracy(Attributor.load(model_dir))
    model = tmp_path / "model"
    import shutil

    shutil.copytree(model_dir, model)
    rc = main(["enroll", str(model), "--from", str(found / "clusters.json"), "--cluster", "0",
               "--name", "campaign-1", "--quiet"])  # fmt: skip
    assert rc == 0
    att = Attributor.load(model)
    assert "campaign-1" in att.classes_
    named = att.predict(members)
    assert sum(a.closest == "campaign-1" for a in named) >= 0.8 * len(members)
    assert any(a.label == "campaign-1" for a in named)  # accepted, not only closest
    assert accuracy(att) >= before - 0.05  # a new class makes the task harder, not broken
    # a cluster that is not there is named, and the file is left as it was
    digest = (model / "model.json").read_bytes()
    assert main(["enroll", str(model), "--from", str(found), "--cluster", "99",
                 "--name", "x"]) == 2  # fmt: skip
    assert (model / "model.json").read_bytes() == digest


def test_api_discover_and_nothing_to_group(model_dir, new_images, realgen):
    att = Attributor.load(model_dir)
    files = sorted(new_images.iterdir())
    clusters = att.discover(files, min_cluster_size=4)
    assert clusters and all(c.size >= 4 for c in clusters)
    assert sorted(m for c in clusters for m in c.sources) == sorted(
        set(m for c in clusters for m in c.sources)
    )
    one = discover_images(att, files[:1], 4)
    assert not one.clusters and ("nothing to group" in one.message)
    none = discover_images(att.with_threshold(-1e9), files[:6], 4)
    assert none.message.startswith("no image was rejected") and not none.clusters
    assert none.to_dict()["images"] == []


def test_service_discover_endpoint(model_dir, new_images):
    from fastapi.testclient import TestClient

    from originprobe.serve import create_app

    asgi, _ = create_app(model_dir, max_upload_mb=8.0, max_batch=16, max_wait_ms=50)
    files = sorted(new_images.iterdir())[:40]
    with TestClient(asgi) as c:
        r = c.post("/v1/discover?min_cluster_size=4",
                   files=[("files", (p.name, p.read_bytes(), "image/png")) for p in files])  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["format"] == "originprobe-clusters" and body["model_id"]
        assert {m["source"] for cl in body["clusters"] for m in cl["members"]} <= \
            {p.name for p in files}  # fmt: skip
        bad = c.post("/v1/discover", files=[("files", ("x.png", b"not an image", "image/png"))])
        assert bad.status_code in (400, 415, 422) and bad.json()["file"] == "x.png"
        assert (
            c.post(
                "/v1/discover?min_cluster_size=1",
                files=[("files", (files[0].name, files[0].read_bytes(), "image/png"))],
            ).status_code
            == 422
        )


def test_clustering_fifty_thousand_rows_stays_bounded():
    """The scale path (sampled HDBSCAN + nearest-neighbour join) on 50k rows of 32 dims; the
    time is printed by `make bench`, the memory bound is checked here."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (12, 32))
    X = np.vstack([rng.normal(c, 1, (4000, 32)) for c in centres] + [rng.normal(0, 20, (2000, 32))])
    tracemalloc.start()
    labels = find_clusters(X, 8, seed=0, max_rows=4000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 500 * 2**20
    assert labels.max() + 1 >= 12


def test_evaluate_discover_reports_clusters_and_the_open_world_round(
    small_realgen, shared_cache, tmp_path
):
    from conftest import DEMO_KNOWN, DEMO_UNKNOWN

    out = tmp_path / "run"
    rc = main(["evaluate", "--data", str(small_realgen), "--known", ",".join(DEMO_KNOWN),
               "--cache", str(shared_cache), "--out", str(out), "--no-progress", "--discover",
               "--backbone", "efficientnet-lite0", "--layers", "stage4,stage5,head"])  # fmt: skip
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    d = res["discovery"]
    preds = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert d["rejected"] == sum(p["decision"] == "unknown" for p in preds)
    assert d["unseen_generators"] == len(DEMO_UNKNOWN)
    assert 0 <= d["generators_found"] <= d["unseen_generators"]
    assert set(d["found"]) <= set(DEMO_UNKNOWN)
    sizes = sum(c["size"] for c in d["cluster_list"])
    assert (
        sizes == round(d["clustered"] * d["rejected"]) and len(d["cluster_list"]) == d["clusters"]
    )
    if d["clusters"]:
        assert 0 < d["purity"] <= 1 and -1 <= d["ari"] <= 1 and 0 <= d["nmi"] <= 1
        truth = {p["path"]: p["label"] for p in preds}
        for c in d["cluster_list"]:
            assert all(s in truth for s in c["sources"])
    ow = d["open_world"]
    assert set(ow["per_generator"]) == set(DEMO_UNKNOWN)
    for g, v in ow["per_generator"].items():
        assert 0 <= v["consistent"] <= 1 and v["images"] == sum(p["label"] == g for p in preds)
    md = (out / "results.md").read_text()
    assert "## Discovery" in md and "Open-world round" in md
    assert "Discovery: the rejected test images clustered" in (out / "report.html").read_text()


def test_discover_on_a_folder_without_images_says_so(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    assert main(["discover", str(model_dir), str(tmp_path / "empty"), "--out",
                 str(tmp_path / "out"), "--quiet"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "no usable image among the inputs: nothing to group" in captured.out
    assert "notes.txt" in captured.err  # the skipped file, named
    assert json.loads((tmp_path / "out" / "clusters.json").read_text())["clusters"] == []
    assert main(["discover", str(model_dir), str(tmp_path / "empty")]) == 2  # no --out
