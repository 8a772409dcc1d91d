"""Learned fingerprints: networks trained on native patches and used as backbones (`learned:ARCH`).

Facts a user relies on: training is seeded and a run killed with SIGKILL resumes to the same
weights; pretraining on a tree of "cameras" runs, is stored and is the starting point; a model
bundle carries its network, checked by hash, and `predict` and `enroll` use it; multi-crop views
average the features of a grid of crops spanning the picture.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from conftest import REPO, read_manifest, write_subset
from originprobe.backbones import Preprocessing, load_backbone
from originprobe.backbones.base import grid_crops, pixels_of
from originprobe.backbones.learned import read_network
from originprobe.backbones.networks import ConstrainedConv2d, EmbeddingNetwork, NetworkConfig
from originprobe.cli import main
from originprobe.data import hash_samples, load_dataset
from originprobe.errors import ConfigError
from originprobe.features import extract_arrays
from originprobe.runtime import Runtime
from originprobe.training import TrainConfig, TrainRun, train_network

KNOWN = ["real", "dalle-mini", "latent-diffusion"]
TINY = ["--train-epochs", "2", "--train-patch", "32", "--quiet"]


@pytest.fixture(scope="module")
def tiny_set(realgen, tmp_path_factory) -> Path:
    per = {c: 16 for c in KNOWN} | {"glid3-xl": 8}
    return write_subset(realgen, tmp_path_factory.mktemp("learned-set"), per)


def test_constrained_layer_predicts_the_centre_pixel():
    conv = ConstrainedConv2d(3, 4)
    with torch.no_grad():
        conv.weight.uniform_(-1, 1)
    w = conv.constrained_weight()
    assert torch.allclose(w[..., 2, 2], torch.full((4, 3), -1.0))
    assert torch.allclose(w.sum(dim=(2, 3)), torch.zeros(4, 3), atol=1e-5)
    flat = torch.full((1, 3, 9, 9), 0.7)  # a flat picture leaves no prediction error
    assert conv(flat)[..., 2:-2, 2:-2].abs().max() < 1e-5


def test_grid_views_span_the_whole_picture():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    x = pixels_of(img)
    views = grid_crops(x, 128, 4)
    assert views.shape == (4, 3, 128, 128)
    assert torch.equal(views[0], x[:, :128, :128])  # top-left corner
    assert torch.equal(views[3], x[:, -128:, -128:])  # bottom-right corner
    pre = Preprocessing(128, 128, crop="native", views=4)
    assert torch.equal(pre.to_uint8(img), views)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    with pytest.raises(ConfigError, match="square number"):
        Preprocessing(128, 128, crop="native", views=3)


def test_multi_crop_features_are_the_mean_of_the_crops(realgen):
    path = realgen / read_manifest(realgen)[0]["path"]
    many = load_backbone("efficientnet-lite0@native128x4")
    one = load_backbone("efficientnet-lite0@native128")
    assert many.cache_key() != one.cache_key()
    rt = Runtime(backend="torch", workers=0)
    pooled = extract_arrays([path], many, ["stage4"], rt)[0]["stage4"]
    crops = grid_crops(pixels_of(Image.open(path).convert("RGB")), 128, 4)
    singles = [Image.fromarray(c.permute(1, 2, 0).numpy()) for c in crops]
    each = extract_arrays(singles, one, ["stage4"], rt)[0]["stage4"]
    np.testing.assert_allclose(pooled[0], each.mean(0), rtol=1e-4, atol=1e-5)


def _samples(manifest: Path):
    samples, _ = hash_samples(load_dataset(manifest).samples)
    train = [s for s in samples if s.label in KNOWN]
    return train[::2], train[1::2]


_TRAIN_SCRIPT = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from originprobe.backbones.networks import NetworkConfig
from originprobe.data import hash_samples, load_dataset
from originprobe.training import TrainConfig, TrainRun, train_network
samples, _ = hash_samples(load_dataset(sys.argv[1]).samples)
known = {known!r}
train = [s for s in samples if s.label in known]
cfg = TrainConfig(loss="ce", epochs=4, patch=32, per_image=int(sys.argv[3]), seed=3)
r = train_network(NetworkConfig(widths=(8, 16), embed_dim=16, classes=tuple(known)),
                  train[::2], train[1::2], cfg, sys.argv[2],
                  TrainRun(key="k", device="cpu", progress=False))
print("RESUMED", r.summary["resumed_at_epoch"])
"""


