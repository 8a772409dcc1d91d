"""JPEG-aligned evaluation, test-time perturbations and the low-data regime."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_KNOWN
from originprobe.cli import main
from originprobe.data.perturb import Perturbation, parse_levels


def _image(w=200, h=120):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_perturbations_do_what_they_say():
    img = _image()
    assert Perturbation("downscale", 0.5)(img).size == (100, 60)
    assert Perturbation("crop", 0.5)(img).size == (100, 60)
    blurred = np.asarray(Perturbation("blur", 2.0)(img), dtype=float)
    assert blurred.std() < np.asarray(img, dtype=float).std() * 0.8
    j = Perturbation("jpeg", 50)
    a, b = np.asarray(j(img)), np.asarray(j(img))
    assert np.array_equal(a, b)  # deterministic
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=50)
    assert np.array_equal(a, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    with pytest.raises(ValueError, match="quality"):
        Perturbation("jpeg", 0)
    with pytest.raises(ValueError, match="unknown perturbation"):
        parse_levels("sharpen=1")
    assert parse_levels("jpeg=90,70;blur=1") == {"jpeg": [90.0, 70.0], "blur": [1.0]}


def test_jpeg_aligned_robustness_and_low_data_in_one_run(small_realgen, shared_cache, tmp_path):
    out = tmp_path / "run"
    rc = main(
        [
            "evaluate",
            "--data",
            str(small_realgen),
            "--known",
            ",".join(DEMO_KNOWN),
            "--cache",
            str(shared_cache),
            "--out",
            str(out),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
            "--jpeg-align",
            "80",
            "--robustness",
            "jpeg=60;downscale=0.5",
            "--low-data",
            "3,10",
            "--low-data-seeds",
            "2",
            "--no-report",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    ja = res["jpeg_aligned"]
    assert ja["quality"] == 80
    assert 0 <= ja["open_set"]["auroc"] <= 1 and 0 <= ja["closed_set"]["accuracy"] <= 1
    assert ja["counts"] == res["counts"]  # same split, different pixels
    assert ja["open_set"]["auroc"] != res["open_set"]["auroc"]
    md = (out / "results.md").read_text()
    assert "| metric | raw | JPEG-aligned (q=80) |" in md
    rob = res["robustness"]
    assert set(rob) == {"jpeg", "downscale"}
    for rows in rob.values():
        assert rows[0]["level"] == "none"
        assert rows[0]["accuracy"] == pytest.approx(res["closed_set"]["accuracy"])
        assert len(rows) == 2 and all(0 <= r["auroc"] <= 1 for r in rows)
    low = res["low_data"]
    assert [r["per_class"] for r in low] == [3, 10]
    assert all(r["seeds"] == 2 and r["accuracy_std"] >= 0 for r in low)
    emb = (out / "embedding.csv").read_text().splitlines()
    assert emb[0] == "path,label,x,y" and len(emb) == 1 + sum(res["counts"]["test"].values())
    # aligned and perturbed features live in their own cache namespaces
    namespaces = [p.name for p in shared_cache.iterdir() if p.is_dir()]
    assert len(namespaces) >= 4
