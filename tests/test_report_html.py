"""RUN_DIR/report.html: self-contained, every plot a decodable inline PNG, sections as the run has."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from conftest import DEMO_KNOWN
from originprobe.cli import main

KNOWN = ",".join(DEMO_KNOWN)
PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _inline_images(page: str) -> list[Image.Image]:
    images = []
    for b64 in PNG.findall(page):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        im.load()  # a truncated or corrupt PNG fails here
        images.append(im)
    return images


def _assert_self_contained(page: str):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<link" not in page and "<script" not in page
    assert not re.search(r'(src|href)="(?!data:)', page), "a resource outside the page"
    assert "http://" not in page and "https://" not in page


def _sections(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


@pytest.fixture(scope="module")
def full_run(small_realgen, shared_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    rc = main(
        [
            "evaluate",
            "--data",
            str(small_realgen),
            "--known",
            KNOWN,
            "--cache",
            str(shared_cache),
            "--out",
            str(out),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage4,stage5",
            "--robustness",
            "jpeg=60;blur=2",
            "--low-data",
            "3,10",
            "--low-data-seeds",
            "2",
        ]
    )
    assert rc == 0
    return out


def test_evaluate_writes_a_self_contained_report(full_run):
    page = (full_run / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert _sections(page) == [
        "Metrics",
        "Known-only estimate beside the test figures",
        "At the model's own threshold",
        "Known vs unknown",
        "Confusion matrix",
        "Candidates compared",
        "Robustness",
        "Low-data regime",
        "Embedding map",
        "Samples",
    ]
    images = _inline_images(page)
    # ROC, OSCR, score histogram, per-unknown AUROC, confusion, candidates, robustness
    # (2 kinds), low data, map
    assert len(images) == 10
    assert "Scores of test images" in page or "known vs unknown classes" in page
    for im in images:
        # readable: large enough to show axes and labels, not a blank canvas
        assert im.width >= 300 and im.height >= 250
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100
    res = json.loads((full_run / "results.json").read_text())
    # the numbers on the page are those of results.json, the chosen candidate marked, the
    # known-only estimate beside the test figure
    assert f"{res['open_set']['auroc']:.3f}" in page
    assert f"{res['estimate']['auroc']:.3f}" in page
    assert f'<tr class="sel"><td>{res["selected"]["layer"]}</td>' in page
    for label in res["unknown_classes"]:
        assert label in page


def test_report_command_rebuilds_without_optional_sections(full_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    res = json.loads((full_run / "results.json").read_text())
    for key in ("robustness", "low_data"):
        res.pop(key)
    (run / "results.json").write_text(json.dumps(res))
    (run / "predictions.csv").write_bytes((full_run / "predictions.csv").read_bytes())
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "Robustness" not in _sections(page) and "Low-data regime" not in _sections(page)
    assert "Embedding map" not in _sections(page)  # no embedding.csv in this directory
    assert len(_inline_images(page)) == 6


def test_report_on_a_missing_run_names_the_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "results.json" in err


def test_compare_ranks_by_the_known_only_criterion_and_its_report(
    small_realgen, shared_cache, tmp_path
):
    out = tmp_path / "cmp"
    rc = main(
        [
            "compare",
            "--data",
            str(small_realgen),
            "--known",
            KNOWN,
            "--cache",
            str(shared_cache),
            "--out",
            str(out),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
            "--heads",
            "linear,ncm,linear",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    pairs = [(r["head"], r["score"]) for r in res["compare"]]
    from originprobe.heads import HEADS
    from originprobe.openset import supported_scores

    expected = [(h, s) for h in ("linear", "ncm") for s in supported_scores(HEADS.get(h))]
    assert sorted(pairs) == sorted(expected)  # every pair once: no duplicate rows
    # ranked by the known-only criterion, never by test figures
    keys = [(r["criterion"], r["val_balanced_accuracy"]) for r in res["compare"]]
    assert keys == sorted(keys, reverse=True)
    assert res["ranked_by"] == ["criterion", "val_balanced_accuracy"]
    for a, b in zip(res["compare"], res["compare"][1:]):
        same = (round(a["criterion"], 6), round(a["val_balanced_accuracy"], 6)) == (
            round(b["criterion"], 6),
            round(b["val_balanced_accuracy"], 6),
        )
        assert (a["rank"] == b["rank"]) == same and (not same or a["tie"] and b["tie"])
    # one head's selection does not depend on which score it is paired with
    linear = {
        (r["layer"], json.dumps(r["params"])) for r in res["compare"] if r["head"] == "linear"
    }
    assert len(linear) == 1
    md = (out / "results.md").read_text()
    assert md.count("| linear |") == len(supported_scores(HEADS.get("linear")))
    if any(r["tie"] for r in res["compare"]):
        assert "are ties" in md
    page = (out / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "Heads × scores" in page