def _train(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    code = _TRAIN_SCRIPT.format(known=KNOWN)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, **kw)


def test_training_killed_with_sigkill_resumes_to_the_same_weights(tiny_set, tmp_path):
    full, killed = tmp_path / "full" / "net.safetensors", tmp_path / "killed" / "net.safetensors"
    per_image = 24  # epochs long enough to kill the run between two checkpoints
    assert _train([tiny_set, full, per_image]).wait(timeout=300) == 0
    proc = _train([tiny_set, killed, per_image])
    checkpoint = killed.with_name("net.ce.checkpoint")
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    try:
        assert proc.poll() is None, "training ended before its first checkpoint could be seen"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not killed.exists()  # no half-written network
    done_epochs = torch.load(checkpoint, weights_only=False)["epoch"]
    assert 1 <= done_epochs < 4
    again = _train([tiny_set, killed, per_image], stdout=subprocess.PIPE, text=True)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0
    assert f"RESUMED {done_epochs}" in out
    a, _ = read_network(full)
    b, _ = read_network(killed)
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k
    assert not checkpoint.exists()  # a finished network removes its checkpoints


def test_training_is_seeded_and_shows_its_progress(tiny_set, tmp_path, capsys):
    train, val = _samples(tiny_set)
    cfg = TrainConfig(loss="metric", epochs=1, patch=32, per_image=2, seed=5)
    nc = NetworkConfig(widths=(8, 16), embed_dim=16, classes=tuple(KNOWN))
    runs = [train_network(nc, train, val, cfg, tmp_path / f"{i}.safetensors",
                          TrainRun(key="k", progress=i == 0)) for i in range(2)]  # fmt: skip
    bar = capsys.readouterr().err
    assert "train [metric]" in bar and "loss=" in bar and "img_s=" in bar and "<" in bar  # ETA
    a, b = (load_backbone("learned:forensic-cnn", weights=r.path) for r in runs)
    assert a.weights_id == b.weights_id  # same tensors, so the same feature cache
    other = train_network(
        nc,
        train,
        val,
        TrainConfig(**{**cfg.__dict__, "seed": 6}),
        tmp_path / "other.safetensors",
        TrainRun(key="k", progress=False),
    )
    assert load_backbone("learned:forensic-cnn", weights=other.path).weights_id != a.weights_id
    summary = runs[0].summary
    assert summary["loss"] == "metric" and summary["epochs_run"] == 1
    assert summary["images_per_second"] > 0 and summary["train_images"] == len(train)


