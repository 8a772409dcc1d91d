"""Messy forensic inputs: every bad file is either read correctly or skipped with a reason, and
the run goes on (exit 0, or 1 with --strict)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from originprobe.cli import main
from originprobe.data import ImageDecodeError, hash_samples, load_dataset, load_image


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """<root>/<label>/... with one file per case; returns root and the expected outcome of each."""
    root = tmp_path_factory.mktemp("bad-corpus")
    good, bad = root / "good", root / "bad"
    cases: dict[str, str] = {}  # file name → "ok" or an expected reason fragment

    def ok(p):
        cases[p.name] = "ok"

    ok(_save(_noise(300, 200, 1), good / "plain.png", "PNG"))
    ok(_save(Image.new("CMYK", (64, 48), (0, 255, 0, 0)), good / "cmyk.jpg", "JPEG"))
    sixteen = (np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 31).astype(np.uint16)
    ok(_save(Image.fromarray(sixteen), good / "sixteen_bit.png", "PNG"))
    pal = Image.new("P", (40, 40), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.info["transparency"] = 1
    ok(_save(pal, good / "palette_transparent.png", "PNG", transparency=1))
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    for ext, fmt in (("gif", "GIF"), ("webp", "WEBP")):
        p = good / f"animated.{ext}"
        frames[0].save(
            p,
            fmt,
            save_all=True,
            append_images=frames[1:],
            duration=100,
            loop=0,
            **({"lossless": True} if fmt == "WEBP" else {}),
        )
        ok(p)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    ok(_save(_noise(40, 20, 2), good / "exif_rotated.jpg", "JPEG", exif=exif))
    ok(_save(Image.new("RGB", (1, 1), (9, 9, 9)), good / "one_pixel.png", "PNG"))
    ok(_save(_noise(3000, 2000, 3), good / "huge.jpg", "JPEG", quality=80))
    weird = os.fsencode(str(good)) + b"/caf\xe9-latin1.png"  # not valid UTF-8
    with open(weird, "wb") as f:
        _noise(50, 50, 4).save(f, "PNG")
    cases[os.fsdecode(weird).rsplit("/", 1)[1]] = "ok"
    unreadable = _save(_noise(30, 30, 5), good / "no_permission.png", "PNG")
    os.chmod(unreadable, 0)
    # root reads any file; other users get "permission denied"
    cases[unreadable.name] = "ok" if os.geteuid() == 0 else "permission denied"

    bad.mkdir()
    full = io.BytesIO()
    _noise(200, 200, 6).save(full, "JPEG")
    (bad / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    cases["truncated.jpg"] = "truncated"
    full = io.BytesIO()
    _noise(200, 200, 7).save(full, "PNG")
    (bad / "truncated.png").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    cases["truncated.png"] = "truncated"
    (bad / "zero.jpg").write_bytes(b"")
    cases["zero.jpg"] = "empty file"
    (bad / "text.jpg").write_text("this is not an image\n")
    cases["text.jpg"] = "not an image"
    _save(Image.new("1", (20000, 15000)), bad / "bomb.png", "PNG")
    cases["bomb.png"] = "decompression bomb"
    os.symlink(bad / "does-not-exist.png", bad / "broken_link.png")
    cases["broken_link.png"] = "broken symbolic link"
    return {"root": root, "cases": cases}


def test_good_files_decode_as_documented(corpus):
    g = corpus["root"] / "good"
    img = load_image(g / "exif_rotated.jpg")
    assert img.size == (20, 40)  # EXIF orientation applied
    assert load_image(g / "cmyk.jpg").mode == "RGB"
    sixteen = np.asarray(load_image(g / "sixteen_bit.png"))[..., 0]
    assert sixteen.max() > 200 and sixteen.min() == 0  # scaled to 8 bits, not clipped
    pal = np.asarray(load_image(g / "palette_transparent.png"))
    assert pal.max() == 0  # the transparent colour is composited on black
    for name in ("animated.gif", "animated.webp"):
        first = np.asarray(load_image(g / name)).reshape(-1, 3).mean(0)
        assert first[0] > 200 and first[2] < 50, name  # first frame (red), not the blue one
    assert load_image(g / "one_pixel.png").size == (1, 1)
    assert load_image(g / "huge.jpg").size == (3000, 2000)


@pytest.mark.parametrize(
    "name",
    ["truncated.jpg", "truncated.png", "zero.jpg", "text.jpg", "bomb.png", "broken_link.png"],
)
def test_bad_files_raise_one_error_type_naming_file_and_reason(corpus, name):
    path = corpus["root"] / "bad" / name
    with pytest.raises(ImageDecodeError) as err:
        load_image(path)
    assert err.value.path == str(path)
    assert corpus["cases"][name] in err.value.reason
    assert str(path) in str(err.value)


def test_extract_skips_bad_files_records_them_and_goes_on(corpus, tmp_path, capsys):
    errors = tmp_path / "errors.csv"
    cache = tmp_path / "cache"
    rc = main(
        [
            "extract",
            str(corpus["root"]),
            "--cache",
            str(cache),
            "--errors",
            str(errors),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "head",
            "--workers",
            "2",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    with open(errors, newline="", encoding="utf-8") as f:
        rows = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    expected_bad = {n: r for n, r in corpus["cases"].items() if r != "ok"}
    assert set(rows) == set(expected_bad)
    for name, reason in expected_bad.items():
        assert reason in rows[name], (name, rows[name])
    assert f"skipped {len(expected_bad)} file(s)" in err
    # every good file has features now
    ds = load_dataset(corpus["root"])
    samples, _ = hash_samples(ds.samples)
    from originprobe.backbones import load_backbone
    from originprobe.features import open_store

    store = open_store(cache, load_backbone("efficientnet-lite0"))
    good = [s for s in samples if corpus["cases"].get(s.path.name) == "ok"]
    assert len(good) == sum(v == "ok" for v in corpus["cases"].values())
    assert store.missing([s.sha256 for s in good], ["head"]) == []
    X = store.load([s.sha256 for s in good], "head")
    assert np.isfinite(X).all()
    # --strict turns skipped files into exit status 1 (nothing is recomputed)
    assert (
        main(
            [
                "extract",
                str(corpus["root"]),
                "--cache",
                str(cache),
                "--no-progress",
                "--backbone",
                "efficientnet-lite0",
                "--layers",
                "head",
                "--strict",
            ]
        )
        == 1
    )


def test_manifest_rows_naming_missing_files_are_reported(tmp_path, corpus):
    m = tmp_path / "manifest.csv"
    good = corpus["root"] / "good" / "plain.png"
    m.write_text(f"path,label\n{good},real\nmissing/nothing.png,real\n,real\n")
    ds = load_dataset(m, allow_outside_root=True)
    samples, problems = hash_samples(ds.samples)
    reasons = {Path(p.path).name: p.reason for p in list(ds.problems) + problems}
    assert len(samples) == 1
    assert reasons["nothing.png"] == "file not found"
    assert any("row without path" in r for r in reasons.values())
    ann = tmp_path / "ann.txt"
    names = tmp_path / "classes.txt"
    names.write_text("real\nsd\n")
    ann.write_text(f"{good}\t0\nmissing.png\t1\nbad-line\n{good}\t7\n")
    from originprobe.data.samples import load_annotations, read_class_names

    ds = load_annotations(ann, read_class_names(names), root=tmp_path, allow_outside_root=True)
    samples, problems = hash_samples(ds.samples)
    reasons = [p.reason for p in list(ds.problems) + problems]
    assert len(samples) == 1
    assert "file not found" in reasons
    assert any("not an index" in r for r in reasons) and any("expected path" in r for r in reasons)


def test_evaluate_on_a_folder_with_bad_files_writes_errors_csv(corpus, tmp_path, realgen):
    # a small labelled folder: real photos and one generator, with bad files mixed in
    data = tmp_path / "data"
    for label, src in (("real", "real"), ("gen", "dalle-mini"), ("other", "pixray-vqgan")):
        (data / label).mkdir(parents=True)
        for p in sorted((realgen / src).iterdir())[:12]:
            shutil.copyfile(p, data / label / p.name)
    for name in ("truncated.jpg", "text.jpg", "zero.jpg"):
        (data / "gen" / name).write_bytes((corpus["root"] / "bad" / name).read_bytes())
    out = tmp_path / "run"
    rc = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--known",
            "real,gen",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--no-progress",
            "--backbone",
            "efficientnet-lite0",
            "--layers",
            "head",
            "--no-report",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["errors"] == 3
    rows = list(csv.DictReader(open(out / "errors.csv", encoding="utf-8")))
    assert sorted(Path(r["path"]).name for r in rows) == ["text.jpg", "truncated.jpg", "zero.jpg"]
    assert sum(sum(c.values()) for c in res["counts"].values()) == 36
