"""Hostile metadata never hides the pixels: a PNG whose compressed text or ICC chunk inflates past
the decoder's limits, an oversized eXIf chunk, a JPEG APPn segment the decoder refuses and a WebP
metadata chunk that lies about its size are all attributed from their pixels, with a warning that
names what was dropped, in bounded memory; pixel bombs and damaged pixel data are still refused.
Every file is built here from a realgen image."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import small_model, write_subset
from originprobe import Attributor
from originprobe.cli import main
from originprobe.data.images import DROPPED, ImageDecodeError, decode_image, read_image

KNOWN3 = ["real", "dalle-mini", "latent-diffusion"]
INFLATES = zlib.compress(b"A" * (60 << 20), 9)  # 60 MB of text in about 60 kB


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + tag + data + crc


def _png_with(png: bytes, chunk: bytes) -> bytes:
    at = png.index(b"IDAT") - 4  # before the image data, where the decoder reads metadata
    return png[:at] + chunk + png[at:]


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


HOSTILE_PNG = {
    "zTXt": _chunk(b"zTXt", b"Comment\x00\x00" + INFLATES),
    "iTXt": _chunk(b"iTXt", b"Comment\x00\x01\x00\x00\x00" + INFLATES),
    "iCCP": _chunk(b"iCCP", b"icc\x00\x00" + INFLATES),
    "eXIf": _chunk(b"eXIf", b"MM\x00*" + b"\x00" * (6 << 20)),  # 6 MB of EXIF, over the budget
}


def _webp_with_lying_exif(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "WEBP", exif=b"Exif\x00\x00MM\x00*" + b"\x00" * 20)
    data = buf.getvalue()
    at = data.index(b"EXIF")
    return data[: at + 4] + struct.pack("<I", 10**9) + data[at + 8 :]  # claims a gigabyte


def hostile_files(realgen: Path, out: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """{case: (hostile file, the pixels of the clean original)} built from realgen images."""
    out.mkdir(parents=True, exist_ok=True)
    png_src = sorted((realgen / "dalle-mini").glob("*.png"))[0]
    jpg_src = sorted((realgen / "real").glob("*.jpg"))[0]
    png, jpg = png_src.read_bytes(), jpg_src.read_bytes()
    clean_png = np.asarray(read_image(png_src).image)
    files = {}
    for name, chunk in HOSTILE_PNG.items():
        p = out / f"bomb-{name}.png"
        p.write_bytes(_png_with(png, chunk))
        files[name] = (p, clean_png)
    p = out / "bad-app14.jpg"  # an Adobe segment too short to parse: the decoder refuses it
    p.write_bytes(jpg[:2] + _segment(0xEE, b"Adobe") + jpg[2:])
    files["APP14"] = (p, np.asarray(read_image(jpg_src).image))
    img = read_image(png_src).image
    p = out / "lying-exif.webp"
    p.write_bytes(_webp_with_lying_exif(img))
    files["WebP EXIF"] = (p, None)
    return files


@pytest.fixture(scope="module")
def files(realgen, tmp_path_factory):
    return hostile_files(realgen, tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("case", [*HOSTILE_PNG, "APP14", "WebP EXIF"])
def test_the_pixels_are_read_with_a_warning_in_bounded_memory(files, case):
    path, clean = files[case]
    tracemalloc.start()
    try:
        decoded = read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # nothing inflates past the decoder's limits, and a huge chunk is never read whole
    assert peak < 12 * 2**20, peak / 2**20
    assert decoded.warning and decoded.warning.startswith(DROPPED)
    tag = case.split()[-1]
    assert tag in decoded.warning, decoded.warning
    if clean is not None:  # the very pixels of the clean file
        assert np.array_equal(np.asarray(decoded.image), clean)


def test_a_pixel_bomb_and_damaged_pixels_are_still_refused(files):
    png = files["zTXt"][0].read_bytes()
    ihdr = png.index(b"IHDR")
    huge = struct.pack(">II", 40000, 40000)  # 1.6 gigapixels declared
    body = png[ihdr + 4 : ihdr + 4 + 13]
    bomb = png[: ihdr - 4] + _chunk(b"IHDR", huge + body[8:]) + png[ihdr + 4 + 13 + 4 :]
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(bomb, "bomb.png")
    idat = png.index(b"IDAT")
    damaged = png[: idat + 40] + b"\x00" * 200  # the image data cut and zeroed
    with pytest.raises(ImageDecodeError, match="corrupt|truncated"):
        decode_image(damaged, "damaged.png")


@pytest.fixture(scope="module")
def model(realgen, shared_cache, tmp_path_factory):
    return small_model(realgen, shared_cache, tmp_path_factory, 24, KNOWN3, layers="stage5")


def test_predict_the_api_and_the_service_attribute_them(model, files, capsys):
    paths = [p for p, _ in files.values()]
    att = Attributor.load(model)
    for rec in att.predict(paths):
        assert rec.ok and rec.label is not None, (rec.source, rec.error)
        assert rec.warning.startswith(DROPPED)
        assert any(w.startswith(DROPPED) for w in rec.evidence.warnings)  # and in the evidence
    capsys.readouterr()
    assert main(["predict", str(model), *map(str, paths), "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["attributed"] == len(paths) and doc["skipped"] == 0
    from fastapi.testclient import TestClient

    from originprobe.serve import create_app

    asgi, _ = create_app(model, max_batch=8, max_wait_ms=10)
    with TestClient(asgi) as client:
        for p in paths:
            r = client.post("/v1/attribute", files=[("files", (p.name, p.read_bytes()))])
            assert r.status_code == 200, (p.name, r.text)
            assert r.json()["results"][0]["label"]


def test_fit_and_evaluate_train_on_images_with_such_chunks(realgen, shared_cache, tmp_path):
    """A training image with a hostile chunk is used, not dropped: it counts in training, it is
    listed among the warnings, never among the errors."""
    data = write_subset(realgen, tmp_path / "data", {c: 24 for c in KNOWN3})
    victims = sorted((tmp_path / "data" / "dalle-mini").glob("*.png"))[:4]
    for p, chunk in zip(victims, HOSTILE_PNG.values()):
        p.write_bytes(_png_with(p.read_bytes(), chunk))
    out = tmp_path / "run"
    assert main(["evaluate", "--data", str(data), "--known", ",".join(KNOWN3), "--backbone",
                 "efficientnet-lite0", "--layers", "stage5", "--cache", str(shared_cache),
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert res["errors"] == 0 and res["warnings"] >= len(victims)
    used = sum(res["counts"][role]["dalle-mini"] for role in ("train", "val", "test"))
    assert used == 24
    warned = (out / "warnings.csv").read_text()
    assert all(p.name in warned for p in victims) and DROPPED in warned
    model = tmp_path / "model"
    assert main(["fit", "--data", str(data), "--known", ",".join(KNOWN3), "--backbone",
                 "efficientnet-lite0", "--layers", "stage5", "--cache", str(shared_cache),
                 "--out", str(model), "--quiet"]) == 0  # fmt: skip
    counts = json.loads((model / "model.json").read_text())["counts"]["train"]
    assert counts["dalle-mini"] == 24
