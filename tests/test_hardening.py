"""Hostile and unusual inputs: every one gets a clear error (exit 2) or a visible warning, never
a traceback, a silently wrong answer, lost work, or a read from outside the dataset."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_subset
from originprobe import Attributor
from originprobe.cli import main
from originprobe.data import hash_samples, load_dataset

KNOWN3 = ["real", "dalle-mini", "latent-diffusion"]


@pytest.fixture(scope="module")
def data3(realgen, tmp_path_factory):
    return write_subset(realgen, tmp_path_factory.mktemp("h-data"), {c: 24 for c in KNOWN3})


@pytest.fixture(scope="module")
def model(data3, shared_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("h-model") / "m"
    Attributor(
        backbone="efficientnet-lite0", layers="stage5", runtime={"cache": str(shared_cache)}
    ).fit(data3).save(out)
    return out


def _png(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)).save(
        path, "PNG"
    )
    return path


def _damaged_jpeg(src: Path, dst: Path) -> Path:
    """A JPEG whose entropy-coded data is damaged but still decodes (partly)."""
    buf = io.BytesIO()
    Image.open(src).convert("RGB").save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sos = data.index(b"\xff\xda")
    rng = np.random.default_rng(3)
    for i in range(sos + 300, sos + 340):
        data[i] = int(rng.integers(0, 255))
    dst.write_bytes(bytes(data))
    return dst


# ---------------------------------------------------------------- tracebacks → clear errors
@pytest.mark.parametrize("device", ["bogus", "cuda:99", "cuda"])
def test_a_bad_device_is_exit_2_in_every_command(device, data3, model, tmp_path, capsys, realgen):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        device = "cuda:99"
    img = str(next((realgen / "real").iterdir()))
    commands = {
        "evaluate": [
            "evaluate",
            "--data",
            str(data3),
            "--known",
            ",".join(KNOWN3),
            "--out",
            str(tmp_path / "r"),
        ],
        "fit": [
            "fit",
            "--data",
            str(data3),
            "--known",
            ",".join(KNOWN3),
            "--out",
            str(tmp_path / "m"),
        ],
        "compare": [
            "compare",
            "--data",
            str(data3),
            "--known",
            ",".join(KNOWN3),
            "--out",
            str(tmp_path / "c"),
        ],
        "extract": ["extract", str(data3)],
        "predict": ["predict", str(model), img],
        "enroll": ["enroll", str(model), "--label", "new", img],
    }
    for name, argv in commands.items():
        capsys.readouterr()
        assert (
            main(
                [*argv, "--device", device, "--cache", str(tmp_path / "cache")]
                if name not in ("predict", "enroll")
                else [*argv, "--device", device]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert f"--device {device!r}" in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "cache").exists()  # refused before any work


def test_out_naming_an_existing_file_is_refused_before_any_work(data3, tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    for cmd in ("evaluate", "compare", "fit"):
        assert (
            main(
                [
                    cmd,
                    "--data",
                    str(data3),
                    "--known",
                    ",".join(KNOWN3),
                    "--out",
                    str(out),
                    "--cache",
                    str(tmp_path / "cache"),
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert str(out) in err and "exists" in err
    assert out.read_text() == "keep me" and not (tmp_path / "cache").exists()


def test_bad_option_values_are_errors(data3, tmp_path, capsys):
    base = [
        "evaluate",
        "--data",
        str(data3),
        "--known",
        ",".join(KNOWN3),
        "--out",
        str(tmp_path / "r"),
        "--cache",
        str(tmp_path / "cache"),
    ]
    for extra, what in (
        (["--backbone", "efficientnet-lite0", "--layers", ","], "names no layer"),
        (["--backbone", "efficientnet-lite0", "--layers", "stage5+"], "empty layer name"),
        (["--backbone", "efficientnet-lite0", "--layers", "stage99"], "no layer(s) stage99"),
        (["--unknown", "not-a-generator"], "not-a-generator"),
        (["--known", ","], "names no class"),
    ):
        argv = base + extra
        if extra[0] == "--known":
            argv = base[:4] + [","] + base[5:]
        assert main(argv) == 2, extra
        assert what in capsys.readouterr().err, extra
    for bad in (
        ["--batch-size", "0"],
        ["--target-tpr", "1.5"],
        ["--workers", "-1"],
        ["--combine-layers", "0"],
        ["--flush-every", "soon"],
        ["--seed", "-3"],
    ):
        with pytest.raises(SystemExit) as e:
            main(base + bad)
        assert e.value.code == 2
        assert bad[0] in capsys.readouterr().err


# ---------------------------------------------------------------- silently wrong → told
def test_a_partly_damaged_jpeg_is_flagged_and_strict_makes_it_an_error(
    model, realgen, tmp_path, capsys
):
    src = next((realgen / "real").iterdir())
    bad = _damaged_jpeg(src, tmp_path / "damaged.jpg")
    good = _png(tmp_path / "fine.png")
    capsys.readouterr()
    assert main(["predict", str(model), str(bad), str(good), "--json", "--quiet"]) == 0
    out = capsys.readouterr()
    preds = {Path(p["source"]).name: p for p in json.loads(out.out)["results"] if p["label"]}
    assert preds["damaged.jpg"]["label"] is not None  # used, and flagged
    assert "damaged JPEG data" in preds["damaged.jpg"]["warning"]
    assert preds["fine.png"]["warning"] is None
    assert "1 flagged as damaged" in out.err
    assert main(["predict", str(model), str(bad), str(good), "--strict", "--quiet"]) == 1


def test_inputs_are_recognised_by_content_and_what_is_skipped_is_listed(
    model, realgen, tmp_path, capsys
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    src = sorted((realgen / "dalle-mini").iterdir())
    (folder / "renamed.dat").write_bytes(src[0].read_bytes())
    (folder / "no_extension").write_bytes(src[1].read_bytes())
    (folder / "notes.jpg").write_text("not a picture\n")
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 fake\n")
    capsys.readouterr()
    assert main(["predict", str(model), str(folder), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(Path(p["source"]).name for p in out["results"] if p["label"]) == [
        "no_extension",
        "renamed.dat",
    ]
    skipped = {Path(p["source"]).name: p["error"] for p in out["results"] if p["error"]}
    assert set(skipped) == {"notes.jpg", "report.pdf"}
    assert "not an image" in skipped["notes.jpg"]


def test_no_usable_image_is_an_error_not_exit_0(model, tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "a.txt").write_text("text")
    (empty / "b.jpg").write_bytes(b"")
    assert main(["predict", str(model), str(empty)]) == 2
    assert "no usable image" in capsys.readouterr().err
    labelled = tmp_path / "labelled" / "real"
    labelled.mkdir(parents=True)
    (labelled / "x.png").write_text("not an image")
    assert (
        main(["extract", str(tmp_path / "labelled"), "--cache", str(tmp_path / "c"), "--quiet"])
        == 2
    )
    assert "no usable image" in capsys.readouterr().err


def test_the_same_image_under_two_labels_is_dropped_with_a_reason(realgen, tmp_path):
    files = sorted((realgen / "real").iterdir())[:3]
    root = tmp_path / "ds"
    for label in ("real", "dalle-mini"):
        (root / label).mkdir(parents=True)
    for f in files:
        (root / "real" / f.name).write_bytes(f.read_bytes())
    (root / "dalle-mini" / "copy.jpg").write_bytes(files[0].read_bytes())
    samples, problems = hash_samples(load_dataset(root).samples)
    assert len(samples) == 2 and len(problems) == 2
    assert all("also labelled" in p.reason for p in problems)
    assert {Path(p.path).name for p in problems} == {files[0].name, "copy.jpg"}


def test_a_class_too_small_for_validation_is_a_visible_warning(
    realgen, tmp_path, shared_cache, capsys
):
    data = write_subset(realgen, tmp_path / "d", {"real": 20, "dalle-mini": 20, "midjourney-v3": 1})
    rc = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--known",
            "real,dalle-mini,midjourney-v3",
            "--out",
            str(tmp_path / "r"),
            "--cache",
            str(shared_cache),
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "stage5",
            "--quiet",
            "--no-report",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "warning: class 'midjourney-v3' has only 1 image(s)" in err


# ---------------------------------------------------------------- memory and resources
def test_an_extreme_aspect_ratio_costs_what_its_output_costs(tmp_path):
    """A 20000x1 PNG of a few hundred bytes used to take gigabytes in the resize; the work is
    now bounded by the pixels decoded and produced."""
    p = tmp_path / "line.png"
    Image.new("RGB", (20000, 1), (200, 10, 10)).save(p)
    code = textwrap.dedent(f"""
        import resource
        from originprobe.backbones import load_backbone
        from originprobe.data import load_image
        pre = load_backbone("efficientnet-lite0").preprocessing
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        x = pre.to_uint8(load_image({str(p)!r}))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(tuple(x.shape), (after - before) // 1024)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    shape, grown_mb = r.stdout.split(")")[0] + ")", int(r.stdout.split(")")[1])
    assert shape == "(3, 224, 224)"
    assert grown_mb < 100, grown_mb


def test_a_non_image_is_rejected_after_its_first_bytes(tmp_path):
    """A large file that is not an image is not read whole (or hashed) before rejection."""
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.write(b"This is a log file, not a PNG.\n")
        f.truncate(512 * 1024 * 1024)  # sparse: 512 MB
    code = textwrap.dedent(f"""
        from originprobe.data import Sample, hash_samples
        from pathlib import Path
        def rchar():
            return int(next(l for l in open('/proc/self/io') if l.startswith('rchar')).split()[1])
        before = rchar()
        ok, problems = hash_samples([Sample(path=Path({str(big)!r}), label='x')])
        print(len(ok), problems[0].reason, rchar() - before)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    n_ok, rest = r.stdout.split(" ", 1)
    reason, read = rest.rsplit(" ", 1)
    assert n_ok == "0" and "not an image" in reason
    assert int(read) < 1024 * 1024, read


def test_one_pixel_limit_configurable_everywhere(model, tmp_path, capsys, monkeypatch):
    img = _png(tmp_path / "a.png", 60, 50)
    capsys.readouterr()
    assert main(["predict", str(model), str(img), "--max-pixels", "2000", "--json", "--quiet"]) == 2
    out = capsys.readouterr()
    skipped = [r for r in json.loads(out.out)["results"] if r["error"]]
    assert "decompression bomb" in skipped[0]["error"] and "--max-pixels" in skipped[0]["error"]
    assert "2000" in skipped[0]["error"]
    from PIL import Image as PILImage

    from originprobe.data import max_pixels

    assert max_pixels() == PILImage.MAX_IMAGE_PIXELS == 100_000_000  # restored after the run


# ---------------------------------------------------------------- where files may come from
def test_manifest_paths_must_stay_inside_the_dataset_root(realgen, tmp_path):
    root = tmp_path / "ds"
    img = _png(root / "real" / "a.png")
    outside = _png(tmp_path / "outside.png", seed=1)
    (root / "real" / "leak.png").symlink_to(outside)
    (root / "manifest.csv").write_text(
        "path,label\nreal/a.png,real\n../../../../../../etc/passwd,real\n"
        f"{outside},real\nreal/leak.png,real\n"
    )
    ds = load_dataset(root)
    assert [s.path.name for s in ds.samples] == ["a.png"]
    reasons = " | ".join(p.reason for p in ds.problems)
    assert reasons.count("outside the dataset root") == 3
    assert "symbolic link leads outside" in reasons and "--allow-outside-root" in reasons
    opened = load_dataset(root, allow_outside_root=True)
    assert len(opened.samples) == 4
    _, problems = hash_samples(opened.samples)
    assert any(p.path.endswith("passwd") and "not an image" in p.reason for p in problems)
    del img


def test_a_folder_dataset_follows_its_links_and_never_opens_special_files(tmp_path):
    root = tmp_path / "ds"
    _png(root / "real" / "a.png")
    _png(root / "gen" / "b.png", seed=2)
    outside = _png(tmp_path / "outside.png", seed=3)
    (root / "gen" / "escape.png").symlink_to(outside)
    os.mkfifo(root / "gen" / "pipe.png")
    code = textwrap.dedent(f"""
        from originprobe.data import hash_samples, load_dataset
        ds = load_dataset({str(root)!r})
        ok, problems = hash_samples(ds.samples)
        for p in list(ds.problems) + problems:
            print(p.path.rsplit('/', 1)[1], '|', p.reason)
        print(sorted(s.path.name for s in ok))
    """)
    # a FIFO opened for reading would block forever: the timeout proves it is never opened
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    # a folder tree is the user's own arrangement: its link out is followed (hub caches do this)
    assert lines[-1] == "['a.png', 'b.png', 'escape.png']"
    reasons = dict(l.split(" | ") for l in lines[:-1])
    assert "escape.png" not in reasons
    assert "FIFO" in reasons["pipe.png"] and "refused without reading" in reasons["pipe.png"]