def _camera(img: Image.Image, chain: str) -> bytes:
    """One "camera": a processing chain that leaves its own traces."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    if chain == "bayer":  # RGGB mosaic, then a crude bilinear demosaic
        m = np.zeros_like(a)
        m[0::2, 0::2, 0], m[1::2, 1::2, 2] = a[0::2, 0::2, 0], a[1::2, 1::2, 2]
        m[0::2, 1::2, 1], m[1::2, 0::2, 1] = a[0::2, 1::2, 1], a[1::2, 0::2, 1]
        t = torch.from_numpy(m).permute(2, 0, 1)[None]
        k = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
        out = torch.nn.functional.conv2d(t, k.expand(3, 1, 3, 3), padding=1, groups=3)
        img = Image.fromarray(out[0].permute(1, 2, 0).clamp(0, 255).byte().numpy())
        return _jpeg(img, quality=92)
    if chain == "denoise":
        return _jpeg(img.filter(ImageFilter.MedianFilter(3)), quality=75)
    flat = [12] * 64  # sharpen, then a flat quantisation table no standard camera uses
    return _jpeg(img.filter(ImageFilter.UnsharpMask(2, 150, 0)), qtables=[flat, flat])


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def camera_tree(realgen, tmp_path_factory) -> Path:
    rows = [r for r in read_manifest(realgen) if r["label"] == "real"][:36]
    root = tmp_path_factory.mktemp("cameras")
    for i, r in enumerate(rows):
        chain = ("bayer", "denoise", "sharpen")[i % 3]
        (root / chain).mkdir(exist_ok=True)
        img = Image.open(realgen / r["path"])
        (root / chain / f"{i:03d}.jpg").write_bytes(_camera(img, chain))
    return root


def _fit(args) -> int:
    return main(["fit", *args])


def test_pretraining_on_cameras_runs_is_stored_and_used(tiny_set, camera_tree, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "model"
    base = ["--data", str(tiny_set), "--known", ",".join(KNOWN), "--backbone",
            "learned:forensic-cnn", "--layers", "embed", "--cache", str(cache), *TINY]  # fmt: skip
    assert _fit([*base, "--pretrain", str(camera_tree), "--out", str(out)]) == 0
    nets = cache.with_name("cache-networks")
    pre = list(nets.glob("pretrain-*/network.safetensors"))
    assert len(pre) == 1  # stored
    _, pre_meta = read_network(pre[0])
    assert pre_meta["network"]["classes"] == ["bayer", "denoise", "sharpen"]
    assert pre_meta["training"]["val_images"] == 6  # 20% of each camera's 12, held out
    model = json.loads((out / "model.json").read_text())
    net_file = out / model["networks"]["learned:forensic-cnn"]
    _, meta = read_network(net_file)
    assert meta["training"]["init"] == str(pre[0])  # used as the starting point
    # without pretraining the same data trains another network
    assert _fit([*base, "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "model.json").read_text())
    assert plain["backbone"]["weights_id"] != model["backbone"]["weights_id"]


def test_learned_model_fits_predicts_enrolls_and_checks_its_network(tiny_set, realgen, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "model"
    args = ["--data", str(tiny_set), "--known", ",".join(KNOWN), "--backbone",
            "learned:forensic-cnn", "--cache", str(cache), "--out", str(out), *TINY]  # fmt: skip
    assert _fit(args) == 0
    model = json.loads((out / "model.json").read_text())
    rel = model["networks"]["learned:forensic-cnn"]
    assert rel in model["files"] and (out / rel).is_file()
    _, meta = read_network(out / rel)
    assert meta["training"]["candidates"].keys() == {"metric", "ce"}  # auto: both, one kept
    assert meta["training"]["loss"] in ("metric", "ce")
    # the bundle alone is enough: no training cache, another working directory
    import shutil

    shutil.rmtree(cache.with_name("cache-networks"))
    glid = [r["path"] for r in read_manifest(realgen) if r["label"] == "glid3-xl"]
    img = realgen / glid[-1]
    res = tmp_path / "p.jsonl"
    assert main(["predict", str(out), str(img), "--out", str(res), "--quiet"]) == 0
    row = json.loads(res.read_text().splitlines()[0])
    assert row["label"] in [*KNOWN, "unknown"] and 0 <= row["score"] <= 1
    # the service answers with the same network and the same verdict
    from fastapi.testclient import TestClient

    from originprobe.serve import create_app

    asgi, _ = create_app(out, max_batch=4, max_wait_ms=10)
    with TestClient(asgi) as c:
        r = c.post("/v1/attribute", files=[("files", (img.name, img.read_bytes(), "image/png"))])
    assert r.status_code == 200, r.text
    got = r.json()["results"][0]
    assert got["label"] == row["label"] and got["score"] == pytest.approx(row["score"], abs=1e-5)
    # enrolling a new generator from a few images adds its reference; no retraining
    new = [realgen / p for p in glid[-9:-1]]
    before = (out / rel).read_bytes()
    assert main(["enroll", str(out), "--label", "glid3-xl", *map(str, new), "--quiet"]) == 0
    after = json.loads((out / "model.json").read_text())
    assert "glid3-xl" in after["classes"] and (out / rel).read_bytes() == before
    # a damaged network is refused, naming the file
    blob = bytearray((out / rel).read_bytes())
    blob[-5] ^= 0xFF
    (out / rel).write_bytes(bytes(blob))
    from originprobe.model import Attributor
    from originprobe.model.bundle import BundleError

    with pytest.raises(BundleError, match="learned-forensic-cnn.safetensors.*checksum"):
        Attributor.load(out)


def test_a_second_run_reuses_the_trained_network(tiny_set, tmp_path):
    cache = tmp_path / "cache"
    args = ["--data", str(tiny_set), "--known", ",".join(KNOWN), "--backbone",
            "learned:forensic-cnn", "--cache", str(cache), *TINY]  # fmt: skip
    assert _fit([*args, "--train-loss", "ce", "--out", str(tmp_path / "a")]) == 0
    files = sorted(cache.with_name("cache-networks").glob("*/network.safetensors"))
    stamp = files[0].stat().st_mtime_ns
    assert _fit([*args, "--train-loss", "ce", "--out", str(tmp_path / "b")]) == 0
    assert sorted(cache.with_name("cache-networks").glob("*/network.safetensors")) == files
    assert files[0].stat().st_mtime_ns == stamp
    a = json.loads((tmp_path / "a" / "model.json").read_text())["backbone"]
    b = json.loads((tmp_path / "b" / "model.json").read_text())["backbone"]
    assert a["weights_id"] == b["weights_id"]


def test_learned_backbone_without_weights_says_how_to_get_them():
    from originprobe.backbones import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="train it on the training split"):
        load_backbone("learned:forensic-cnn")
    with pytest.raises(ConfigError, match="unknown network"):
        load_backbone("learned:resnet9000")


def test_network_files_are_checked(tmp_path):
    from originprobe.backbones.learned import NetworkFileError, save_network

    net = EmbeddingNetwork(NetworkConfig(widths=(8, 16), embed_dim=16, classes=("a", "b")))
    p = save_network(net, tmp_path / "n.safetensors", {"patch": 32, "views": 4})
    bb = load_backbone("learned:forensic-cnn", weights=p)
    assert bb.layer_names == ["pool", "embed"] and bb.feature_dims["embed"] == 16
    with pytest.raises(NetworkFileError, match="not efficientnet-lite0|holds a forensic-cnn"):
        load_backbone("learned:efficientnet-lite0", weights=p)
    (tmp_path / "bad.safetensors").write_bytes(b"not a network")
    with pytest.raises(NetworkFileError, match="bad.safetensors"):
        load_backbone("learned:forensic-cnn", weights=tmp_path / "bad.safetensors")


def test_the_python_api_trains_a_learned_backbone_too(tiny_set, tmp_path):
    from originprobe.model import Attributor

    att = Attributor(backbone="learned:forensic-cnn", layers="embed", head="ncm", seed=1)
    att.set_runtime(progress=False)
    att.fit(tiny_set, known=KNOWN)
    t = att.load_backbone().info["training"]
    # the final network learns from 80% of the known-class training images and picks its
    # epoch on the other 20%
    assert t["train_images"] > t["val_images"] > 0
    assert t["train_images"] + t["val_images"] == sum(att.counts_["train"].values())
    att.save(tmp_path / "m")
    again = Attributor.load(tmp_path / "m")
    img = next(p for p in Path(tiny_set).parent.rglob("*.png"))
    assert again.predict([img])[0].label == att.predict([img])[0].label


def test_presets_fill_only_what_is_not_given(realgen):
    from originprobe.pipeline.config import PRESETS, RunConfig

    base = {"protocol": "realgen:split1", "root": str(realgen)}
    fast = RunConfig.from_options(base).backbone
    assert fast == "efficientnet-lite0+efficientnet-lite2"  # fast: the defaults
    acc = RunConfig.from_options({**base, "preset": "accurate"})
    assert acc.backbone == PRESETS["accurate"]["backbone"] and acc.backbone.count("+") == 4
    mine = RunConfig.from_options({**base, "preset": "accurate", "backbone": "forensic"})
    assert mine.backbone == "forensic"
    with pytest.raises(ConfigError, match="unknown preset"):
        RunConfig(protocol="realgen:split1", root=str(realgen), preset="slow")


def test_a_damaged_checkpoint_is_reported_and_training_starts_over(tiny_set, tmp_path):
    train, val = _samples(tiny_set)
    out = tmp_path / "net.safetensors"
    (tmp_path / "net.ce.checkpoint").write_bytes(b"\0" * 100)  # e.g. a disk that filled up
    cfg = TrainConfig(loss="ce", epochs=1, patch=32, per_image=1)
    nc = NetworkConfig(widths=(8, 16), embed_dim=16, classes=tuple(KNOWN))
    with pytest.warns(UserWarning, match="net.ce.checkpoint: unreadable checkpoint"):
        r = train_network(nc, train, val, cfg, out, TrainRun(key="k", progress=False))
    assert r.summary["resumed_at_epoch"] == 0 and out.is_file()


def test_efficientnet_trains_its_later_stages_on_cached_activation_maps(tiny_set, tmp_path):
    from originprobe.backbones.efficientnet import VARIANTS, EfficientNetLite

    train, val = _samples(tiny_set)
    cfg = TrainConfig(loss="ce", epochs=1, patch=64, per_image=1)
    nc = NetworkConfig(arch="efficientnet-lite0", classes=tuple(KNOWN))
    r = train_network(
        nc, train, val, cfg, tmp_path / "n.safetensors", TrainRun("k", progress=False)
    )
    bb = load_backbone("learned:efficientnet-lite0", weights=r.path)
    pre = bb.preprocessing
    assert (pre.input_size, pre.views, pre.crop) == (256, 1, "native")  # the whole region
    imagenet = EfficientNetLite(VARIANTS["efficientnet-lite0"]).net
    trunk = bb.net.trunk
    assert torch.equal(trunk.blocks[4][0].conv_pw.weight, imagenet.blocks[4][0].conv_pw.weight)
    assert not torch.equal(trunk.blocks[6][0].conv_pw.weight, imagenet.blocks[6][0].conv_pw.weight)
    assert trunk.stride == 16  # a 64-px training window is 4×4 cells of the frozen map
    # validation reads cached maps; that is what the network computes from the pictures
    from originprobe.training.loop import embed_maps
    from originprobe.training.patches import ActivationBank, PatchBank

    pixels = PatchBank.decode(val[:3], KNOWN, 256, 64)
    maps = ActivationBank.from_pixels(pixels, bb.net, torch.device("cpu")).maps
    direct = extract_arrays([s.path for s in val[:3]], bb, ["embed"], Runtime(backend="torch"))[0]
    np.testing.assert_allclose(embed_maps(bb.net, maps, torch.device("cpu")).numpy(),
                               direct["embed"], rtol=2e-2, atol=2e-2)  # fmt: skip


def test_heads_learn_from_cross_fitted_features_of_learned_networks(tiny_set, tmp_path):
    """A head never learns from features of images their network trained on: the training images
    are split in parts, each part's features come from the network trained without it, and the
    final network (trained on every image) serves at inference."""
    from originprobe.data import make_split
    from originprobe.model import FeatureExtractor, prepare_split

    samples, _ = hash_samples(load_dataset(tiny_set).samples)
    split = make_split(samples, KNOWN, [], [], seed=0, fractions=(1.0, 0.0, 0.0))
    fx = FeatureExtractor("learned:forensic-cnn", layers="embed",
                          training={"loss": "ce", "epochs": 1, "patch": 32, "per_image": 1},
                          runtime={"cache": str(tmp_path / "cache")})  # fmt: skip
    p = prepare_split(split, fx, seed=0)
    parts = fx.trained_.parts
    assert len(parts) == 2 and len(fx.trained_.final) == 1
    dev = p.table.samples["dev"]
    assert {s.sha256 for _, part in parts for s in part} == {s.sha256 for s in dev}
    first = parts[0][1]
    assert {s.sha256 for s in first}.isdisjoint({s.sha256 for s in parts[1][1]})
    net_without_first = load_backbone(
        "learned:forensic-cnn", weights=parts[0][0]["learned:forensic-cnn"]
    )
    final = load_backbone("learned:forensic-cnn", weights=fx.trained_.final["learned:forensic-cnn"])
    rt = Runtime(backend="torch", workers=0)
    row = [i for i, s in enumerate(dev) if s.sha256 == first[0].sha256][0]
    table_row = p.table("dev", p.layers[0])[row]
    by_fold = extract_arrays([first[0].path], net_without_first, ["embed"], rt)[0]["embed"][0]
    by_final = extract_arrays([first[0].path], final, ["embed"], rt)[0]["embed"][0]
    assert net_without_first.weights_id != final.weights_id
    # the head's row is the fold network's feature (float16 in the cache), not the final one's
    assert np.abs(table_row - by_fold).max() < 0.2 * np.abs(table_row - by_final).max()
    # the fold networks never saw their part: their keys hold the other part's images only
    assert p.backbone.weights_id == final.weights_id


_LOCK_SCRIPT = """
import sys, json
import torch
torch.set_num_threads(1)
from pathlib import Path
from originprobe.data import hash_samples, load_dataset
from originprobe.runtime import Runtime
from originprobe.training import TrainConfig
from originprobe.training.cache import TrainingPlan, trained_network
samples, _ = hash_samples(load_dataset(sys.argv[1]).samples)
known = {known!r}
train = [s for s in samples if s.label in known]
cfg = TrainConfig(loss="ce", epochs=3, patch=32, per_image=int(sys.argv[3]))
plan = TrainingPlan(cfg, Path(sys.argv[2]), runtime=Runtime(device="cpu"))
r = trained_network("forensic-cnn", known, train, plan, "train")
print(json.dumps({{"path": str(r.path), "cached": bool(r.summary.get("cached")),
                  "resumed": r.summary.get("resumed_at_epoch")}}))
"""


def _locked_train(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    code = _LOCK_SCRIPT.format(known=KNOWN)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, text=True, **kw)  # fmt: skip


def test_two_processes_training_one_key_take_turns_and_share_the_network(tiny_set, tmp_path):
    """The second process waits on the key's lock, then reuses the first one's network: the
    network is trained once."""
    procs = [_locked_train([tiny_set, tmp_path / "nets", 4]) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0]["path"] == outs[1]["path"]
    assert sorted(o["cached"] for o in outs) == [False, True]  # one trained, one reused
    assert len(list((tmp_path / "nets").glob("*/network.safetensors"))) == 1


def test_a_lock_left_by_a_killed_process_is_taken_over(tiny_set, tmp_path):
    """A process killed while training holds no lock any more: the next one goes on at once and
    resumes from the checkpoint the killed one left."""
    nets = tmp_path / "nets"
    proc = _locked_train([tiny_set, nets, 24])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(nets.glob("*/network.ce.checkpoint")):
        time.sleep(0.05)
    assert list(nets.glob("*/.lock")), "the training process took no lock"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    again = _locked_train([tiny_set, nets, 24])
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert not res["cached"] and res["resumed"] >= 1
