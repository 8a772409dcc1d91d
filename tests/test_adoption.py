"""What a new user meets first (issue: adoption): --version, --help defaults, replaying a run
from its config.json, --seeds summaries, predict --out csv/jsonl, file modes, provenance, and
cache ls / prune."""

from __future__ import annotations

import csv
import json
import os
import stat
import time

import pytest

from conftest import DEMO_KNOWN
from originprobe import __version__
from originprobe.cli import main

KNOWN = ",".join(DEMO_KNOWN)


@pytest.fixture(scope="module")
def first_run(small_realgen, shared_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("adopt") / "run"
    assert (
        main(
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
                "--quiet",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage4,stage5",
            ]
        )
        == 0
    )
    return out


def test_version_and_help_show_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: linear)" in text and "(default: 0.85)" in text and "--engine" in text


def test_config_replay_gives_the_same_table(first_run, shared_cache, tmp_path):
    again = tmp_path / "replay"
    assert (
        main(
            [
                "evaluate",
                "--config",
                str(first_run / "config.json"),
                "--out",
                str(again),
                "--cache",
                str(shared_cache),
                "--quiet",
            ]
        )
        == 0
    )
    a = json.loads((first_run / "results.json").read_text())
    b = json.loads((again / "results.json").read_text())
    for part in ("closed_set", "open_set", "selected", "counts"):
        assert a[part] == b[part], part
    table = lambda p: (p / "results.md").read_text().split("## ")[1]  # the metrics table
    assert table(first_run) == table(again)
    # a config cannot be combined with options that change data or classes
    assert (
        main(
            [
                "evaluate",
                "--config",
                str(first_run / "config.json"),
                "--known",
                "real",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_results_record_provenance_and_files_have_normal_modes(
    first_run, small_realgen, shared_cache, tmp_path
):
    prov = json.loads((first_run / "results.json").read_text())["software"]
    assert {"originprobe", "python", "torch", "timm", "scikit-learn", "numpy"} <= set(
        prov["versions"]
    )
    assert prov["weights_sha256"] and prov["platform"]
    model = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                "--data",
                str(small_realgen),
                "--known",
                KNOWN,
                "--cache",
                str(shared_cache),
                "--out",
                str(model),
                "--quiet",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5",
            ]
        )
        == 0
    )
    umask = os.umask(0)
    os.umask(umask)
    for f in [*model.iterdir(), *first_run.iterdir()]:
        mode = stat.S_IMODE(f.stat().st_mode)
        want = (0o777 if f.is_dir() else 0o666) & ~umask
        assert mode == want, f"{f.name}: mode {oct(mode)}, expected {oct(want)}"


def test_seeds_report_mean_and_std(small_realgen, shared_cache, tmp_path):
    out = tmp_path / "seeds"
    assert (
        main(
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
                "--quiet",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5",
                "--seeds",
                "0,1",
            ]
        )
        == 0
    )
    summary = json.loads((out / "results.json").read_text())
    runs = summary["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    accs = [r["accuracy"] for r in runs]
    assert summary["mean"]["accuracy"] == pytest.approx(sum(accs) / 2)
    assert summary["std"]["accuracy"] == pytest.approx(abs(accs[0] - accs[1]) / 2)
    assert "±" in (out / "results.md").read_text()
    for r in runs:  # each seed's run is complete, with bootstrap intervals
        lo, hi = r["auroc_ci95"]
        assert lo <= r["AUROC"] <= hi


def test_predict_writes_csv_and_jsonl_and_never_overwrites(
    small_realgen, shared_cache, realgen, tmp_path, capsys
):
    model = tmp_path / "model"
    assert (
        main(
            [
                "fit",
                "--data",
                str(small_realgen),
                "--known",
                KNOWN,
                "--cache",
                str(shared_cache),
                "--out",
                str(model),
                "--quiet",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "stage5",
                "--score",
                "msp",  # a probability: no score reaches 1.01 below
            ]
        )
        == 0
    )
    folder = tmp_path / "inbox" / "nested"
    folder.mkdir(parents=True)
    imgs = sorted((realgen / "disco-diffusion").iterdir())[:3]
    for i, p in enumerate(imgs):
        (folder / f"img{i}.noext").write_bytes(p.read_bytes())  # found by content
    (folder / "readme.txt").write_text("not an image")
    csv_out, jsonl_out = tmp_path / "a.csv", tmp_path / "a.jsonl"
    assert (
        main(
            [
                "predict",
                str(model),
                str(tmp_path / "inbox"),
                "--out",
                str(csv_out),
                "--top-k",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(csv_out.open()))
    assert len(rows) == 4
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 3 and all(r["label"] for r in ok)
    assert any("readme.txt" in r["source"] and r["error"] for r in rows)
    assert (
        main(
            [
                "predict",
                str(model),
                *map(str, imgs),
                "--out",
                str(jsonl_out),
                "--quiet",
                "--threshold",
                "1.01",
            ]
        )
        == 0
    )
    recs = [json.loads(l) for l in jsonl_out.read_text().splitlines()]
    assert len(recs) == 3 and all(r["label"] == "unknown" for r in recs)  # nothing reaches 1.01
    before = jsonl_out.read_bytes()
    assert main(["predict", str(model), str(imgs[0]), "--out", str(jsonl_out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err and jsonl_out.read_bytes() == before
    assert main(["predict", str(model), str(imgs[0]), "--out", str(tmp_path / "a.xlsx")]) == 2


def test_cache_ls_and_prune(small_realgen, tmp_path, capsys):
    cache = tmp_path / "cache"
    for bb in ("efficientnet-lite0", "forensic"):
        assert (
            main(
                ["extract", str(small_realgen), "--cache", str(cache), "--backbone", bb, "--quiet"]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["cache", "ls", str(cache), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["backbone"] for r in rows) == ["efficientnet-lite0", "forensic"]
    n_images = len(list(csv.DictReader(open(small_realgen))))
    assert all(r["images"] == n_images and r["bytes"] > 0 for r in rows), (rows, n_images)
    assert main(["cache", "prune", str(cache), "--backbone", "forensic", "--dry-run"]) == 0
    assert "would remove 1" in capsys.readouterr().out
    assert len(list(cache.iterdir())) == 2
    assert main(["cache", "prune", str(cache), "--backbone", "forensic"]) == 0
    assert [r.name.split("-")[0] for r in cache.iterdir() if r.is_dir()] == ["efficientnet"]
    assert main(["cache", "prune", str(cache), "--older-than", "1"]) == 0  # fresh: kept
    assert "removed 0" in capsys.readouterr().out
    old = time.time() - 3 * 86400
    for f in cache.rglob("*"):
        os.utime(f, (old, old))
    assert main(["cache", "prune", str(cache), "--older-than", "1"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert main(["cache", "prune", str(cache)]) == 2
